"""Session ids, output directories, id checks, file locks and routing between flavors."""

from __future__ import annotations

import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from daqhub import storage
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec, DataError, Flavor
from daqhub.resources.filelock import FileExistsRefusal, FileLock, FileLockError
from daqhub.schema import build_batch
from daqhub.storage import (
    FlavorStorage,
    StorageError,
    StorageSession,
    check_id,
    check_output_dirs,
    new_session_id,
)

PROC = Path(__file__).with_name("storage_session_proc.py")
X = ChannelSpec("x", "scalar", "W")
CHANNELS = {"meter": [X]}


def _batch(values: np.ndarray, source: Flavor, start: int = 0) -> object:
    ts = np.arange(start, start + len(values), dtype=np.int64) * 1000
    return build_batch("meter", X, ts, values, source=source)


# --- session ids --------------------------------------------------------------------


def test_session_id_is_utc_time_plus_random_suffix() -> None:
    sid = new_session_id()
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", sid)
    started = datetime.strptime(sid[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - started).total_seconds()) < 5
    assert len({new_session_id() for _ in range(1000)}) == 1000


@pytest.mark.timeout(30)
def test_processes_started_in_the_same_second_get_different_sessions(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, str(PROC), "race", str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for p in procs:  # every interpreter started and imported before the clock starts
            assert p.stdout is not None
            ready, _, _ = select.select([p.stdout], [], [], 20)
            assert ready and p.stdout.readline().strip() == "armed", p.stderr
        start_at = math.ceil(time.time()) + 0.1  # early in the next second
        ids = []
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{start_at}\n")
            p.stdin.flush()
        for p in procs:
            out, err = p.communicate(timeout=25)
            assert p.returncode == 0, err
            ids.append(out.strip())
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    assert len(set(ids)) == 3, ids
    assert len({sid.split("-")[0] for sid in ids}) == 1, f"not opened in the same second: {ids}"
    for flavor in ("v2", "v4"):
        assert sorted(d.name for d in (tmp_path / flavor).iterdir()) == sorted(ids)


def test_a_colliding_session_id_is_drawn_again(tmp_path: Path, storage_host: PluginHost,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter(["20250101T000000Z-00000000", "20250101T000000Z-00000000",
                  "20250101T000000Z-00000001"])
    monkeypatch.setattr(storage, "new_session_id", lambda: next(drawn))
    plan = {"v2": FlavorStorage("hdf5", CHANNELS), "v4": FlavorStorage("arrow", CHANNELS)}
    first = StorageSession.open(storage_host, tmp_path, plan)
    second = StorageSession.open(storage_host, tmp_path, plan)
    assert (first.session_id, second.session_id) == ("20250101T000000Z-00000000",
                                                     "20250101T000000Z-00000001")
    first.close()
    second.close()


# --- ids and directories ------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../x", "a/b", "/etc", "", ".", "..", "a\0b", "a\\b", "CON",
                                 "nul", "com1", "-rf", "x" * 65, "a b", "é", "x.h5", "_daqhub"])
def test_ids_that_could_escape_or_break_a_path_are_rejected(bad: str) -> None:
    why = check_id(bad)
    assert why is not None
    assert repr(bad) in why or bad == "" or len(bad) > 64


@pytest.mark.parametrize("good", ["power", "dmm_1", "Stage-2", "x", "_raw", "a" * 64])
def test_plain_ids_are_accepted(good: str) -> None:
    assert check_id(good) is None


def test_a_bad_id_is_refused_before_anything_is_created(tmp_path: Path,
                                                        storage_host: PluginHost) -> None:
    out = tmp_path / "data"
    with pytest.raises(StorageError) as err:
        StorageSession.open(storage_host, out, {
            "v2": FlavorStorage("hdf5", {"../x": [X]}),
            "v4": FlavorStorage("arrow", {"a/b": [X]})})
    assert "'../x'" in str(err.value) and "'a/b'" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_same_or_nested_output_dirs_are_rejected(tmp_path: Path) -> None:
    a = tmp_path / "a"
    assert check_output_dirs(a / "v2", a / "v4") == []
    [same] = check_output_dirs(a, tmp_path / "a" / "." / "")
    assert "same" in same
    [nested] = check_output_dirs(a, a / "sub")
    assert "inside" in nested and "v4" in nested.split("inside")[0]
    [nested] = check_output_dirs(a / "sub" / "deeper", a)
    assert "v2 output directory" in nested
    a.mkdir()
    (tmp_path / "link").symlink_to(a)
    assert any("same" in p for p in check_output_dirs(a, tmp_path / "link"))
    assert check_output_dirs(None, a) == [] and check_output_dirs(a, None) == []


