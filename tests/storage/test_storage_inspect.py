"""``daqhub inspect``: the summary a user reads, its JSON, and the plot."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from storage_testdata import CHANNELS, INSTRUMENTS, LAB_CONFIG

from daqhub.cli import inspect as daqhub_inspect
from daqhub.host import PluginHost
from daqhub.schema import build_batch
from daqhub.storage import FlavorStorage, StorageSession

START = 1_700_000_000_000_000_000
ROWS = 200
GAP_AFTER = 120  # one 1 s pause in a 10 ms series


def _run(*argv: str) -> tuple[int, str]:
    buf = StringIO()
    with redirect_stdout(buf):
        rc = daqhub_inspect.main(list(argv))
    return rc, buf.getvalue()


def _timestamps() -> np.ndarray:
    ts = START + np.arange(ROWS, dtype=np.int64) * 10_000_000
    ts[GAP_AFTER + 1:] += 1_000_000_000
    return ts


def _write_session(out: Path, host: PluginHost, channel_data: Any, **arrow_opts: Any) -> str:
    session = StorageSession.open(host, out, {
        "v2": FlavorStorage("hdf5", CHANNELS, INSTRUMENTS),
        "v4": FlavorStorage("arrow", CHANNELS, INSTRUMENTS, options=arrow_opts),
    }, lab_config=LAB_CONFIG)
    ts = _timestamps()
    for d in channel_data(ROWS, seed=5):
        values: Any = (np.array(d.values, dtype=d.spec.dtype) if d.spec.kind == "scalar"
                       else d.values)
        for source in ("v2", "v4"):
            session.write(build_batch(d.instrument, d.spec, ts, values,
                                      axes=d.axes or None, source=source))
    session.close()
    return session.session_id


@pytest.fixture
def session_dir(tmp_path: Path, storage_host: PluginHost, channel_data: Any) -> Path:
    _write_session(tmp_path / "data", storage_host, channel_data)
    return tmp_path / "data"


@pytest.mark.timeout(30)
def test_summary_shows_instruments_channels_counts_units_gaps_and_config(
        session_dir: Path) -> None:
    rc, text = _run(str(session_dir))
    assert rc == 0
    [sid] = [p.name for p in (session_dir / "v2").iterdir()]
    assert f"session {sid}" in text
    for iid, specs in CHANNELS.items():
        for spec in specs:
            line = next(line for line in text.splitlines()
                        if f"  v2      {iid}" in line and f" {spec.name} " in line)
            assert f" {ROWS} " in line and spec.kind in line and spec.dtype in line
            if spec.unit:
                assert f" {spec.unit} " in line
    assert "gap in v2 meter.power: 1.010 s" in text
    assert "| # unicode survives: µW, é" in text
    assert '"type": "newport.1830c"' in text
    assert "daqhub " in text.split("versions:")[1]


@pytest.mark.timeout(30)
def test_json_summary_has_the_numbers(session_dir: Path) -> None:
    rc, out = _run(str(session_dir), "--json")
    assert rc == 0
    summary = json.loads(out)
    [session] = summary["sessions"]
    assert session["lab_config"] == LAB_CONFIG
    assert session["instruments"] == INSTRUMENTS
    files = session["files"]
    assert {f["format"] for f in files} == {"hdf5", "arrow"}
    assert all(f["status"] == "ok" and not f["notes"] for f in files)
    channels = [dict(c, flavor=f["flavor"]) for f in files for c in f["channels"]]
    assert len(channels) == 2 * sum(len(s) for s in CHANNELS.values())
    for c in channels:
        assert c["rows"] == ROWS
        assert c["first_ns"] == START and c["last_ns"] == int(_timestamps()[-1])
        assert c["span_s"] == pytest.approx(ROWS * 0.01 - 0.01 + 1.0)
        assert c["median_interval_s"] == pytest.approx(0.01)
        assert c["gap_count"] == 1
        [gap] = c["gaps"]
        assert gap["after_row"] == GAP_AFTER and gap["duration_s"] == pytest.approx(1.01)
    power = next(c for c in channels if c["channel"] == "power" and c["flavor"] == "v4")
    assert power["unit"] == "W" and power["dtype"] == "float64" and power["kind"] == "scalar"


@pytest.mark.timeout(60)
def test_plot_writes_a_png_of_every_channel(session_dir: Path, tmp_path: Path) -> None:
    import matplotlib.image

    png = tmp_path / "session.png"
    rc, text = _run(str(session_dir), "--plot", str(png))
    assert rc == 0 and f"plot written to {png}" in text
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    image = matplotlib.image.imread(png)
    channels = 2 * sum(len(s) for s in CHANNELS.values())
    assert image.shape[0] > 100 * channels and image.shape[2] in (3, 4)
    assert image[..., :3].std() > 0.05, "not a blank canvas"


@pytest.mark.timeout(30)
def test_parquet_and_single_files_are_summarized(tmp_path: Path, storage_host: PluginHost,
                                                 channel_data: Any) -> None:
    sid = _write_session(tmp_path / "data", storage_host, channel_data, parquet=True)
    parquet = tmp_path / "data" / "v4" / sid / "cam" / "frame.parquet"
    rc, out = _run(str(parquet), "--json")
    assert rc == 0
    [f] = json.loads(out)["sessions"][0]["files"]
    assert f["format"] == "parquet" and f["flavor"] == "v4"
    assert [(c["channel"], c["rows"], c["shape"]) for c in f["channels"]] == [
        ("frame", ROWS, [24, 32])]
    rc, out = _run(str(tmp_path / "data" / "v2" / sid / "session.h5"), "--plot",
                   str(tmp_path / "one.png"))
    assert rc == 0 and (tmp_path / "one.png").stat().st_size > 10_000


@pytest.mark.timeout(30)
def test_a_file_being_written_is_shown_with_its_writer(tmp_path: Path,
                                                       storage_host: PluginHost) -> None:
    x = CHANNELS["meter"][0]
    session = StorageSession.open(storage_host, tmp_path, {
        "v2": FlavorStorage("hdf5", {"meter": [x]}), "v4": FlavorStorage("arrow", {"meter": [x]})})
    try:
        for source in ("v2", "v4"):
            session.write(build_batch("meter", x, [START, START + 1], np.ones(2), source=source))
        session.flush()
        # another process, as a user would run it (HDF5 shares open files within a process)
        out = subprocess.run([sys.executable, "-m", "daqhub.cli.inspect", str(tmp_path), "--json"],
                             capture_output=True, text=True, timeout=30)
    finally:
        session.close()
    assert out.returncode == 0, out.stderr
    files = json.loads(out.stdout)["sessions"][0]["files"]
    import os
    for f in files:
        assert any(f"being written right now by process {os.getpid()}" in n
                   for n in f["notes"]), f
        assert f["channels"][0]["rows"] == 2
        # a live Arrow stream has no end-of-stream marker yet: that is no damage
        assert f["status"] == "ok", f
        assert not any("not closed cleanly" in n for n in f["notes"]), f


def test_a_channel_without_its_values_is_damaged_and_left_out_of_the_plot(
        session_dir: Path, tmp_path: Path) -> None:
    """The summary said "ok" (exit 0) for a channel whose value dataset was gone, and
    --plot then crashed with a KeyError."""
    [h5] = session_dir.glob("v2/*/session.h5")
    with h5py.File(h5, "r+") as f:
        instrument = next(k for k in f if k != "_daqhub")
        channel = next(iter(f[instrument]))
        del f[instrument][channel]["value"]
    png = tmp_path / "p.png"
    rc, text = _run(str(h5), "--plot", str(png))
    assert rc == 1
    assert f"{instrument}.{channel}: its dataset(s) value are missing; the rest of the " \
           "file is read" in text
    assert png.stat().st_size > 0
    rc, text = _run(str(h5), "--json")
    [report] = json.loads(text)["sessions"][0]["files"]
    assert report["status"] == "damaged"
    assert (instrument, channel) not in {(c["instrument"], c["channel"])
                                         for c in report["channels"]}
    assert len(report["channels"]) == sum(len(v) for v in CHANNELS.values()) - 1


def test_damaged_hdf5_metadata_is_named_and_the_other_files_are_read(session_dir: Path
                                                                     ) -> None:
    """h5py raises RuntimeError for damaged group metadata ("bad local heap signature"):
    inspect ended in a traceback and listed none of the session's intact files."""
    [h5] = session_dir.glob("v2/*/session.h5")
    intact = h5.read_bytes()
    for offset in range(0, 16_000, 97):  # where 8 bytes of damage give that error
        h5.write_bytes(intact[:offset] + b"\xff" * 8 + intact[offset + 8:])
        try:
            with h5py.File(h5, "r") as f:
                for g in f:
                    for c in f[g]:
                        f[g][c].attrs.get("channel")
        except RuntimeError:
            break
        except Exception:  # other damage: try another offset
            continue
    else:
        pytest.fail("no damage of the test file's first 16 kB gives h5py's RuntimeError")
    rc, text = _run(str(session_dir), "--json")
    assert rc == 1
    [session] = json.loads(text)["sessions"]
    status = {Path(f["path"]).suffix: f["status"] for f in session["files"]}
    assert status.pop(".h5") in ("unreadable", "damaged")
    assert set(status.values()) == {"ok"} and status  # every v4 file still read


def test_help_missing_paths_and_foreign_files(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc, text = _run("--help")
    assert rc == 0 and "usage: daqhub inspect" in text and "--plot" in text
    assert _run("--bogus")[0] == 2
    rc, text = _run(str(tmp_path / "nope"))
    assert rc == 1 and "does not exist" in capsys.readouterr().err  # errors: on stderr
    rc, text = _run(str(tmp_path))
    assert rc == 1 and "no data files" in capsys.readouterr().err
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = [1, 2, 3]
    rc, text = _run(str(tmp_path))
    assert rc == 1 and "unreadable" in text and "not a daqhub HDF5 file" in text
