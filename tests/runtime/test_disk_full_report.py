"""A run whose disk fills: the report charges every lost sample to its own instrument, a
failed Parquet compaction loses nothing, and budget.json is written whole or not at all.

The disk here is daqhub's own backends with the library calls that write made to fail as
a full disk makes them (ENOSPC): HDF5's flush of ``session.h5``, an Arrow stream's batch
write, a Parquet file's row group, budget.json's text. v2 instruments store to HDF5 (one
file for both), v4 ones to Arrow (a stream per channel).
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import pyarrow as pa
import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, make_lab

import daqhub.plugins.arrow as arrow_plugin
from daqhub import read_session
from daqhub.readback import SessionFileWarning
from daqhub.runtime.dual import DualRuntimeManager

IDS = ("a", "b", "c", "d")


def no_room() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class StreamOnFullDisk:
    """An Arrow stream writer whose batch writes fail once the disk is full."""

    def __init__(self, writer: Any, full: threading.Event) -> None:
        self.writer, self.full = writer, full

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if self.full.is_set():
            raise no_room()
        self.writer.write_batch(batch)

    def close(self) -> None:
        self.writer.close()


class FullDisk:
    """The session files' disk, full from :meth:`fill` on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = threading.Event()
        real_flush, real_new_stream = h5py.File.flush, pa.ipc.new_stream

        def flush(f: h5py.File) -> None:
            if self.full.is_set() and Path(f.filename).name == "session.h5":
                raise no_room()
            real_flush(f)

        monkeypatch.setattr(h5py.File, "flush", flush)
        monkeypatch.setattr(pa.ipc, "new_stream", lambda *args, **kwargs: StreamOnFullDisk(
            real_new_stream(*args, **kwargs), self.full))

    def fill(self) -> None:
        self.full.set()


def counter_lab(host: Any, tmp_path: Path, flush_interval: float) -> Any:
    return make_lab(host, tmp_path, v2=[("a", "test.counter"), ("b", "test.counter")],
                    v4=[("c", "test.counter"), ("d", "test.counter")],
                    extra=f'[v2]\nstorage = "hdf5"\n[v4]\nstorage = "arrow"\n'
                          f"[storage.hdf5]\nflush_interval = {flush_interval}\n"
                          f"[storage.arrow]\nflush_interval = {flush_interval}\n")


def rows_on_disk(session_dir: Path) -> Counter[str]:
    """Each instrument's rows in the session's files, as a reader gets them."""
    rows: Counter[str] = Counter()
    with warnings.catch_warnings():  # files cut at a write error are "not closed cleanly"
        warnings.simplefilter("ignore", SessionFileWarning)
        for name, table in read_session(session_dir).items():
            rows[name.split(".")[0]] += table.num_rows
    return rows


@pytest.mark.timeout(60)
@pytest.mark.parametrize("when", ["during", "at_close", "removed"])
def test_every_sample_a_writer_lost_is_charged_to_its_own_instrument(
        host, tmp_path, monkeypatch, when) -> None:
    """The samples a writer held when it failed were charged to the batch in hand, at most
    its rows (stage: 51 measured, none on disk, "46 of its samples not stored"), and those
    lost at close to no instrument (dmm "stopped cleanly" while its rows were lost)."""
    disk = FullDisk(monkeypatch)
    lab = counter_lab(host, tmp_path, 3600 if when == "at_close" else 0.2)
    rt = DualRuntimeManager(lab, host, storage=True)
    rt.start()
    dirs = rt.output_dirs()
    try:
        wait_until(lambda: all(PRODUCED.get(i, 0) >= 20 for i in IDS), what="20 polls each")
        if when == "removed":  # a clean-up script: every file is lost at close
            for path in [*dirs["v2"].rglob("*.h5"), *dirs["v4"].rglob("*.arrows")]:
                path.unlink()
        else:
            disk.fill()
        if when == "during":  # both writers fail, and refuse what comes after
            wait_until(lambda: {a["what"] for a in rt.alarms} >= {"sink:storage:v2",
                                                                  "sink:storage:v4"},
                       what="both storage lanes failing")
            then = dict(PRODUCED)
            wait_until(lambda: all(PRODUCED[i] >= then[i] + 10 for i in IDS),
                       what="10 more polls each")
    finally:
        report = rt.shutdown()
    stored = rows_on_disk(dirs["v2"]) if when != "removed" else Counter()
    outcome = {o["id"]: o for o in report.instruments}
    for iid in IDS:
        measured = sum(report.counts[iid].values())
        assert outcome[iid]["not_stored"] == measured - stored[iid] > 0, (
            iid, measured, stored, outcome[iid]["problem"])
        assert "samples not stored by" in outcome[iid]["problem"]
    if when != "during":
        assert stored == Counter()  # nothing reached the disk: every sample is charged
    assert report.clean == [] and not report.ok


