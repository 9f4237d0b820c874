"""Recorded points through the Lab API: the Malus-law scan on the demo's simulated optics."""

from __future__ import annotations

import errno
import glob
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from lab_fakes import GATED_TOML, LIMITED_TOML, GatedV2
from lab_texts import optics_lab

import daqhub
from daqhub.host import PluginHost
from daqhub.instrument import DriverError
from daqhub.scan import ScanError

pytestmark = pytest.mark.timeout(120)
ANGLES = list(range(0, 181, 10))


def malus_fit(angles_deg: np.ndarray, power: np.ndarray) -> tuple[float, float, float]:
    """P = a + b cos(2(theta - theta0)): amplitude b, phase theta0 (deg), rms residual / b."""
    t = np.radians(angles_deg)
    basis = np.column_stack([np.ones_like(t), np.cos(2 * t), np.sin(2 * t)])
    coef, *_ = np.linalg.lstsq(basis, power, rcond=None)
    amp = float(np.hypot(coef[1], coef[2]))
    phase = float(np.degrees(np.arctan2(coef[2], coef[1])) / 2)
    rms = float(np.sqrt(np.mean((basis @ coef - power) ** 2)))
    return amp, phase, rms / amp


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_malus_scan_with_the_mount_in_either_flavor(tmp_path: Path, host: PluginHost,
                                                    flavor: str) -> None:
    with daqhub.open_lab(optics_lab(tmp_path, flavor), host=host, report=None) as lab:
        assert lab["rotator"].flavor == flavor
        # the mount's own position is read too: a reading taken mid-move would show it
        table = lab.scan("rotator", ANGLES, read=["power", "rotator.position"], settle=0.2)
    assert isinstance(table, pa.Table)
    assert table.num_rows == 19
    assert table["step"].type == pa.int64()
    assert table["step"].to_pylist() == list(range(19))
    assert table["rotator"].to_pylist() == [float(a) for a in ANGLES]
    readback = np.array(table["rotator.readback"].to_pylist())
    assert np.allclose(readback, ANGLES, atol=0.05)
    assert np.allclose(table["rotator.position"].to_pylist(), ANGLES, atol=0.05)
    assert (np.array(table["rotator.position.requested_ns"].to_pylist())
            == np.array(table["power.power.requested_ns"].to_pylist())).all()
    requested = np.array(table["power.power.requested_ns"].to_pylist())
    answered = np.array(table["power.power.answered_ns"].to_pylist())
    assert (answered >= requested).all()
    assert (requested[1:] > answered[:-1]).all()  # one fresh reading per step, in order
    amp, phase, rel_rms = malus_fit(np.array(ANGLES, float), np.array(table["power.power"]))
    assert amp == pytest.approx(0.0005 * 0.98 / 2, rel=0.05)
    assert abs(phase) < 1.0
    assert rel_rms < 0.01  # sim noise is 0.2 %; a stale (mid-move) reading would be far off
    assert table.schema.field("power.power").metadata[b"unit"] == b"W"
    assert table.schema.field("rotator").metadata[b"unit"] == b"deg"
    assert table.schema.metadata[b"daqhub.complete"] == b"true"


