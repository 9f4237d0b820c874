"""A session's record files (:mod:`daqhub.records`) carried over Arrow Flight, byte for byte.

Record files (``records.h5``, ``settings.arrow``, ``points-<run>.arrow``, and the budget
history ``budget.json`` the run leaves at shutdown) are small and are written whole by the
run (the records through a temporary file and ``os.replace``), so they travel as files, not as
rows: a copy is then equal to the original file for file, metadata, settings snapshots and
points tables included, whatever the flavor's format. The ``records`` ticket of the data
service streams batches of :data:`RECORDS_SCHEMA`: each file in chunks of at most
:data:`CHUNK_BYTES`, ``offset`` and ``size`` telling the receiver when a file is whole. With
``follow`` the stream sends a file again each time the run rewrites it, and after the run
stops sends the final versions and ends, so a recorder that follows it gets the records
written after its last fetch (the last points row, a closing snapshot).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

from .records import is_record_file
from .runtime.budget import HISTORY_FILE
from .storage import replace_whole

RECORDS_SCHEMA = pa.schema([pa.field("name", pa.string()), pa.field("size", pa.int64()),
                            pa.field("offset", pa.int64()), pa.field("data", pa.binary())])
CHUNK_BYTES = 1024 * 1024
#: how often a followed session directory is checked for rewritten record files
FOLLOW_CHECK_S = 0.2

Version = tuple[int, int, int]  # inode, mtime, size: os.replace gives a new inode


def is_carried(path: Path) -> bool:
    """Whether a session directory's file travels by the records ticket (not as rows)."""
    return is_record_file(path) or path.name == HISTORY_FILE


def _chunks(name: str, data: bytes) -> Iterator[pa.RecordBatch]:
    for offset in range(0, max(len(data), 1), CHUNK_BYTES):
        part = data[offset:offset + CHUNK_BYTES]
        yield pa.record_batch([[name], [len(data)], [offset], [part]], schema=RECORDS_SCHEMA)


def _changed(directory: Path, sent: dict[str, Version]) -> Iterator[pa.RecordBatch]:
    """Chunks of every record file not sent yet in its current version."""
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        if not (path.is_file() and is_carried(path)):
            continue
        try:
            with path.open("rb") as f:  # one version: a rewrite replaces the file, not this one
                st = os.fstat(f.fileno())
                version = (st.st_ino, st.st_mtime_ns, st.st_size)
                if sent.get(path.name) == version:
                    continue
                data = f.read()
        except FileNotFoundError:
            continue  # replaced between listing and opening: the next check sends it
        sent[path.name] = version
        yield from _chunks(path.name, data)


def file_batches(directory: Path, follow: bool = False, stopped: threading.Event | None = None,
                 cancelled: Callable[[], bool] = lambda: False) -> Iterator[pa.RecordBatch]:
    """The record files of one session directory; with ``follow``, their rewrites until
    ``stopped`` is set (then the final versions) or the client leaves."""
    sent: dict[str, Version] = {}
    yield from _changed(directory, sent)
    if not follow or stopped is None:
        return
    while not stopped.wait(FOLLOW_CHECK_S):
        if cancelled():
            return
        yield from _changed(directory, sent)
    yield from _changed(directory, sent)


class FileAssembler:
    """Joins received chunks into whole files (name -> bytes), the latest version of each."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self._parts: dict[str, list[bytes]] = {}

    def add(self, batch: pa.RecordBatch) -> list[str]:
        """Take a batch; the names of the files it completed."""
        done = []
        for name, size, offset, data in zip(*(batch.column(i).to_pylist() for i in range(4)),
                                            strict=True):
            if offset == 0:
                self._parts[name] = []
            parts = self._parts.setdefault(name, [])
            parts.append(data)
            if offset + len(data) >= size:
                self.files[name] = b"".join(parts)
                del self._parts[name]
                done.append(name)
        return done


def write_file(directory: Path, name: str, data: bytes) -> Path:
    """Store one received record file the way the run does (whole, through a temporary file)."""
    if Path(name).name != name or not is_carried(Path(name)):
        raise ValueError(f"{name!r} is not a session record file")
    path = directory / name
    replace_whole(path, lambda tmp: tmp.write_bytes(data))  # a late fetch may overlap
    return path
