"""Arrow storage backend: an IPC stream file per instrument and channel, Parquet on request.

Layout: ``<session dir>/<instrument>/<channel>.arrows``, each an Arrow IPC
*stream* of unified-stream batches of that one channel (columns of
:mod:`daqhub.schema`). The stream format, not the file format, because a
stream killed mid-write still reads up to its last complete batch, while an
IPC file without its footer does not open at all. The schema is written when
the file is created (with an empty batch), so even a run killed before its
first sample leaves a self-describing file.

The schema metadata carries, besides the channel declaration and instrument id
of :func:`daqhub.schema.channel_schema`: ``daqhub.session_id``,
``daqhub.lab_config`` (the lab file's text), ``daqhub.versions`` (JSON: daqhub
and every plugin distribution -> version), ``daqhub.instrument`` (JSON of the
instrument's lab-file block) and ``daqhub.format``.

Small incoming batches are coalesced into batches of at least ``batch_rows``
rows (or ``batch_bytes``), since 1-row batches cost ~200 bytes and ~100 us a
row, and whatever is pending is written every ``flush_interval`` seconds. The
file is written without user-space buffering, so what was written survives a
killed process. ``parquet = true`` compacts each stream to
``<channel>.parquet`` on close (same schema and metadata) and removes the
stream unless ``keep_stream = true``. A compaction that fails (a full disk) loses
nothing: the stream stays, listed with the files, and the failure names it and says
it holds every row (a :class:`~daqhub.storage.WriteFailed` of no samples); no lock
or partial Parquet file is left.

A write that fails (a full disk) stops that channel's stream: the file is cut
back to the end of its last complete batch (a batch written in part would make
everything appended after it unreadable), what is still written goes to
``/dev/null`` (:func:`~daqhub.storage.discard_writes`), so it has no
end-of-stream marker and readers report it as not closed cleanly, and it is not
compacted. :class:`~daqhub.storage.WriteFailed` counts every row the stream
took that is not in a complete batch (the coalesced ones too); each later batch
of the channel is refused and counted. A stream removed while it is written is
named at close, with all its rows lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from daqhub.hookspecs import hookimpl
from daqhub.measurement import ChannelSpec
from daqhub.resources.filelock import FileLock, claim_new_file
from daqhub.schema import channel_schema, row_bytes, shown_bytes
from daqhub.specs import StorageBackend, StorageTarget
from daqhub.storage import (
    DEFAULT_FLUSH_INTERVAL,
    DeclaredChannels,
    WriteFailed,
    check_id,
    discard_writes,
    file_identity,
    moved_away,
    option_problems,
    raise_close_losses,
)

STREAM_SUFFIX = ".arrows"
PARQUET_SUFFIX = ".parquet"
FORMAT = "daqhub-arrow/1"
META_SESSION = b"daqhub.session_id"
META_LAB_CONFIG = b"daqhub.lab_config"
META_VERSIONS = b"daqhub.versions"
META_INSTRUMENT_BLOCK = b"daqhub.instrument"
META_FORMAT = b"daqhub.format"
#: a batch this big is written as it comes: its ~200 bytes of framing are noise
DIRECT_BYTES = 64 * 1024

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "flush_interval": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                           "description": "seconds between flushes: the most a crash loses"},
        "batch_rows": {"type": "integer", "minimum": 1,
                       "description": "small batches are coalesced up to this many rows"},
        "batch_bytes": {"type": "integer", "minimum": 1024},
        "compression": {"enum": [None, "lz4", "zstd"],
                        "description": "IPC buffer compression"},
        "parquet": {"type": "boolean", "description": "compact each stream to Parquet on close"},
        "parquet_compression": {"enum": ["none", "snappy", "gzip", "brotli", "lz4", "zstd"]},
        "keep_stream": {"type": "boolean",
                        "description": "keep the .arrows stream after Parquet compaction"},
    },
}


@dataclass(frozen=True)
class ArrowOptions:
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    batch_rows: int = 10_000
    batch_bytes: int = 1 << 20
    compression: str | None = None
    parquet: bool = False
    parquet_compression: str = "zstd"
    keep_stream: bool = False

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> ArrowOptions:
        problems = option_problems("arrow", OPTIONS_SCHEMA, options)
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**dict(options))


def file_schema(instrument_id: str, spec: ChannelSpec, target: StorageTarget) -> pa.Schema:
    """The unified channel schema plus everything needed to read the file on its own."""
    schema = channel_schema(instrument_id, spec, unified=True)
    meta = dict(schema.metadata or {})
    meta.update({
        META_FORMAT: FORMAT.encode(),
        META_SESSION: target.session_id.encode(),
        META_LAB_CONFIG: target.lab_config.encode(),
        META_VERSIONS: json.dumps(dict(target.versions)).encode(),
        META_INSTRUMENT_BLOCK: json.dumps(dict(target.instruments.get(instrument_id, {})),
                                          default=str).encode(),
    })
    return schema.with_metadata(meta)


class _Stream:
    """One channel's open stream file and the small batches waiting to be coalesced."""

    def __init__(self, directory: Path, instrument_id: str, spec: ChannelSpec,
                 target: StorageTarget, opts: ArrowOptions) -> None:
        self.opts = opts
        self.instrument = instrument_id
        self.where = f"{instrument_id}.{spec.name}"
        self.path = directory / instrument_id / f"{spec.name}{STREAM_SUFFIX}"
        self.path.parent.mkdir(exist_ok=True)
        self.lock: FileLock | None = claim_new_file(self.path)
        sink: pa.NativeFile | None = None
        try:
            # claim_new_file checked the path is free under the lock. No O_EXCL pre-create:
            # reopening a created file with O_TRUNC makes ext4 flush it on close (~3 ms/MB).
            self.sink = sink = pa.OSFile(str(self.path), "wb")
            self.fd = self.sink.fileno()
            self.identity = file_identity(self.path)
            self.schema = file_schema(instrument_id, spec, target)
            options = ipc.IpcWriteOptions(compression=opts.compression)
            self.writer = ipc.new_stream(self.sink, self.schema, options=options)
            self.writer.write_batch(pa.RecordBatch.from_arrays(
                [pa.array([], type=f.type) for f in self.schema], schema=self.schema))
        except BaseException as exc:  # a full disk: the part-made file is removed, and named
            if sink is not None:
                with contextlib.suppress(Exception):
                    sink.close()
            self.path.unlink(missing_ok=True)  # ours: the path was free when claimed
            self.lock.release()
            if isinstance(exc, OSError) and exc.errno and not exc.filename:  # pyarrow's
                raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
            raise
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.pending_bytes = 0
        self.row = row_bytes(spec)
        self.closed = False
        self.accepted = 0  # rows taken by add()
        self.written = 0  # rows in complete batches in the file
        self.end = os.lseek(self.fd, 0, os.SEEK_CUR)  # where the last complete batch ends
        self.failure = ""  # why the stream stopped: nothing more goes to the file

    def add(self, batch: pa.RecordBatch) -> None:
        if self.failure:
            raise WriteFailed(f"{self.where}: not written: "
                              f"{self.path} stopped at an earlier error ({self.failure})",
                              batch.num_rows, by_instrument={self.instrument: batch.num_rows})
        self.accepted += batch.num_rows
        size = shown_bytes(batch, self.row)
        if not self.pending and (batch.num_rows >= self.opts.batch_rows or size >= DIRECT_BYTES):
            self._write(batch)  # big enough already: coalescing would only copy
            return
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        self.pending_bytes += size
        if self.pending_rows >= self.opts.batch_rows or self.pending_bytes >= self.opts.batch_bytes:
            self.write_pending()

    def write_pending(self) -> None:
        pending, self.pending = self.pending, []
        self.pending_rows = self.pending_bytes = 0
        if pending:
            self._write(pending[0] if len(pending) == 1 else pa.concat_batches(pending))

    def _write(self, batch: pa.RecordBatch) -> None:
        try:
            self.writer.write_batch(batch)
        except Exception as exc:
            raise self._fail(exc) from exc
        self.end = os.lseek(self.fd, 0, os.SEEK_CUR)  # a system call, not a call into pyarrow
        self.written += batch.num_rows

    def _fail(self, exc: Exception) -> WriteFailed:
        """Stop the stream at a write error: see the module docstring."""
        self.failure = f"{type(exc).__name__}: {exc}"
        lost = self.accepted - self.written
        self.pending, self.pending_rows, self.pending_bytes = [], 0, 0
        with contextlib.suppress(OSError):  # unlikely (it frees space); readers see a cut batch
            os.ftruncate(self.fd, self.end)
        discard_writes(self.fd)
        return WriteFailed(f"{self.path}: {self.failure}; stopped writing it, {lost} row(s) "
                           "it held are lost (it keeps its complete batches)", lost,
                           by_instrument={self.instrument: lost})

    def close(self) -> list[Path]:
        """Finish the stream (end-of-stream marker), compact if asked, release the locks."""
        if self.closed:
            return []
        self.closed = True
        failed: WriteFailed | None = None
        try:
            try:
                self.write_pending()
            except WriteFailed as exc:
                failed = exc
            finally:
                try:
                    self.writer.close()  # after a failure, the marker goes to /dev/null
                finally:
                    self.sink.close()
            raise_close_losses(self.path, moved_away(self.path, self.identity),
                               {self.instrument: self.written}, failed)
            if self.failure or not self.opts.parquet:
                return [self.path]  # a stream cut at an error is not compacted: see above
            return self._compact()
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def abandon(self) -> None:
        """Close after a failed open: the file holds only its schema, so remove it."""
        self.closed = True
        try:
            self.writer.close()
            self.sink.close()
        finally:
            self.path.unlink(missing_ok=True)
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def _compact(self) -> list[Path]:
        """The complete stream copied to ``<channel>.parquet``, the stream then removed unless
        kept. A compaction that fails (a full disk) loses nothing, the stream holding every
        row: it raises :class:`~daqhub.storage.WriteFailed` of no samples that names the
        stream and lists it, and leaves no lock or partial Parquet file (it used to raise
        bare, and the flavor's files went unlisted)."""
        target = self.path.with_suffix(PARQUET_SUFFIX)
        try:
            lock = claim_new_file(target)
        except Exception as exc:  # taken by another writer, there already, no room for it
            raise self._not_compacted(target, exc) from exc
        tmp = target.with_name(target.name + ".tmp")
        try:
            with ipc.open_stream(self.path) as reader, pq.ParquetWriter(
                    tmp, reader.schema, compression=self.opts.parquet_compression) as out:
                for batch in reader:
                    if batch.num_rows:
                        out.write_batch(batch)
            os.replace(tmp, target)
        except Exception as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise self._not_compacted(target, exc) from exc
        finally:
            lock.release()
        if self.opts.keep_stream:
            return [self.path, target]
        self.path.unlink()
        return [target]

    def _not_compacted(self, target: Path, exc: Exception) -> WriteFailed:
        return WriteFailed(f"{self.where}: not compacted to {target.name} ({type(exc).__name__}: "
                           f"{exc}); nothing is lost: {self.path}, kept, holds all its "
                           f"{self.written} row(s)", 0, [self.path])


