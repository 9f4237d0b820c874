"""A session's channels read back from its files as unified-stream batches.

The live data service serves finished and running sessions from here (``do_get`` of a session
channel), and a recorder that joins a run late fills its copy from here before following the
live stream, so both backends' layouts are read into the one shape every consumer already
takes: batches of :func:`daqhub.schema.channel_schema` (``unified=True``). A file still open
by its writer is read as far as it was flushed (HDF5 without locking, or in SWMR mode; Arrow
streams up to their last complete batch).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .datafiles import H5_META_GROUP, hdf5_metadata, hdf5_rows
from .measurement import ChannelSpec
from .schema import build_batch, channel_schema, describe
from .specs import Flavor

HDF5_FILE = "session.h5"
ARROW_SUFFIX = ".arrows"
PARQUET_SUFFIX = ".parquet"
#: rows per batch read from a file
READ_ROWS = 65536


@dataclass(frozen=True)
class StoredChannel:
    flavor: Flavor
    instrument_id: str
    spec: ChannelSpec
    rows: int
    path: Path


def _h5(path: Path) -> h5py.File:
    """Open for reading in whatever state the writer left it (see daqhub inspect).

    Plain first: in the writer's own process (the data service) HDF5 shares the open file,
    and any other locking flag is refused; another process's writer locks it.
    """
    try:
        return h5py.File(path, "r")
    except BlockingIOError:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "already open for write" not in str(exc) and "swmr" not in str(exc).lower():
            raise
    return h5py.File(path, "r", swmr=True, libver="latest")


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An error reading ``path`` as an OSError that names it (h5py's "file signature not
    found" and Parquet's footer errors name no file); a file gone meanwhile stays
    FileNotFoundError."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError) as exc:  # ArrowInvalid and DataError too
        raise OSError(f"cannot read {path}: {exc}") from exc


def channels(flavor: Flavor, session_dir: Path) -> list[StoredChannel]:
    """Every channel stored in one flavor's session directory, with its rows so far.

    One rule for every file, whatever its format: an empty one holds no channel yet (created
    a moment ago, or by a run killed as it began: nothing was stored in it), one removed
    meanwhile is not there (an Arrow stream compacted to Parquet), and any other that cannot
    be read raises OSError naming it (a truncated copy, a damaged file). A damaged Arrow file
    was skipped quietly, and a reader was shown the session without its channels.
    """
    files = [session_dir / HDF5_FILE, *sorted(session_dir.glob(f"*/*{ARROW_SUFFIX}")),
             *sorted(session_dir.glob(f"*/*{PARQUET_SUFFIX}"))]
    out: list[StoredChannel] = []
    for path in files:
        try:
            if path.stat().st_size == 0:
                continue  # nothing written yet
            with _naming(path):
                out += _file_channels(flavor, path)
        except FileNotFoundError:
            continue  # removed meanwhile
    return out


def _file_channels(flavor: Flavor, path: Path) -> list[StoredChannel]:
    """The channels one session file holds (an HDF5 file several, a stream file one)."""
    if path.suffix == ARROW_SUFFIX:
        with pa.memory_map(str(path)) as source:
            reader = ipc.open_stream(source)
            iid, spec = describe(reader.schema)
            rows = sum(b.num_rows for b in _complete_batches(reader))
        return [StoredChannel(flavor, iid, spec, rows, path)]
    if path.suffix == PARQUET_SUFFIX:
        meta = pq.read_metadata(path)
        iid, spec = describe(meta.schema.to_arrow_schema())
        return [StoredChannel(flavor, iid, spec, meta.num_rows, path)]
    with _h5(path) as f:
        return [StoredChannel(flavor, iid, spec, hdf5_rows(g)[0], path)
                for iid, spec, g in hdf5_channels(f)]


def hdf5_channels(f: h5py.File) -> Iterator[tuple[str, ChannelSpec, h5py.Group]]:
    """Instrument id, declaration and group of each channel an HDF5 session file holds."""
    for iid, group in f.items():
        if iid == H5_META_GROUP or not isinstance(group, h5py.Group):
            continue
        for g in group.values():
            yield iid, ChannelSpec.from_dict(json.loads(g.attrs["channel"])), g


def _complete_batches(reader: Any) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError):
            return  # a batch being written right now (or cut by a kill): not there yet


def read(channel: StoredChannel, start: int = 0) -> Iterator[pa.RecordBatch]:
    """The channel's rows from ``start`` on, as unified batches (source = the flavor)."""
    if channel.path.suffix == ARROW_SUFFIX:
        yield from _read_arrow(channel, start)
    elif channel.path.suffix == PARQUET_SUFFIX:
        for batch in _drop_rows(pq.ParquetFile(channel.path).iter_batches(READ_ROWS), start):
            yield pa.RecordBatch.from_arrays(batch.columns, schema=_unified(channel))
    else:
        yield from _read_h5(channel, start)


