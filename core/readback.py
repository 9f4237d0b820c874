"""``daqhub.read_session``: a whole session (both flavors) as Arrow tables.

A session is stored twice over: the v2 instruments' channels in one HDF5 file
and the v4 ones in one Arrow stream per channel (by default; either flavor may
use either backend), in two directories. A lab reading its data back wants "the
session", not two formats, so this reads both into the same shape: one
``pyarrow.Table`` per channel with the columns of the unified stream
(``timestamp_ns``, ``value``, ``axis`` for spectra, ``metadata``, ``source``),
each column's unit in its field metadata (``field.metadata[b"unit"]``), or, with
``merge=True``, one table of every scalar channel on a common time axis. Only
pyarrow is needed; ``.to_pandas()`` on a result needs pandas (the
``daqhub[pandas]`` extra).

``source`` is the flavor that took the sample: an Arrow stream stores it, an HDF5 file's
rows take the flavor of the session directory holding it
(:func:`daqhub.session_files.hdf5_batches`). The two directories need not be siblings
(``[v2] output_dir``, ``[v4] output_dir``): either one, or the session id, finds the other
(:func:`daqhub.datafiles.find_session`), and a flavor the session ran with whose
directory is not found is a :class:`SessionFileWarning` naming where it was looked for.

Files left by a killed writer, or by one that stopped at a write error (a full
disk), are read as far as they go, like ``daqhub inspect`` reads them, with a
:class:`SessionFileWarning` naming the file: what such a file holds is intact,
but the session may have more samples than it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .datafiles import (
    FileReport,
    SessionFileWarning,
    arrow_batches,
    find_session,
    hdf5_not_closed,
    hdf5_open_kwargs,
    writer_alive,
)
from .records import is_record_file
from .schema import META_UNIT, channel_schema, describe, unit_meta
from .session_files import hdf5_batches, hdf5_channels
from .specs import Flavor


def read_session(path: str | Path, *, merge: bool = False
                 ) -> dict[str, pa.Table] | pa.Table:
    """Every channel of a session, from a session id or either flavor's session directory.

    Returns ``{"instrument.channel": table}`` (one table per channel, sorted by
    time), or with ``merge=True`` one table: ``timestamp_ns`` (every instant any
    scalar channel was sampled, in order) and a column ``instrument.channel`` per
    scalar channel, null where that channel has no sample at that instant
    (``df.ffill()`` in pandas gives the last known value); a channel sampled twice at
    one instant has its last sample there, and a :class:`MergeWarning` says how many it
    left out. Spectra and images are left out of the merged table: read them per channel.
    """
    tables = dict(sorted(_channels(Path(path))))
    if not merge:
        return tables
    return merge_on_time(tables)


class MergeWarning(UserWarning):
    """The merged table left samples out: it holds one sample per channel and instant."""


def merge_on_time(tables: dict[str, pa.Table]) -> pa.Table:
    """Scalar channels joined on their timestamps (outer join), units kept per column.

    A channel sampled more than once at one instant keeps its last sample there; the others
    are a :class:`MergeWarning` naming each such channel and how many of its samples were
    left out (they are in its own table). Both cannot be kept: a merged row is one instant,
    and a second row of that instant would hold the other channels' samples twice.
    """
    dropped: dict[str, int] = {}
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
        ts_rev, first_of_rev = np.unique(ts[::-1], return_index=True)  # each instant's last
        if len(ts_rev) < len(ts):
            dropped[name] = len(ts) - len(ts_rev)
        last = len(ts) - 1 - first_of_rev
        slot = np.full(len(times), -1, np.int64)
        slot[np.searchsorted(times, ts_rev)] = last
        taken = values.take(pa.array(slot, mask=slot < 0))
        field = t.schema.field("value")
        fields.append(pa.field(name, field.type, nullable=True, metadata=field.metadata))
        columns.append(taken)
    if dropped:  # stack: here, read_session, its caller
        left_out = ", ".join(f"{n} sample(s) of {name}" for name, n in dropped.items())
        warnings.warn(f"merged table: left out {left_out}, each at an instant where its "
                      "channel has a later sample (one sample per channel and instant); the "
                      "channel's own table (read_session without merge) has them all",
                      MergeWarning, stacklevel=3)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def units(table: pa.Table) -> dict[str, str]:
    """Column name -> unit, from the field metadata (for ``df.attrs`` after ``to_pandas``)."""
    return {f.name: f.metadata[META_UNIT].decode() for f in table.schema
            if f.metadata and META_UNIT in f.metadata}


def _channels(path: Path) -> Iterator[tuple[str, pa.Table]]:
    dirs = find_session(path, warn_at=3)  # stack: _channels, read_session, its caller
    if not dirs:
        raise FileNotFoundError(f"no session at {path}: give a session id (looked in ./data "
                                "and the current directory) or a session directory "
                                "(<output_dir>/v2/<session> or <output_dir>/v4/<session>, "
                                "or <session> under a flavor's own output_dir)")
    for flavor, d in dirs.items():
        for f in sorted(d.rglob("*.h5")):
            if not is_record_file(f):  # scan points and settings: see daqhub.records
                yield from _hdf5_channels(f, flavor)
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


def _hdf5_channels(path: Path, flavor: Flavor) -> Iterator[tuple[str, pa.Table]]:
    kwargs, _ = hdf5_open_kwargs(path)
    with h5py.File(path, "r", **kwargs) as f:
        why = hdf5_not_closed(f, path)
        if why:  # stack: here, _channels, read_session, its caller
            warnings.warn(f"{path}: {why}", SessionFileWarning, stacklevel=4)
        for iid, spec, g in hdf5_channels(f):
            try:
                batches = list(hdf5_batches(g, iid, spec, flavor))
            except OSError as exc:  # h5py's message names neither file nor channel
                raise OSError(f"{path}: channel {iid}.{spec.name} cannot be read ({exc}); "
                              f"`daqhub inspect {path}` shows what can") from exc
            table = pa.Table.from_batches(batches, channel_schema(iid, spec, unified=True))
            yield f"{iid}.{spec.name}", table.sort_by("timestamp_ns")