def test_points_table_settings_and_meta_read_back_with_plain_tools(
        tmp_path: Path, host: PluginHost) -> None:
    meta = {"operator": "Ada", "sample": "polariser P3"}
    with daqhub.open_lab(optics_lab(tmp_path, "v4"), host=host, meta=meta, report=None) as lab:
        lab["power"].set_wavelength(800)
        table = lab.scan("rotator", ANGLES[:5], read=["power.power"], settle=0.05)
        dirs = lab.output_dirs()
    # HDF5 flavor: records.h5 beside session.h5
    with h5py.File(dirs["v2"] / "records.h5", "r") as f:
        g = f["points/scan-1"]
        assert bool(g.attrs["complete"]) is True
        assert json.loads(g.attrs["columns"]) == table.column_names
        for name in table.column_names:
            stored = g[name][:]
            if stored.dtype.kind == "O":
                stored = [v.decode() for v in stored]
            assert list(stored) == table[name].to_pylist(), name
        assert g["power.power"].attrs["unit"] == "W"
        assert g["rotator"].attrs["unit"] == "deg"
        assert dict(f["meta"].attrs)["operator"] == "Ada"
        assert json.loads(f["meta"].attrs["json"]) == meta
        snaps = list(zip([v.decode() for v in f["settings/instrument"][:]],
                         [v.decode() for v in f["settings/reason"][:]],
                         [json.loads(v) for v in f["settings/settings"][:]], strict=True))
    start = {i: s for i, r, s in snaps if r == "session start"}
    assert start["power"]["wavelength"] == 633 and start["rotator"]["model"] == "ELL14"
    after = [s for i, r, s in snaps if i == "power" and r == "after set_wavelength"]
    assert after and after[0]["wavelength"] == 800
    # Arrow flavor: one IPC file per points run, read with pyarrow and pandas
    path = dirs["v4"] / "points-scan-1.arrow"
    back = pa.ipc.open_file(path).read_all()
    assert back.equals(table)
    for f in table.schema:
        assert back.schema.field(f.name).metadata == f.metadata
    assert json.loads(back.schema.metadata[b"daqhub.meta"]) == meta
    frame = pd.read_feather(path)
    assert frame["step"].tolist() == list(range(5))
    assert frame.equals(table.to_pandas())
    settings = pa.ipc.open_file(dirs["v4"] / "settings.arrow").read_all()
    assert json.loads(settings.schema.metadata[b"daqhub.meta"]) == meta
    assert {"power", "rotator"} <= set(settings["instrument"].to_pylist())





@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_an_instrument_failing_mid_scan_ends_it_with_its_error(
        tmp_path: Path, host: PluginHost, flavor: str) -> None:
    lab_text = optics_lab(tmp_path, "v2", extra=LIMITED_TOML.format(flavor=flavor))
    with daqhub.open_lab(lab_text, host=host, report=None) as lab:
        with pytest.raises(DriverError) as err:
            lab.scan("stage", [0, 10, 20, 30, 40], read=["power"])
        dirs = lab.output_dirs()
    assert str(err.value) == "stage: 'PA30.0' [code 7]: limit switch hit"
    assert err.value.instrument_id == "stage"
    with h5py.File(dirs["v2"] / "records.h5", "r") as f:
        g = f["points/scan-1"]
        assert bool(g.attrs["complete"]) is False
        assert "limit switch hit" in g.attrs["stop_reason"]
        assert list(g["step"][:]) == [0, 1, 2]


def test_lab_stop_ends_the_scan_with_the_rows_so_far_marked_incomplete(
        tmp_path: Path, host: PluginHost) -> None:
    with daqhub.open_lab(optics_lab(tmp_path, "v2"), host=host, report=None) as lab:
        records = lab.records

        def stop_after_two_rows() -> None:
            with records.row_added:
                records.row_added.wait_for(
                    lambda: any(len(r.rows) >= 2 for r in records.runs.values()), timeout=60)
            lab.stop()

        stopper = threading.Thread(target=stop_after_two_rows)
        stopper.start()
        table = lab.scan("rotator", ANGLES, read=["power"], settle=0.1)
        stopper.join(5)
    assert 2 <= table.num_rows < 19
    assert table.schema.metadata[b"daqhub.complete"] == b"false"
    assert table.schema.metadata[b"daqhub.stop_reason"] == b"stopped"
    files = glob.glob(str(tmp_path / "v2" / "*" / "records.h5"))
    with h5py.File(files[0], "r") as f:
        assert len(f["points/scan-1/step"]) == table.num_rows