class NoRoomParquet:
    """A ParquetWriter on a full disk: its file is made, its first row group fails."""

    def __init__(self, where: Any, *args: Any, **kwargs: Any) -> None:
        Path(where).write_bytes(b"PAR1")

    def write_batch(self, batch: pa.RecordBatch) -> None:
        raise no_room()

    def __enter__(self) -> NoRoomParquet:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.mark.timeout(60)
def test_a_failed_parquet_compaction_lists_the_complete_streams_and_charges_no_sample(
        host, tmp_path, monkeypatch) -> None:
    """The report said "closing storage:v4 failed: ... closing failed: OSError: [Errno 28]
    No space left on device", named no stream and listed no files, though the streams held
    every row; a stale Parquet lock (or part-written copy) was left."""
    monkeypatch.setattr(arrow_plugin.pq, "ParquetWriter", NoRoomParquet)
    lab = make_lab(host, tmp_path, v2=[], v4=[("c", "test.counter")],
                   extra='[v4]\nstorage = "arrow"\n[storage.arrow]\nparquet = true\n')
    rt = DualRuntimeManager(lab, host, storage=True)
    rt.start()
    session = rt.output_dirs()["v4"]
    try:
        wait_until(lambda: PRODUCED.get("c", 0) >= 20, what="20 polls")
    finally:
        report = rt.shutdown()
    streams = [session / "c" / f"{ch}.arrows" for ch in ("count", "x")]
    assert sorted(report.sink_results["storage"]["v4"]) == streams
    for stream in streams:
        with pa.ipc.open_stream(stream) as reader:  # complete, closed cleanly
            assert reader.read_all().num_rows == report.counts["c"][stream.stem]
        said = (f"c.{stream.stem}: not compacted to {stream.stem}.parquet (OSError: [Errno "
                f"{errno.ENOSPC}] No space left on device); nothing is lost: {stream}, kept, "
                f"holds all its {report.counts['c'][stream.stem]} row(s)")
        assert any(said in e for e in report.errors), (said, report.errors)
    assert sorted(p.name for p in (session / "c").iterdir()) == ["count.arrows", "x.arrows"]
    [c] = report.instruments
    assert c["ok"] and c["not_stored"] == 0 and report.clean == ["c"]
    assert not report.ok  # the Parquet files asked for are not there


class CutShort:
    """A text file with room for ``room`` more characters: a write past them stores what
    fits, then fails as a full disk does."""

    def __init__(self, file: Any, room: int) -> None:
        self.file, self.room = file, room

    def write(self, text: str) -> int:
        self.file.write(text[:self.room])
        if len(text) > self.room:
            self.room = 0
            self.file.flush()
            raise no_room()
        self.room -= len(text)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def __enter__(self) -> CutShort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


@pytest.mark.timeout(60)
def test_a_budget_json_that_cannot_be_written_whole_is_not_left_cut_short(
        host, tmp_path, monkeypatch) -> None:
    """The report said "could not save budget.json ... No space left on device", and 20 KiB
    of it, not JSON, stayed in the session directory."""
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[("c", "test.counter")])
    rt = DualRuntimeManager(lab, host, storage=True)
    rt.start()
    session = rt.output_dirs()["v2"]
    real_open = io.open

    def open_on_full_disk(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, mode, *args, **kwargs)
        if "w" in mode and isinstance(file, str | os.PathLike) and "budget.json" in str(file):
            return CutShort(f, room=1000)  # budget.json, or its temporary
        return f

    try:
        wait_until(lambda: PRODUCED.get("a", 0) >= 20 and PRODUCED.get("c", 0) >= 20,
                   what="20 polls each")
    finally:
        monkeypatch.setattr(io, "open", open_on_full_disk)
        monkeypatch.setattr(builtins, "open", open_on_full_disk)
        report = rt.shutdown()
    assert f"could not save budget.json in {session}: [Errno {errno.ENOSPC}] No space left " \
        "on device" in report.errors, report.errors
    assert [p.name for p in session.iterdir() if "budget" in p.name] == []  # nor a temporary