def test_unwritable_or_uncreatable_output_dirs_are_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    problems = check_output_dirs(blocker / "v2", blocker)
    assert any("v2 output directory" in p and "is a file" in p for p in problems)
    assert any("v4 output directory" in p and "not a directory" in p for p in problems)
    [proc] = check_output_dirs(Path("/proc/daqhub-test/v2"), None)
    assert "cannot be created" in proc and "/proc" in proc
    assert list(tmp_path.iterdir()) == [blocker], "checking leaves nothing behind"


def test_unknown_backend_names_the_installed_ones(tmp_path: Path,
                                                  storage_host: PluginHost) -> None:
    with pytest.raises(StorageError, match=r"'zarr' is not installed \(installed: arrow, hdf5\)"):
        StorageSession.open(storage_host, tmp_path, {"v2": FlavorStorage("zarr", CHANNELS)})


def test_bad_backend_options_are_named(tmp_path: Path, storage_host: PluginHost) -> None:
    with pytest.raises(ValueError, match="hdf5.flush_interval"):
        StorageSession.open(storage_host, tmp_path, {
            "v2": FlavorStorage("hdf5", CHANNELS, options={"flush_interval": -1})})
    with pytest.raises(ValueError, match="'colour' was unexpected"):
        StorageSession.open(storage_host, tmp_path, {
            "v4": FlavorStorage("arrow", CHANNELS, options={"colour": "red"})})


def test_a_failed_open_leaves_no_session_behind(tmp_path: Path,
                                                storage_host: PluginHost) -> None:
    with pytest.raises(ValueError, match="batch_rows"):
        StorageSession.open(storage_host, tmp_path, {
            "v2": FlavorStorage("hdf5", CHANNELS),
            "v4": FlavorStorage("arrow", CHANNELS, options={"batch_rows": 0})})
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert list((tmp_path / "v2").iterdir()) == list((tmp_path / "v4").iterdir()) == []


def test_entry_points_provide_both_backends() -> None:
    host = PluginHost()
    host.load_entry_points()
    assert {"hdf5", "arrow"} <= set(host.storage_backends())


