"""``daqhub.read_session``: a whole session (both flavors) as Arrow tables.

A session is stored twice over: the v2 instruments' channels in one HDF5 file
and the v4 ones in one Arrow stream per channel, in two directories. A lab
reading its data back wants "the session", not two formats, so this reads
both into the same shape: one ``pyarrow.Table`` per channel with the columns of
the unified stream (``timestamp_ns``, ``value``, ``axis`` for spectra,
``metadata``, ``source``), each column's unit in its field metadata
(``field.metadata[b"unit"]``), or, with ``merge=True``, one table of every
scalar channel on a common time axis. Only pyarrow is needed; ``.to_pandas()``
on a result needs pandas (the ``daqhub[pandas]`` extra).

Files left by a killed writer, or by one that stopped at a write error (a full
disk), are read as far as they go, like ``daqhub inspect`` reads them, with a
:class:`SessionFileWarning` naming the file: what such a file holds is intact,
but the session may have more samples than it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .datafiles import (
    FileReport,
    arrow_batches,
    hdf5_metadata,
    hdf5_not_closed,
    hdf5_open_kwargs,
    hdf5_rows,
    session_dirs,
    writer_alive,
)
from .measurement import ChannelSpec
from .records import is_record_file
from .schema import META_UNIT, build_batch, describe, unit_meta

H5_META_GROUP = "_daqhub"


class SessionFileWarning(UserWarning):
    """A session file was not closed cleanly: it is read as far as it goes."""


def read_session(path: str | Path, *, merge: bool = False
                 ) -> dict[str, pa.Table] | pa.Table:
    """Every channel of a session, from a session id or either flavor's session directory.

    Returns ``{"instrument.channel": table}`` (one table per channel, sorted by
    time), or with ``merge=True`` one table: ``timestamp_ns`` (every instant any
    scalar channel was sampled, in order) and a column ``instrument.channel`` per
    scalar channel, null where that channel has no sample at that instant
    (``df.ffill()`` in pandas gives the last known value). Spectra and images
    are left out of the merged table: read them per channel.
    """
    tables = dict(sorted(_channels(Path(path))))
    if not merge:
        return tables
    return merge_on_time(tables)


def merge_on_time(tables: dict[str, pa.Table]) -> pa.Table:
    """Scalar channels joined on their timestamps (outer join), units kept per column."""
    scalars = {name: t for name, t in tables.items()
               if not pa.types.is_nested(t.schema.field("value").type)}
    times = np.unique(np.concatenate(
        [t.column("timestamp_ns").to_numpy() for t in scalars.values()]
        or [np.empty(0, np.int64)]))
    fields = [pa.field("timestamp_ns", pa.int64(), nullable=False, metadata=unit_meta("ns"))]
    columns: list[pa.Array] = [pa.array(times, pa.int64())]
    for name, t in scalars.items():
        ts = t.column("timestamp_ns").to_numpy()
        values = t.column("value").combine_chunks()
        # a channel sampled twice at one instant keeps its last sample there
        ts_rev, first_of_rev = np.unique(ts[::-1], return_index=True)
        last = len(ts) - 1 - first_of_rev
        slot = np.full(len(times), -1, np.int64)
        slot[np.searchsorted(times, ts_rev)] = last
        taken = values.take(pa.array(slot, mask=slot < 0))
        field = t.schema.field("value")
        fields.append(pa.field(name, field.type, nullable=True, metadata=field.metadata))
        columns.append(taken)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def units(table: pa.Table) -> dict[str, str]:
    """Column name -> unit, from the field metadata (for ``df.attrs`` after ``to_pandas``)."""
    return {f.name: f.metadata[META_UNIT].decode() for f in table.schema
            if f.metadata and META_UNIT in f.metadata}


def _channels(path: Path) -> Iterator[tuple[str, pa.Table]]:
    dirs = session_dirs(path)
    if not dirs:
        raise FileNotFoundError(f"no session at {path}: give a session id (looked in ./data "
                                "and the current directory) or a session directory "
                                "(<output_dir>/v2/<session> or <output_dir>/v4/<session>)")
    for d in dirs:
        for f in sorted(d.rglob("*.h5")):
            if not is_record_file(f):  # scan points and settings: see daqhub.records
                yield from _hdf5_channels(f)
        streams = sorted(d.rglob("*.arrows"))
        compacted = [p for p in sorted(d.rglob("*.parquet"))  # keep_stream: both on disk
                     if p.with_suffix(".arrows") not in streams]
        for f in [*streams, *compacted]:
            table = _arrow_table(f) if f.suffix == ".arrows" else pq.read_table(f)
            iid, spec = describe(table.schema)
            yield f"{iid}.{spec.name}", table.sort_by("timestamp_ns")


def _arrow_table(path: Path) -> pa.Table:
    report = FileReport(path, "arrow", None)
    schema, batches = arrow_batches(path, report)
    if report.status != "ok" and not writer_alive(path):
        # stack: here, _channels, read_session, its caller
        warnings.warn(f"{path}: {'; '.join(report.notes)}", SessionFileWarning, stacklevel=4)
    return pa.Table.from_batches(batches, schema=schema)


def _hdf5_channels(path: Path) -> Iterator[tuple[str, pa.Table]]:
    kwargs, _ = hdf5_open_kwargs(path)
    with h5py.File(path, "r", **kwargs) as f:
        why = hdf5_not_closed(f, path)
        if why:  # stack: here, _channels, read_session, its caller
            warnings.warn(f"{path}: {why}", SessionFileWarning, stacklevel=4)
        for iid in f:
            group = f[iid]
            if iid == H5_META_GROUP or not isinstance(group, h5py.Group):
                continue
            for name in group:
                g = group[name]
                spec = ChannelSpec.from_dict(json.loads(g.attrs["channel"]))
                rows, _ = hdf5_rows(g)
                try:
                    batch = _hdf5_batch(g, iid, spec, rows)
                except OSError as exc:  # h5py's message names neither file nor channel
                    raise OSError(f"{path}: channel {iid}.{spec.name} cannot be read ({exc}); "
                                  f"`daqhub inspect {path}` shows what can") from exc
                yield f"{iid}.{spec.name}", pa.Table.from_batches([batch]).sort_by(
                    "timestamp_ns")


def _hdf5_batch(g: h5py.Group, iid: str, spec: ChannelSpec, rows: int) -> pa.RecordBatch:
    ts = g["timestamp_ns"][:rows]
    axes: list[np.ndarray] | None = None
    values: np.ndarray | list[np.ndarray]
    if g.attrs.get("layout") == "flat":
        extent = g["extent"][:rows]
        flat_v, flat_a = g["value"][:], g["axis"][:]
        values = [flat_v[s:s + n] for s, n in extent]
        axes = [flat_a[s:s + n] for s, n in extent]
    else:
        values = g["value"][:rows]
        if spec.kind == "spectrum":
            axes = list(g["axis"][:rows])
    meta: list[dict[str, object] | None] = [None] * rows
    for row, text in zip(*hdf5_metadata(g), strict=True):
        if row < rows:
            meta[int(row)] = json.loads(text)
    return build_batch(iid, spec, ts, values, axes=axes, metadata=meta, source="v2")
