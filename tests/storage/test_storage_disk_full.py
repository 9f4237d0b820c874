"""Storage on a disk that is full when a file is made: a lock, a session, a Parquet copy.

What must hold (docs/architecture.md, "Storage"): a failure names the file it was making;
nothing it made is left behind (no lock file still held, no session directory of a session
that never started, no partial Parquet file); and a Parquet compaction that fails loses
nothing, so the stream it came from is kept, listed, and no sample is counted as lost.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from polling import wait_until
from storage_testdata import LAB_CONFIG

import daqhub.plugins.arrow as arrow_plugin
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.resources.filelock import FileLock
from daqhub.schema import build_batch
from daqhub.specs import StorageBackend, StorageTarget
from daqhub.storage import FlavorStorage, StorageSession, WriteFailed

FULL_AT_START = Path(__file__).with_name("storage_full_at_start.py")
SCALAR = ChannelSpec("x", "scalar", "W")
SESSION = r"\d{8}T\d{6}Z-[0-9a-f]{8}"


def no_room(*args: Any, **kwargs: Any) -> Any:
    """A write to a full disk, as the kernel reports it: no file name."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.timeout(30)
def test_a_lock_whose_holder_cannot_be_recorded_is_released_and_names_its_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error said only "[Errno 28] No space left on device", and the lock stayed
    taken, its file left behind, until the process ended."""
    lock = FileLock(tmp_path / "session.h5")
    with monkeypatch.context() as full:
        full.setattr(os, "pwrite", no_room)
        with pytest.raises(OSError) as caught:
            lock.acquire()
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "session.h5.lock")
    assert not lock.held and not (tmp_path / "session.h5.lock").exists()
    with FileLock(tmp_path / "session.h5"):  # free for the next writer
        pass


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend,room,names", [
    ("hdf5", 0, "session.h5.lock"), ("hdf5", 50, "session.h5"), ("hdf5", 200, "session.h5"),
    ("arrow", 0, "meter/x.arrows.lock"), ("arrow", 50, "meter/x.arrows"),
    ("arrow", 200, "meter/x.arrows")])
def test_storage_that_cannot_start_on_a_full_disk_names_the_file_and_leaves_nothing(
        tmp_path: Path, backend: str, room: int, names: str) -> None:
    """A run on a full disk stopped with "could not start the lab: [Errno 28] No space left
    on device" and left a session directory holding the lock file (or a part-made data
    file); HDF5 failing in its layout said "slist already enabled?" instead."""
    done = subprocess.run([sys.executable, str(FULL_AT_START), str(tmp_path), backend,
                           str(room)], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["error"], out
    named = re.escape(str(tmp_path / "v2")) + f"/{SESSION}/" + re.escape(names) + r"\b"
    assert re.search(named, out["error"]["text"]), out["error"]
    assert out["left"] == ["v2"], out["left"]  # no session directory, no lock file


@pytest.mark.timeout(30)
def test_a_backend_that_fails_to_open_leaves_no_session_directory(
        tmp_path: Path, storage_host: PluginHost) -> None:
    """Only the files of the writers that opened were removed: what the failing one left
    kept the session directory of a session that never started."""
    def part_made(target: StorageTarget) -> Any:
        (Path(target.directory) / "store.bin").write_bytes(b"\0" * 16)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "store.bin")

    storage_host.register(types.SimpleNamespace(daqhub_storage_backends=hookimpl(
        lambda: [StorageBackend("odd", part_made, "a backend on a full disk")])),
        "odd:store", "odd-store", "1.2")
    with pytest.raises(Exception, match="No space left on device"):
        StorageSession.open(storage_host, tmp_path, {
            "v4": FlavorStorage("hdf5", {"m": [SCALAR]}),
            "v2": FlavorStorage("odd", {"n": [SCALAR]})}, lab_config=LAB_CONFIG)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["v2", "v4"]


class NoRoomParquet:
    """A ParquetWriter on a full disk: its file is made, its first row group fails."""

    def __init__(self, where: Any, *args: Any, **kwargs: Any) -> None:
        Path(where).write_bytes(b"PAR1")

    def write_batch(self, batch: pa.RecordBatch) -> None:
        no_room()

    def __enter__(self) -> NoRoomParquet:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fails", ["parquet_write", "parquet_lock"])
@pytest.mark.parametrize("keep_stream", [False, True])
def test_a_failed_parquet_compaction_keeps_and_lists_the_stream_and_loses_nothing(
        tmp_path: Path, storage_host: PluginHost, monkeypatch: pytest.MonkeyPatch,
        fails: str, keep_stream: bool) -> None:
    """The close raised a bare "closing failed: OSError: [Errno 28] No space left on
    device", naming no stream, the flavor's files went unlisted though its stream held
    every row, and the Parquet file's lock (or its part-written copy) was left."""
    session = StorageSession.open(storage_host, tmp_path, {"v2": FlavorStorage(
        "arrow", {"meter": [SCALAR]}, options={"parquet": True, "keep_stream": keep_stream})},
        lab_config=LAB_CONFIG)
    directory = session.directories["v2"]
    values = np.arange(30, dtype=np.float64)
    session.write(build_batch("meter", SCALAR, values.astype(np.int64), values, source="v2"))
    if fails == "parquet_write":
        monkeypatch.setattr(arrow_plugin.pq, "ParquetWriter", NoRoomParquet)
    else:  # the disk is full already when the Parquet file's lock records its holder
        real_pwrite = os.pwrite
        monkeypatch.setattr(os, "pwrite", lambda fd, data, at: no_room() if os.readlink(
            f"/proc/self/fd/{fd}").endswith(".parquet.lock") else real_pwrite(fd, data, at))
    with pytest.raises(WriteFailed) as caught:
        session.close()
    stream = directory / "meter" / "x.arrows"
    assert caught.value.lost == 0 and caught.value.by_instrument == {}
    assert f"meter.x: not compacted to x.parquet (OSError: [Errno {errno.ENOSPC}]" in str(
        caught.value)
    assert f"nothing is lost: {stream}, kept, holds all its 30 row(s)" in str(caught.value)
    assert caught.value.result == {"v2": [stream]}
    assert sorted(p.name for p in directory.rglob("*")) == ["meter", "x.arrows"]
    with pa.ipc.open_stream(stream) as reader:
        assert reader.read_all().column("value").to_pylist() == values.tolist()


@pytest.mark.timeout(30)
def test_the_background_flusher_stops_when_the_last_flavor_closes_with_a_failure(
        tmp_path: Path, storage_host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime closes each flavor on its own (``close_flavor``); one whose close raised
    (a full disk) skipped stopping the session's flusher, whose thread then ran for the
    rest of the process."""
    session = StorageSession.open(storage_host, tmp_path, {"v2": FlavorStorage(
        "arrow", {"meter": [SCALAR]}, options={"parquet": True})}, lab_config=LAB_CONFIG)
    values = np.arange(3, dtype=np.float64)
    session.write(build_batch("meter", SCALAR, values.astype(np.int64), values, source="v2"))
    monkeypatch.setattr(arrow_plugin.pq, "ParquetWriter", NoRoomParquet)
    with pytest.raises(WriteFailed):
        session.close_flavor("v2")
    name = f"daqhub-storage-flush-{session.session_id}"
    wait_until(lambda: name not in {t.name for t in threading.enumerate()},
               "the background flusher to stop", timeout=10)
