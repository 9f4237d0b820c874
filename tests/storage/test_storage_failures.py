"""Storage that fails while a run goes on: a full disk, a session file removed while open.

What must hold (docs/architecture.md, "Storage" and "Honest outcomes"): every sample
that did not reach a file is counted, once (``WriteFailed.lost``), the samples held in
memory when the write failed too; what a file stored before the failure still reads back
as stored; and no reader calls such a file fine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from storage_testdata import LAB_CONFIG
from test_hdf5_flushed_rows import _inspect

import daqhub.plugins.arrow as arrow_plugin
from daqhub import read_session
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.readback import SessionFileWarning
from daqhub.schema import build_batch
from daqhub.storage import FlavorStorage, StorageSession, WriteFailed

FULL_DISK = Path(__file__).with_name("storage_full_disk.py")
SCALAR = ChannelSpec("x", "scalar", "W")
OTHER = ChannelSpec("y", "scalar", "V")
CHANNELS = {"meter": [SCALAR, OTHER]}


def _batch(spec: ChannelSpec, first: int, rows: int, source: str) -> Any:
    values = np.arange(first, first + rows, dtype=np.float64)
    return build_batch("meter", spec, 1_700_000_000_000_000_000 + values.astype(np.int64),
                       values, source=source)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["hdf5", "arrow"])
def test_a_full_disk_stops_the_file_keeps_what_it_stored_and_counts_every_lost_sample(
        tmp_path: Path, backend: str) -> None:
    """The disk fills, then has room again (storage_full_disk.py, RLIMIT_FSIZE). Before,
    HDF5 counted rows over a chunk it had dropped (they read 0.0) and Arrow appended past a
    cut batch (nothing after it read); both counted one batch per failure, not what they
    held; and readers called the files fine."""
    done = subprocess.run([sys.executable, str(FULL_DISK), str(tmp_path), backend],
                          capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    with pytest.warns(SessionFileWarning, match="not closed cleanly"):
        tables = read_session(out["session_dir"])
    assert isinstance(tables, dict)
    table = tables["meter.x"]
    stored = table.num_rows
    # what was stored before the disk filled is there and intact, in order, no zeros
    assert stored >= out["stored_before"]
    assert np.array_equal(table.column("value").to_numpy(), np.arange(stored))
    # every sample is either in the file or counted as lost, exactly once
    assert out["lost"] > 0 and stored + out["lost"] == out["given"], out
    [data] = [p for p in Path(out["session_dir"]).rglob("*") if p.suffix in (".h5", ".arrows")]
    file = _inspect(data)
    assert file["status"] == "recovered", file
    assert any(n.startswith("not closed cleanly") for n in file["notes"]), file
    assert file["channels"][0]["rows"] == stored


@pytest.mark.timeout(30)
@pytest.mark.parametrize("removed", ["v2", "v4"])
def test_a_file_removed_while_it_is_written_is_a_failure_that_counts_its_samples(
        tmp_path: Path, storage_host: PluginHost, removed: str) -> None:
    """A removed file takes every write without an error; the session says so at close,
    counts all its samples as lost, and lists only the files still there."""
    session = StorageSession.open(storage_host, tmp_path, {
        "v2": FlavorStorage("hdf5", CHANNELS), "v4": FlavorStorage("arrow", CHANNELS)},
        lab_config=LAB_CONFIG)
    dirs = session.directories
    for source, rows in (("v2", 30), ("v4", 40)):
        session.write(_batch(SCALAR, 0, rows, source))
        session.write(_batch(OTHER, 0, rows, source))
    session.flush()
    for path in dirs[removed].rglob("*"):  # a clean-up script, a user
        if path.is_file():
            path.unlink()
    with pytest.raises(WriteFailed, match="was removed while it was being written") as caught:
        session.close()
    assert caught.value.lost == {"v2": 60, "v4": 80}[removed]
    kept = "v4" if removed == "v2" else "v2"
    assert caught.value.result[removed] == []
    assert caught.value.result[kept] and all(p.exists() for p in caught.value.result[kept])


@pytest.mark.timeout(30)
def test_a_failed_background_flush_is_raised_by_its_own_writer_once(
        tmp_path: Path, storage_host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its loss reaches the sink with that writer's next write; before, it was raised by
    whichever batch came next, which was then not written, even another flavor's."""
    failed = threading.Event()
    real_flush = arrow_plugin.ArrowWriter.flush

    def flush(writer: arrow_plugin.ArrowWriter) -> None:
        if not failed.is_set():
            failed.set()
            raise WriteFailed("disk full: 7 rows held are lost", 7)
        real_flush(writer)

    monkeypatch.setattr(arrow_plugin.ArrowWriter, "flush", flush)
    session = StorageSession.open(storage_host, tmp_path, {
        "v2": FlavorStorage("hdf5", CHANNELS, options={"flush_interval": 3600}),
        "v4": FlavorStorage("arrow", CHANNELS, options={"flush_interval": 0.05})},
        lab_config=LAB_CONFIG)
    assert failed.wait(10), "the background flusher flushes an idle writer"
    session.write(_batch(SCALAR, 0, 10, "v2"))  # another flavor's batch is written
    with pytest.raises(WriteFailed, match="disk full") as caught:
        session.write(_batch(SCALAR, 0, 10, "v4"))
    assert caught.value.lost == 7
    session.write(_batch(SCALAR, 10, 10, "v4"))  # raised once, not again
    assert session.close()
    with h5py.File(session.directories["v2"] / "session.h5", "r") as f:
        assert f["meter/x"].attrs["rows"] == 10 and f.attrs["closed"] == 1