# --- locks --------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend,locked", [("hdf5", "session.h5"), ("arrow", "x.arrows")])
def test_a_second_writer_of_the_same_file_is_told_who_holds_it(
        tmp_path: Path, storage_host: PluginHost, backend: str, locked: str) -> None:
    sid = "20250101T000000Z-0000abcd"
    holder = subprocess.Popen([sys.executable, str(PROC), "hold", str(tmp_path), sid, backend],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        ready, _, _ = select.select([holder.stdout], [], [], 20)
        assert ready and holder.stdout.readline().strip() == "ready"
        plan = {"v2": FlavorStorage(backend, CHANNELS)}
        with pytest.raises(FileLockError) as err:
            StorageSession.open(storage_host, tmp_path, plan, session_id=sid)
        message = str(err.value)
        assert f"process {holder.pid}" in message and locked in message
        assert err.value.holder is not None and err.value.holder.pid == holder.pid
        holder.stdin.write("done\n")
        holder.stdin.flush()
        assert holder.wait(20) == 0, holder.stderr.read()  # type: ignore[union-attr]
        with pytest.raises(FileExistsRefusal, match="never overwrites"):
            StorageSession.open(storage_host, tmp_path, plan, session_id=sid)
    finally:
        holder.kill()
        holder.wait(10)


def test_a_stale_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    target = tmp_path / "data.h5"
    code = ("import os, sys\nfrom daqhub.resources.filelock import FileLock\n"
            "FileLock(sys.argv[1]).acquire()\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(target)], check=True, timeout=20)
    assert (tmp_path / "data.h5.lock").exists()
    lock = FileLock(target)
    lock.acquire()
    assert lock.held
    with pytest.raises(FileLockError, match="waited 0.1 s"):
        FileLock(target).acquire(timeout=0.1)
    lock.release()
    assert not (tmp_path / "data.h5.lock").exists()


def test_a_dead_holders_longer_record_is_replaced_whole(tmp_path: Path) -> None:
    """What a refused writer is told names the live holder, not a dead one's leftovers."""
    target = tmp_path / "data.h5"
    stale = "pid=999999\nhost=gone\nsince=2020-01-01T00:00:00Z\ncommand=" + "x" * 400 + "\n"
    (tmp_path / "data.h5.lock").write_text(stale)
    lock = FileLock(target)
    lock.acquire()
    try:
        text = (tmp_path / "data.h5.lock").read_text()
        assert f"pid={os.getpid()}\n" in text and "x" * 10 not in text and "gone" not in text
        with pytest.raises(FileLockError, match=str(os.getpid())):
            FileLock(target).acquire()
    finally:
        lock.release()


# --- routing ------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_v2_and_v4_written_at_once_never_touch_each_others_files(
        tmp_path: Path, storage_host: PluginHost) -> None:
    """Same instrument and channel names in both flavors, written from two threads."""
    session = StorageSession.open(storage_host, tmp_path, {
        "v2": FlavorStorage("hdf5", CHANNELS), "v4": FlavorStorage("arrow", CHANNELS)})
    errors: list[BaseException] = []

    def produce(source: Flavor, sign: float) -> None:
        try:
            for i in range(200):
                session.write(_batch(sign * np.arange(i * 50, (i + 1) * 50, dtype=np.float64),
                                     source, i * 50))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=("v2", 1.0)),
               threading.Thread(target=produce, args=("v4", -1.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors and not any(t.is_alive() for t in threads)
    files = session.close()
    v2_dir, v4_dir = tmp_path / "v2" / session.session_id, tmp_path / "v4" / session.session_id
    assert files == {"v2": [v2_dir / "session.h5"], "v4": [v4_dir / "meter" / "x.arrows"]}
    assert sorted(p for p in v2_dir.rglob("*") if p.is_file()) == files["v2"]
    assert sorted(p for p in v4_dir.rglob("*") if p.is_file()) == files["v4"]
    expected = np.arange(10_000, dtype=np.float64)
    with h5py.File(files["v2"][0], "r") as f:
        assert np.array_equal(f["meter/x/value"][:], expected)
    table = ipc.open_stream(files["v4"][0]).read_all()
    assert np.array_equal(table.column("value").to_numpy(), -expected)
    assert set(table.column("source").to_pylist()) == {"v4"}


def test_batches_that_do_not_fit_the_session_are_refused(tmp_path: Path,
                                                         storage_host: PluginHost) -> None:
    session = StorageSession.open(storage_host, tmp_path, {"v2": FlavorStorage("hdf5", CHANNELS)})
    try:
        with pytest.raises(StorageError, match="v4 data of meter.x.*v4 storage is not enabled"):
            session.write(_batch(np.ones(3), "v4"))
        other = ChannelSpec("y", "scalar", "W")
        with pytest.raises(DataError, match="meter.y was not declared"):
            session.write(build_batch("meter", other, [1], np.ones(1), source="v2"))
        watts = ChannelSpec("x", "scalar", "mW")
        with pytest.raises(DataError, match="declared as"):
            session.write(build_batch("meter", watts, [1], np.ones(1), source="v2"))
        with pytest.raises(DataError, match="no 'source' column"):
            session.write(build_batch("meter", X, [1], np.ones(1)))
        session.write(_batch(np.ones(3), "v2"))
    finally:
        files = session.close()
    with h5py.File(files["v2"][0], "r") as f:
        assert len(f["meter/x/value"]) == 3


def test_a_mixed_source_batch_is_split_between_flavors(tmp_path: Path,
                                                       storage_host: PluginHost) -> None:
    session = StorageSession.open(storage_host, tmp_path, {
        "v2": FlavorStorage("hdf5", CHANNELS), "v4": FlavorStorage("arrow", CHANNELS)})
    batch = _batch(np.arange(4, dtype=np.float64), "v2")
    mixed = batch.set_column(batch.schema.get_field_index("source"), batch.schema.field("source"),
                             pa.array(["v2", "v4", "v2", "v4"]))
    session.write(mixed)
    files = session.close()
    with h5py.File(files["v2"][0], "r") as f:
        assert list(f["meter/x/value"][:]) == [0.0, 2.0]
    assert ipc.open_stream(files["v4"][0]).read_all().column("value").to_pylist() == [1.0, 3.0]