def test_lab_stop_stops_every_run_going_and_no_run_started_after_it(
        tmp_path: Path, host: PluginHost) -> None:
    """A scan in one thread, a long measure in another, lab.stop(), then a new measure (as a
    monitoring thread starts one every few seconds): both runs going at the stop end stopped,
    the new one runs to its end. Each run cleared one lab-wide flag as it began, so the new
    measure wiped the stop and the scan ran all its points, marked complete."""
    GatedV2.moving.clear()
    GatedV2.gate.clear()
    tables: dict[str, pa.Table] = {}
    with daqhub.open_lab(optics_lab(tmp_path, "v2", extra=GATED_TOML), host=host,
                         report=None) as lab:
        records = lab.records

        def run(name: str, start: Callable[[], pa.Table]) -> threading.Thread:
            thread = threading.Thread(target=lambda: tables.__setitem__(name, start()))
            thread.start()
            return thread

        monitor = run("monitor", lambda: lab.measure(["power"], repeat=10_000, interval=0.05))
        with records.row_added:  # the monitor's run is going
            assert records.row_added.wait_for(lambda: any(
                r.run_id.startswith("measure") and r.rows for r in records.runs.values()), 60)
        scan = run("scan", lambda: lab.scan("gated", [1.0, 2.0, 3.0, 4.0], read=["power"]))
        try:
            assert GatedV2.moving.wait(60)  # the scan is inside its first move
            lab.stop()
            after = lab.measure(["power"], repeat=3)
        finally:
            GatedV2.gate.set()
            scan.join(60)
            monitor.join(60)
    assert not scan.is_alive() and not monitor.is_alive()
    for name in ("scan", "monitor"):
        meta = tables[name].schema.metadata
        assert (meta[b"daqhub.complete"], meta[b"daqhub.stop_reason"]) == (b"false", b"stopped")
    assert tables["scan"].num_rows < 4
    assert after.num_rows == 3 and after.schema.metadata[b"daqhub.complete"] == b"true"


def test_grid_and_measure_share_the_engine(tmp_path: Path, host: PluginHost) -> None:
    lab_text = optics_lab(tmp_path, "v2", extra=LIMITED_TOML.format(flavor="v4"))
    with daqhub.open_lab(lab_text, host=host, report=None, storage=False) as lab:
        grid = lab.grid({"stage": [0, 5], "rotator": [0, 90]}, read=["power"], settle=0.3)
        measured = lab.measure(["power", "rotator"], repeat=3)
        together = lab.scan({"stage": [1.0, 2.0], "rotator": [10.0, 20.0]}, read=["stage"])
        with pytest.raises(ScanError, match="as many values each"):
            lab.scan({"stage": [1.0], "rotator": [10.0, 20.0]}, read=["power"])
        # each wait is named as the caller named it
        with pytest.raises(ScanError, match="interval must be a number of seconds from 0 to 3600"):
            lab.measure(["power"], interval=-1)
        with pytest.raises(ScanError, match="settle must be a number of seconds from 0 to 3600"):
            lab.grid({"stage": [0]}, read=["power"], settle=float("nan"))
    assert grid.num_rows == 4
    assert grid["stage"].to_pylist() == [0, 0, 5, 5]
    assert grid["rotator"].to_pylist() == [0, 90, 0, 90]
    p = grid["power.power"].to_pylist()
    assert p[0] > 10 * p[1] and p[2] > 10 * p[3]  # crossed polariser at 90 deg
    assert measured.num_rows == 3 and measured["repeat"].to_pylist() == [0, 1, 2]
    assert "rotator.position" in measured.column_names
    assert together["stage"].to_pylist() == [1.0, 2.0]
    assert together["rotator"].to_pylist() == [10.0, 20.0]
    assert together["stage.position"].to_pylist() == [1.0, 2.0]


