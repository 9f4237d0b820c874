"""HDF5 storage backend: one file per session and flavor, a group per instrument and channel.

Layout of ``<session dir>/session.h5`` (plain h5py reads all of it)::

    /                         attrs: daqhub_format, session_id, created_utc, versions (JSON:
                              daqhub and every plugin distribution -> version), closed
                              (1 once the writer closed it having stored all it took)
    /_daqhub/lab_config       the lab file's text (a dataset: attributes are capped at 64 KiB)
    /<instrument>/            attrs: instrument_id, type, instrument (JSON of its lab-file block)
    /<instrument>/<channel>/  attrs: channel (JSON declaration), kind, unit, dtype, shape,
                              axis_unit, description, layout, rows and metadata_rows
                              (what the last completed flush wrote: read no further)
        timestamp_ns          int64 (n,), nanoseconds since the Unix epoch (UTC)
        value                 (n, *shape) in the channel dtype; attr unit
        axis                  spectra: float64, same layout as value; attr unit (axis unit)
        metadata_row          int64 (m,): rows that carried per-sample metadata
        metadata_end          int64 (m,): where each row's text ends in ``metadata``
        metadata              uint8: those texts (JSON objects, UTF-8) back to back; row
                              metadata_row[i]'s is metadata[metadata_end[i-1]:metadata_end[i]]

Spectra whose length varies (declared shape ``(None,)``) use ``layout = "flat"``:
``value`` and ``axis`` are 1-d, all points of all rows concatenated, and
``extent`` int64 (n, 2) holds each row's (start, length), so row i is
``value[start:start + length]``. This mirrors Arrow's list layout, and unlike
an HDF5 variable-length dtype it stays chunked, compressible, fast to append,
and readable by SWMR readers (HDF5 SWMR does not support variable-length data:
a live reader fails with "address of object past end of allocation").

Per-sample metadata is stored sparsely because nearly every row has none:
one variable-length string per row made 1000-row appends 3x slower and the
file 3x larger. Its texts are bytes with end offsets, not HDF5 variable-length
strings: each of those lands in the file's global heap, and the library kept
about 120 bytes of memory per string written for as long as the file was open
(a demo lab whose stages tag every sample grew by 0.1 MB a minute). Bytes and
offsets are also SWMR-safe, like every other dataset of the file. Files of
format ``daqhub-hdf5/1`` (strings) are still read.

Rows are buffered per channel and appended in blocks of about ``block_bytes``
(one-row appends are ~800x slower), and the file is flushed every
``flush_interval`` seconds. A killed process therefore leaves a file that
plain ``h5py.File(path)`` opens, missing at most the last interval.

Each channel group's ``rows`` and ``metadata_rows`` attributes count what the
last completed flush put on disk, and readers take no more than that. The
datasets' own lengths cannot be trusted after a kill: HDF5 writes a flush's
metadata in address order, not in the order it depends on, so a kill during
the ~0.1 ms a flush takes can leave a dataset's new length on disk while the
chunk index or end-of-file mark that covers it is not (its last rows then read
as zeros, or fail to read). The counts are therefore set only after a flush
has returned, and reach the file in a second flush. Files written before these
attributes existed are read up to their shortest dataset. What the counts
cannot cover: a kill in the moment a dataset's chunk index splits a node (once
every 32 or so chunks; h5py cannot set the node size) can still make rows
already counted unreadable. Metadata comes from 1 MiB blocks, which narrows that
moment: a new node then lies inside the end of file already on disk, and
neighbouring nodes are written in one call.

A write or flush that fails (a full disk) stops the writer: HDF5 drops a
chunk whose write failed and reads it back as zeros, so appending on and
counting past it would count lost rows, and even the rows of that chunk
stored earlier. The writer raises :class:`~daqhub.storage.WriteFailed` with
every row the file's counts do not cover, refuses (and counts) every later
batch, and what HDF5 still writes, at close, goes to ``/dev/null``
(:func:`~daqhub.storage.discard_writes`). The file keeps what its last
completed flush counted, is padded to the end its superblock may give (HDF5
opens no file shorter than that), and its ``closed`` attribute stays 0, so
readers report it as not closed cleanly. A file removed while it is written
is named at close, with all its rows lost.

With ``swmr = true`` (live external readers) the file uses ``libver="latest"``,
whose index has no nodes to split and whose writes HDF5 orders for its live
readers: such files survived every kill point tried. A file left by a killed
SWMR writer opens only with ``h5py.File(path, "r", swmr=True)`` (``daqhub
inspect`` does that by itself).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daqhub import __version__
from daqhub.hookspecs import hookimpl
from daqhub.measurement import ChannelSpec
from daqhub.resources.filelock import FileLock, claim_new_file
from daqhub.schema import row_bytes, shown_bytes
from daqhub.specs import ConfigProblem, StorageBackend, StorageTarget
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

FILE_NAME = "session.h5"
FORMAT = "daqhub-hdf5/2"
META_GROUP = "_daqhub"
TIMESTAMP_UNIT = "ns since 1970-01-01T00:00:00Z"
_CHUNK_BYTES = 1 << 20
_MAX_CHUNK_ROWS = 16384
#: Metadata is allocated from blocks this big: new index nodes land inside the file's
#: recorded end, and a flush writes neighbouring metadata in one call (see the module
#: docstring); files grow by up to this much.
_META_BLOCK_BYTES = 1 << 20

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "flush_interval": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                           "description": "seconds between flushes: the most a crash loses"},
        "swmr": {"type": "boolean",
                 "description": "single-writer/multiple-reader mode for live external readers"},
        "compression": {"enum": ["gzip", "lzf"],
                        "description": "leave the key out for no compression"},
        "compression_level": {"type": "integer", "minimum": 0, "maximum": 9,
                              "description": "gzip's level (with compression = \"gzip\")"},
        "block_bytes": {"type": "integer", "minimum": 1024,
                        "description": "rows are appended once a channel buffers this much"},
    },
}


@dataclass(frozen=True)
class Hdf5Options:
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    swmr: bool = False
    compression: str | None = None
    compression_level: int | None = None
    block_bytes: int = 1 << 20

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> Hdf5Options:
        problems = option_problems("hdf5", OPTIONS_SCHEMA, options)
        level = _level_problem(options)
        if level:
            problems.append(f"storage option hdf5.compression_level: {level}")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**dict(options))

    def dataset_kwargs(self) -> dict[str, Any]:
        if self.compression is None:
            return {}
        opts = self.compression_level if self.compression == "gzip" else None
        return {"compression": self.compression, "compression_opts": opts, "shuffle": True}


def _level_problem(options: Mapping[str, Any]) -> str | None:
    """Why ``compression_level`` would do nothing (None: it is used, absent, or compression
    is wrong itself, which the schema says). Only gzip has levels: with lzf or without
    compression the level was silently ignored."""
    given = options.get("compression")
    if "compression_level" not in options or given not in (None, "lzf"):
        return None
    without = ("without compression" if given is None
               else f"with compression = {json.dumps(given)}")
    return (f"compression_level = {json.dumps(options['compression_level'])} does nothing "
            f'{without}: only compression = "gzip" has levels; set that, or leave '
            "compression_level out")


def _chunk_rows(row_bytes: int) -> int:
    return max(1, min(_MAX_CHUNK_ROWS, _CHUNK_BYTES // max(1, row_bytes)))


def _flat(col: pa.Array) -> np.ndarray:
    return col.flatten().to_numpy(zero_copy_only=False)


class _Channel:
    """One channel's datasets plus the rows waiting to be appended to them."""

    def __init__(self, parent: h5py.Group, instrument_id: str, spec: ChannelSpec,
                 opts: Hdf5Options) -> None:
        self.spec = spec
        self.instrument = instrument_id
        self.where = f"{instrument_id}.{spec.name}"
        self.flat = spec.kind == "spectrum" and spec.fixed_size is None
        shape: tuple[int, ...] = () if self.flat or spec.kind == "scalar" else tuple(
            int(d) for d in spec.shape if d is not None)
        self.shape = shape
        dtype = np.dtype(spec.dtype)
        kw = opts.dataset_kwargs()
        g = parent.create_group(spec.name)
        g.attrs.update({
            "channel": json.dumps(spec.to_dict()), "kind": spec.kind, "unit": spec.unit,
            "dtype": spec.dtype, "shape": json.dumps(list(spec.shape)),
            "axis_unit": spec.axis_unit, "description": spec.description,
            "layout": "flat" if self.flat else "rows",
            "rows": np.int64(0), "metadata_rows": np.int64(0),
        })
        self.group = g
        self.flushed = (0, 0)  # (rows, metadata rows) a completed flush counted in the file
        self.accepted = 0  # rows taken by add(): those past flushed[0] are lost if a write fails

        def grow(name: str, dt: Any, row: tuple[int, ...], chunk: int,
                 extra: dict[str, Any] | None = None) -> h5py.Dataset:
            # An append touches one chunk, which must stay in HDF5's chunk cache (or each
            # append reads it back). At HDF5's default of 1 MiB per dataset, the cache kept
            # every chunk filled so far, a row at a time, up to that size for each dataset:
            # RSS grew with every row for hours. The chunk being filled and a bit is all.
            chunk_bytes = chunk * np.dtype(dt).itemsize * int(np.prod(row, dtype=np.int64))
            return g.create_dataset(name, (0, *row), dtype=dt, maxshape=(None, *row),
                                    chunks=(chunk, *row), rdcc_nbytes=chunk_bytes * 5 // 4,
                                    **(extra if extra is not None else kw))

        value_bytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        self.value = grow("value", dtype, shape, _chunk_rows(value_bytes))
        self.value.attrs["unit"] = spec.unit
        self.axis: h5py.Dataset | None = None
        self.extent: h5py.Dataset | None = None
        if spec.kind == "spectrum":
            self.axis = grow("axis", np.float64, shape,
                             _chunk_rows(8 * int(np.prod(shape, dtype=np.int64))))
            self.axis.attrs["unit"] = spec.axis_unit
        if self.flat:
            self.extent = grow("extent", np.int64, (2,), _chunk_rows(16))
            self.extent.attrs["columns"] = "start,length"
        self.meta_row = grow("metadata_row", np.int64, (), 4096, {})
        self.meta_end = grow("metadata_end", np.int64, (), 4096, {})
        self.meta = grow("metadata", np.uint8, (), 1 << 16, {})
        self.ts = grow("timestamp_ns", np.int64, (), _chunk_rows(8))
        self.ts.attrs["unit"] = TIMESTAMP_UNIT
        self.rows = 0
        self.points = 0
        self.meta_rows = 0
        self.meta_bytes = 0
        self.pending: list[pa.RecordBatch] = []
        self.pending_bytes = 0
        self.row = row_bytes(spec)

    def add(self, batch: pa.RecordBatch, block_bytes: int) -> bool:
        """Buffer a batch; append the buffer when it is big enough. True if it appended."""
        self.accepted += batch.num_rows
        self.pending.append(batch)
        self.pending_bytes += shown_bytes(batch, self.row)
        if self.pending_bytes >= block_bytes:
            self.append_pending()
            return True
        return False

    def append_pending(self) -> None:
        batches, self.pending, self.pending_bytes = self.pending, [], 0
        if not batches:
            return
        # One batch first: taken apart one by one (timestamps, values, the metadata's valid
        # rows), a second's worth of one-row batches cost ~10 calls into pyarrow each, and an
        # HDF5 flush of bench/lab_load.py's lab ~100 ms of CPU.
        b = batches[0] if len(batches) == 1 else pa.concat_batches(batches)
        ts = b.column("timestamp_ns").to_numpy()
        n0, k = self.rows, len(ts)
        if self.flat:
            self._append_flat(b, n0, k)
        else:
            self._append_rows(self.value, self._values(b), n0, k)
            if self.axis is not None:
                self._append_rows(self.axis, _flat(b.column("axis")).reshape(k, *self.shape),
                                  n0, k)
        self._append_metadata(b.column("metadata"), n0)
        self.ts.resize(n0 + k, axis=0)
        self.ts[n0:n0 + k] = ts
        self.rows = n0 + k

    def record_flushed(self) -> bool:
        """Count the rows a completed flush put on disk, for readers to trust; True if the
        count changed (it is on disk, and in ``flushed``, after the next flush)."""
        if (self.rows, self.meta_rows) == self.flushed:
            return False
        self.group.attrs.modify("rows", self.rows)  # in place: no new header space
        self.group.attrs.modify("metadata_rows", self.meta_rows)
        return True

    def _values(self, b: pa.RecordBatch) -> np.ndarray:
        col = b.column("value")
        if self.spec.kind == "scalar":
            return col.to_numpy(zero_copy_only=False)
        return _flat(col).reshape(b.num_rows, *self.shape)

    @staticmethod
    def _append_rows(ds: h5py.Dataset, data: np.ndarray, n0: int, k: int) -> None:
        ds.resize(n0 + k, axis=0)
        ds[n0:n0 + k] = data

    def _append_flat(self, b: pa.RecordBatch, n0: int, k: int) -> None:
        assert self.axis is not None and self.extent is not None
        values = _flat(b.column("value"))
        axis = _flat(b.column("axis"))
        lengths = pc.list_value_length(b.column("value")).to_numpy(
            zero_copy_only=False).astype(np.int64)
        p0, p = self.points, len(values)
        starts = p0 + np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        for ds, data in ((self.value, values), (self.axis, axis)):
            ds.resize(p0 + p, axis=0)
            ds[p0:p0 + p] = data
        self.extent.resize(n0 + k, axis=0)
        self.extent[n0:n0 + k] = np.column_stack((starts, lengths))
        self.points = p0 + p

    def _append_metadata(self, col: pa.Array, n0: int) -> None:
        if col.null_count == len(col):
            return
        rows = n0 + np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False))
        m0, j = self.meta_rows, len(rows)
        encoded = [t.encode() for t in col.drop_null().to_pylist()]
        b0 = self.meta_bytes
        ends = b0 + np.cumsum([len(e) for e in encoded], dtype=np.int64)
        self.meta.resize(int(ends[-1]), axis=0)
        self.meta[b0:int(ends[-1])] = np.frombuffer(b"".join(encoded), np.uint8)
        self.meta_end.resize(m0 + j, axis=0)
        self.meta_end[m0:m0 + j] = ends
        self.meta_row.resize(m0 + j, axis=0)  # last: readers take rows that have an end
        self.meta_row[m0:m0 + j] = rows
        self.meta_rows, self.meta_bytes = m0 + j, int(ends[-1])