def _drop_rows(batches: Iterator[pa.RecordBatch], start: int) -> Iterator[pa.RecordBatch]:
    seen = 0
    for batch in batches:
        if seen + batch.num_rows > start and batch.num_rows:
            yield batch.slice(max(0, start - seen))
        seen += batch.num_rows


def _read_arrow(channel: StoredChannel, start: int) -> Iterator[pa.RecordBatch]:
    with pa.memory_map(str(channel.path)) as source:
        reader = ipc.open_stream(source)
        for part in _drop_rows(_complete_batches(reader), start):
            # the file's schema carries more metadata (session, lab file): the stream's own
            yield pa.RecordBatch.from_arrays(part.columns, schema=_unified(channel))


def _unified(channel: StoredChannel) -> pa.Schema:
    return channel_schema(channel.instrument_id, channel.spec, unified=True)


def _read_h5(channel: StoredChannel, start: int) -> Iterator[pa.RecordBatch]:
    with _h5(channel.path) as f:
        g = f[channel.instrument_id][channel.spec.name]
        yield from hdf5_batches(g, channel.instrument_id, channel.spec, channel.flavor, start)


def hdf5_batches(g: h5py.Group, instrument_id: str, spec: ChannelSpec, flavor: Flavor,
                 start: int = 0) -> Iterator[pa.RecordBatch]:
    """An HDF5 channel group's rows from ``start`` on, as unified batches.

    HDF5 stores no ``source`` column: every row's source is ``flavor``, the flavor whose
    session directory holds the file. Which backend stores a flavor is the lab's choice
    (``[v4] storage = "hdf5"``), so the file's format says nothing of it; this is the one
    place HDF5 rows get their source, for ``read_session`` and the data service alike.
    """
    rows, _ = hdf5_rows(g)
    meta_rows, meta_text = hdf5_metadata(g)
    flat = g.attrs.get("layout", "rows") == "flat"
    for lo in range(start, rows, READ_ROWS):
        hi = min(rows, lo + READ_ROWS)
        ts = g["timestamp_ns"][lo:hi]
        axes = None
        if flat:  # the block's points in one read: a read per row took 10.7 s for 20 000
            # spectra of ~100 points, one read 0.07 s (measured 2026-12-07)
            ext = g["extent"][lo:hi]
            first = int(ext[:, 0].min()) if len(ext) else 0
            end = int((ext[:, 0] + ext[:, 1]).max()) if len(ext) else 0
            flat_v, flat_a = g["value"][first:end], g["axis"][first:end]
            values: Any = [flat_v[s - first:s - first + n] for s, n in ext]
            axes = [flat_a[s - first:s - first + n] for s, n in ext]
        else:
            values = g["value"][lo:hi]
            if "axis" in g:
                axes = list(g["axis"][lo:hi])
        batch = build_batch(instrument_id, spec, ts, values, axes=axes, source=flavor)
        sel = np.flatnonzero((meta_rows >= lo) & (meta_rows < hi))
        if len(sel):
            texts: list[str | None] = [None] * (hi - lo)
            for i in sel:
                texts[int(meta_rows[i]) - lo] = meta_text[int(i)]
            idx = batch.schema.get_field_index("metadata")
            batch = batch.set_column(idx, batch.schema.field(idx),
                                     pa.array(texts, type=pa.string()))
        yield batch