def test_many_runs_are_all_in_records_h5_each_written_once(
        tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """A script of many short runs: every run is in records.h5 with its rows, and a run that
    ended is not written again at every later flush (that made N runs cost O(N^2))."""
    from daqhub import records

    written: list[str] = []
    encode = records._hdf5_points
    monkeypatch.setattr(records, "_hdf5_points",
                        lambda g, table: (written.append(g.name), encode(g, table))[1])
    runs = 40
    with daqhub.open_lab(optics_lab(tmp_path, "v4"), host=host, report=None) as lab:
        tables = [lab.measure(["power"], repeat=2) for _ in range(runs)]
        lab["power"].set_wavelength(700)  # a settings snapshot after the runs
        dirs = lab.output_dirs()
    with h5py.File(dirs["v2"] / "records.h5", "r") as f:
        assert sorted(f["points"], key=lambda r: int(r.split("-")[1])) == \
            [f"measure-{i}" for i in range(1, runs + 1)]
        for i, table in enumerate(tables, 1):
            g = f[f"points/measure-{i}"]
            assert bool(g.attrs["complete"]) and len(g["repeat"]) == table.num_rows == 2
            assert list(g["power.power"][:]) == table["power.power"].to_pylist()
        reasons = [r.decode() for r in f["settings/reason"][:]]
        assert reasons[-1] == "after set_wavelength" and "session start" in reasons
    # each run written about once (plus the whole rewrites when the file doubles); every run
    # at every end would be runs * (runs + 1) / 2 = 820
    assert len(written) < 4 * runs, len(written)


def test_record_files_removed_during_a_session_are_written_again(
        tmp_path: Path, host: PluginHost) -> None:
    with daqhub.open_lab(optics_lab(tmp_path, "v4"), host=host, report=None) as lab:
        lab.measure(["power"], repeat=2)
        path = lab.output_dirs()["v2"] / "records.h5"
        points = lab.output_dirs()["v4"] / "points-measure-1.arrow"
        path.unlink()  # e.g. a cleanup script; the next flush must not fail for good
        points.unlink()
        lab.measure(["power"], repeat=2)
        errors = list(lab.records.errors)
    with h5py.File(path, "r") as f:
        assert sorted(f["points"]) == ["measure-1", "measure-2"]
    assert pa.ipc.open_file(points).read_all().num_rows == 2
    assert errors == []


def no_space(path: Path, write: Callable[[Path], None]) -> None:
    """Stands in for ``records.replace_whole`` on a full disk: every record file fails."""
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def records_errors(report: daqhub.ShutdownReport | None) -> list[str]:
    assert report is not None
    return sorted(e for e in report.errors if " records in " in e)


def test_records_that_cannot_be_written_make_the_run_not_ok(
        tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    from daqhub import records

    with daqhub.open_lab(optics_lab(tmp_path, "v4"), host=host, report=None) as lab:
        monkeypatch.setattr(records, "replace_whole", no_space)
        table = lab.measure(["power"], repeat=2)
        dirs = lab.output_dirs()
    assert table.num_rows == 2  # the script has its rows all the same
    assert lab.report is not None and not lab.report.ok
    v2, v4 = records_errors(lab.report)
    why = r"\d+ failed writes; last: OSError: \[Errno 28\] No space left on device: '{}'\)"
    assert re.fullmatch(re.escape(f"v2 records in {dirs['v2']} left unwritten or out of date: "
                                  "records.h5 (settings, points measure-1) (")
                        + why.format(re.escape(str(dirs["v2"] / "records.h5"))), v2), v2
    assert re.fullmatch(re.escape(f"v4 records in {dirs['v4']} left unwritten or out of date: "
                                  "settings.arrow, points-measure-1.arrow (")
                        + why.format(re.escape(str(dirs["v4"] / "settings.arrow"))), v4), v4
    assert not (dirs["v4"] / "points-measure-1.arrow").exists()


def test_a_failure_of_the_last_records_flush_is_in_the_report(
        tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    from daqhub import records

    with daqhub.open_lab(optics_lab(tmp_path, "v4"), host=host, report=None) as lab:
        lab.measure(["power"], repeat=2)  # written in full when the run ended
        monkeypatch.setattr(records, "replace_whole", no_space)  # only the shutdown's flush fails
        dirs = lab.output_dirs()
    assert lab.report is not None and not lab.report.ok
    assert records_errors(lab.report) == [
        f"{flavor} records in {dirs[flavor]} left unwritten or out of date: {what} (1 failed "
        f"write; last: OSError: [Errno 28] No space left on device: '{dirs[flavor] / path}')"
        for flavor, what, path in (("v2", "records.h5 (settings)", "records.h5"),
                                   ("v4", "settings.arrow", "settings.arrow"))]


def test_records_a_later_flush_wrote_after_a_failure_leave_the_run_ok(
        tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the report judges is what the session leaves on disk: every flush rewrites what
    is missing, so a disk full for a moment costs nothing once one has written it all."""
    from daqhub import records

    with daqhub.open_lab(optics_lab(tmp_path, "v4"), host=host, report=None) as lab:
        with monkeypatch.context() as m:
            m.setattr(records, "replace_whole", no_space)
            lab.measure(["power"], repeat=2)  # a disk full for a moment
        lab.measure(["power"], repeat=2)  # freed again: this run's end writes everything
        dirs = lab.output_dirs()
    assert lab.report is not None and lab.report.ok, lab.report.errors
    assert records_errors(lab.report) == []
    assert pa.ipc.open_file(dirs["v4"] / "points-measure-1.arrow").read_all().num_rows == 2
    with h5py.File(dirs["v2"] / "records.h5", "r") as f:
        assert sorted(f["points"]) == ["measure-1", "measure-2"]