class Hdf5Writer:
    """An open ``session.h5``: buffers rows per channel, appends blocks, flushes on a clock."""

    def __init__(self, target: StorageTarget) -> None:
        self.opts = Hdf5Options.parse(target.options)
        self.flush_interval = self.opts.flush_interval
        self.path = Path(target.directory) / FILE_NAME
        for iid in {*target.channels, *target.instruments}:
            why = check_id(iid, "instrument id")
            if why:
                raise ValueError(why)
        self._lock: FileLock | None = claim_new_file(self.path)
        try:
            self._file = h5py.File(self.path, "w-", libver="latest" if self.opts.swmr else None,
                                   meta_block_size=_META_BLOCK_BYTES)
        except BaseException as exc:
            if not isinstance(exc, FileExistsError):  # a part-made file (a full disk): ours,
                self.path.unlink(missing_ok=True)     # the path was free when claimed
            self._lock.release()
            raise
        try:
            self._identity = file_identity(self.path)
            self._layout(target)
        except BaseException:
            self._abandon()
            raise
        self._last_flush = time.monotonic()
        self._dirty = False
        self._closed = False
        self._failure = ""  # why the writer stopped: nothing more goes to the file
        self._end = 0  # the file's end as HDF5 had it when the writer stopped

    def _abandon(self) -> None:
        """Close and remove the file after its layout failed. On a full disk its flush
        fails, and then every later one, its close's too: that error ("slist already
        enabled?") replaced the one that said what happened, and the file and its lock
        stayed. What HDF5 still writes goes to /dev/null; the file is removed anyway."""
        with contextlib.suppress(Exception):
            if self._file.driver == "sec2":
                discard_writes(self._file.id.get_vfd_handle())
        with contextlib.suppress(Exception):
            self._file.close()
        self.path.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.release()

    def _layout(self, target: StorageTarget) -> None:
        f = self._file
        f.attrs.update({
            "daqhub_format": FORMAT, "session_id": target.session_id,
            "created_utc": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "daqhub_version": __version__, "versions": json.dumps(dict(target.versions)),
            "closed": np.int8(0),
        })
        meta = f.create_group(META_GROUP)
        # held until the flush below writes it: closed on its own, a dataset whose write then
        # failed (a full disk) stayed half-closed in HDF5, which crashed the process at exit
        lab_config = meta.create_dataset("lab_config", data=target.lab_config,
                                         dtype=h5py.string_dtype())
        for iid in sorted({*target.channels, *target.instruments}):
            g = f.create_group(iid)
            block = dict(target.instruments.get(iid, {}))
            g.attrs.update({"instrument_id": iid, "type": str(block.get("type", "")),
                            "instrument": json.dumps(block, default=str)})
        self._channels = DeclaredChannels(
            target, lambda iid, spec: _Channel(f[iid], iid, spec, self.opts))
        if self.opts.swmr:
            f.swmr_mode = True
        f.flush()
        del lab_config

    def write(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise ValueError(f"{self.path} is closed")
        channel = self._channels.lookup(batch)
        if self._failure:
            raise WriteFailed(f"{channel.where}: not written: "
                              f"{self.path} stopped at an earlier error ({self._failure})",
                              batch.num_rows, by_instrument={channel.instrument: batch.num_rows})
        try:
            if batch.num_rows:
                channel.add(batch, self.opts.block_bytes)
                self._dirty = True
            if time.monotonic() - self._last_flush >= self.flush_interval:
                self.flush()
        except WriteFailed:
            raise
        except Exception as exc:
            raise self._fail(exc) from exc

    def flush(self) -> None:
        if self._closed or self._failure:
            return  # a failed writer's loss was raised when it failed
        try:
            if self._dirty:
                channels = self._channels.items.values()
                for channel in channels:
                    channel.append_pending()
                self._file.flush()
                counted = [c for c in channels if c.record_flushed()]  # see "rows" above
                self._file.flush()
                for channel in counted:  # on disk now: what a failure no longer loses
                    channel.flushed = (channel.rows, channel.meta_rows)
                self._dirty = False
        except Exception as exc:
            raise self._fail(exc) from exc
        self._last_flush = time.monotonic()

    def _fail(self, exc: Exception) -> WriteFailed:
        """Stop writing the file at a write error: see the module docstring."""
        self._failure = f"{type(exc).__name__}: {exc}"
        lost_by = self._rows_by_instrument(lambda c: c.accepted - c.flushed[0])
        lost = sum(lost_by.values())
        for channel in self._channels.items.values():
            channel.pending, channel.pending_bytes = [], 0
        fd: int | None = None
        try:
            self._end = self._file.id.get_filesize()
            fd = self._file.id.get_vfd_handle() if self._file.driver == "sec2" else None
        except (OSError, RuntimeError):  # HDF5 is past answering: the file stays as it is
            pass
        self._pad()
        if fd is not None:
            discard_writes(fd)
        return WriteFailed(f"{self.path}: {self._failure}; stopped writing it, {lost} row(s) "
                           "it held are lost (it keeps those its last completed flush counted)",
                           lost, by_instrument=lost_by)

    def _rows_by_instrument(self, rows: Callable[[_Channel], int]) -> dict[str, int]:
        """``rows`` of each channel, added up per instrument (whose samples a loss was)."""
        out: dict[str, int] = {}
        for channel in self._channels.items.values():
            out[channel.instrument] = out.get(channel.instrument, 0) + rows(channel)
        return out

    def _pad(self) -> None:
        """Make a failed file as long as its superblock may say it is: HDF5 refuses to open
        a file shorter than that ("truncated file"), and the failed flush may have written
        the new end without what lies before it. Padding is sparse (it needs no room on
        the disk); if it fails here it is tried again at close."""
        with contextlib.suppress(OSError):
            if self.path.stat().st_size < self._end:
                os.truncate(self.path, self._end)

    def close(self) -> list[Path]:
        if self._closed:
            return [self.path]
        failed: WriteFailed | None = None
        try:
            try:
                self.flush()
                if not self._failure:
                    self._file.attrs.modify("closed", np.int8(1))  # in place, like "rows"
                    self._file.flush()  # a failure here is one too, not a failed close
            except WriteFailed as exc:
                failed = exc
            except Exception as exc:
                failed = self._fail(exc)
        finally:
            self._closed = True
            try:
                self._file.close()
            except Exception:
                # After a failed cache flush HDF5 fails every later one ("slist already
                # enabled?"), this close's too, though it writes to /dev/null: it loses
                # nothing more, and the failure itself was raised already.
                if not self._failure:
                    raise
            finally:
                if self._lock is not None:
                    self._lock.release()
                    self._lock = None
        gone = moved_away(self.path, self._identity)
        if self._failure and not gone:
            self._pad()
        raise_close_losses(self.path, gone, self._rows_by_instrument(lambda c: c.flushed[0]),
                           failed)
        return [self.path]


def open_writer(target: StorageTarget) -> Hdf5Writer:
    return Hdf5Writer(target)


BACKEND = StorageBackend(
    name="hdf5",
    open=open_writer,
    description="one HDF5 file per session and flavor (h5py); group per instrument and channel",
    options_schema=OPTIONS_SCHEMA,
)


@hookimpl
def daqhub_storage_backends() -> list[StorageBackend]:
    return [BACKEND]


@hookimpl
def daqhub_validate_config(config: Mapping[str, Any]) -> list[ConfigProblem]:
    """A ``compression_level`` that would do nothing, at its line (the schema cannot say it
    in words)."""
    storage = config.get("storage")
    options = storage.get("hdf5") if isinstance(storage, dict) else None
    problem = _level_problem(options) if isinstance(options, dict) else None
    return [ConfigProblem(problem, ("storage", "hdf5", "compression_level"))] if problem else []


__all__ = ["BACKEND", "FILE_NAME", "FORMAT", "Hdf5Options", "Hdf5Writer", "OPTIONS_SCHEMA",
           "open_writer"]