class ArrowWriter:
    """Open streams of one session and flavor, flushed on a clock."""

    def __init__(self, target: StorageTarget) -> None:
        self.opts = ArrowOptions.parse(target.options)
        self.flush_interval = self.opts.flush_interval
        self.directory = Path(target.directory)
        for iid in {*target.channels, *target.instruments}:
            why = check_id(iid, "instrument id")
            if why:
                raise ValueError(why)
        opened: list[_Stream] = []

        def make(iid: str, spec: ChannelSpec) -> _Stream:
            stream = _Stream(self.directory, iid, spec, target, self.opts)
            opened.append(stream)
            return stream

        try:
            self._streams = DeclaredChannels(target, make)
        except BaseException:
            for stream in opened:
                stream.abandon()
            raise
        self._last_flush = time.monotonic()
        self._dirty = False
        self._closed = False

    def write(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise ValueError(f"Arrow storage in {self.directory} is closed")
        stream = self._streams.lookup(batch)
        if batch.num_rows:
            stream.add(batch)
            self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        if self._closed:
            return
        failed: list[WriteFailed] = []
        if self._dirty:
            for stream in self._streams.items.values():
                try:
                    stream.write_pending()
                except WriteFailed as exc:  # the other streams are still flushed
                    failed.append(exc)
            self._dirty = False
        self._last_flush = time.monotonic()
        if failed:
            raise WriteFailed.joined(failed)

    def close(self) -> list[Path]:
        """Close every stream even if one fails; the failures are raised afterwards
        (:class:`~daqhub.storage.WriteFailed` with the files still in place if rows were
        lost)."""
        if self._closed:
            return []
        self._closed = True
        paths: list[Path] = []
        failed: list[WriteFailed] = []
        first: BaseException | None = None
        for stream in self._streams.items.values():
            try:
                paths.extend(stream.close())
            except WriteFailed as exc:
                failed.append(exc)
                paths.extend(exc.result or [])
            except BaseException as exc:  # keep closing the others
                first = first or exc
        if failed:
            if first is not None:
                failed.append(WriteFailed(f"{type(first).__name__}: {first}", 0))
            raise WriteFailed.joined(failed, paths) from first
        if first is not None:
            raise first
        return paths


def open_writer(target: StorageTarget) -> ArrowWriter:
    return ArrowWriter(target)


BACKEND = StorageBackend(
    name="arrow",
    open=open_writer,
    description="Arrow IPC stream file per instrument and channel (pyarrow); optional Parquet",
    options_schema=OPTIONS_SCHEMA,
)


@hookimpl
def daqhub_storage_backends() -> list[StorageBackend]:
    return [BACKEND]
