"""Built-in converters: v2 ``Measurement`` <-> ``UnifiedMeasurement`` <-> Arrow batches.

Registered through the ``daqhub`` entry-point group like any third-party
plugin. Every conversion is lossless: values, dtypes, shapes, units,
nanosecond timestamps, ids and per-sample metadata survive a round trip, and
data that contradicts its channel declaration is refused with the channel's
name rather than silently cast.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from daqhub.hookspecs import hookimpl
from daqhub.measurement import (
    ChannelSpec,
    Columns,
    Data,
    DataError,
    Image,
    Measurement,
    Scalar,
    Spectrum,
    UnifiedMeasurement,
    as_flavor,
    check_against,
)
from daqhub.schema import build_batch, column_values, describe
from daqhub.specs import Converter


def v2_to_unified(rows: Sequence[Measurement]) -> list[UnifiedMeasurement]:
    return [UnifiedMeasurement.from_v2(m) for m in rows]


def unified_to_v2(rows: Sequence[UnifiedMeasurement]) -> list[Measurement]:
    return [r.to_v2() for r in rows]


def rows_to_batch(rows: Sequence[UnifiedMeasurement | Measurement | Columns],
                  spec: ChannelSpec, instrument_id: str | None = None) -> pa.RecordBatch:
    """Rows (or v2 :class:`Columns` blocks) of one channel of one instrument -> one
    unified-stream batch."""
    if not rows and instrument_id is None:
        raise DataError("an empty batch needs the instrument id")
    iid = instrument_id if instrument_id is not None else rows[0].instrument_id
    blocks = [r for r in rows if type(r) is Columns]
    if blocks:
        if len(blocks) == len(rows):
            return columns_to_batch(blocks, spec, iid)
        # rows and blocks of one channel in one window: the rare case, taken row by row
        rows = [m for r in rows for m in
                ([r.row(i) for i in range(len(r))] if type(r) is Columns else [r])]
    if {type(r) for r in rows} <= {Measurement}:
        source: str = "v2"  # the common case, told without a test per row
    else:
        sources = {r.source if isinstance(r, UnifiedMeasurement) else "v2" for r in rows}
        if len(sources) > 1:
            raise DataError(f"channel {iid}.{spec.name}: one batch holds one source, got "
                            f"{sorted(sources)}")
        source = sources.pop()
    payload: list[Data] = [r.data for r in rows]
    raw = _matching_scalars(rows, payload, spec, iid) if spec.kind == "scalar" else None
    if raw is None:
        for r in rows:
            if r.instrument_id != iid or r.channel != spec.name:
                raise DataError(f"batch of {iid}.{spec.name} got a sample of "
                                f"{r.instrument_id}.{r.channel}")
            check_against(spec, r.data, iid)
    values: np.ndarray | list[np.ndarray]
    axes = None
    if spec.kind == "scalar":
        try:
            values = np.array(raw if raw is not None
                              else [d.value for d in payload],  # type: ignore[union-attr]
                              dtype=spec.dtype)
        except OverflowError:  # a Python int beyond the dtype's range, on the fast path
            for d in payload:
                check_against(spec, d, iid)  # which names it
            raise
    elif spec.kind == "spectrum":
        values = [d.values for d in payload]  # type: ignore[union-attr]
        axes = [d.axis for d in payload]  # type: ignore[union-attr]
    else:
        values = [d.pixels for d in payload]  # type: ignore[union-attr]
    return build_batch(iid, spec, [r.timestamp_ns for r in rows], values, axes=axes,
                       metadata=[r.metadata for r in rows], source=source)


def columns_to_batch(blocks: Sequence[Columns], spec: ChannelSpec,
                     instrument_id: str | None = None) -> pa.RecordBatch:
    """v2 blocks of one channel -> one unified-stream batch, straight from their arrays.

    No Python object per sample: timestamps and values are concatenated as arrays and
    checked against the declaration in bulk by :func:`~daqhub.schema.build_batch`.
    """
    if not blocks:
        raise DataError("no blocks to convert")
    iid = instrument_id if instrument_id is not None else blocks[0].instrument_id
    where = f"{iid}.{spec.name}"
    for b in blocks:
        if b.instrument_id != iid or b.channel != spec.name:
            raise DataError(f"batch of {where} got samples of {b.instrument_id}.{b.channel}")
        if b.unit != spec.unit:
            raise DataError(f"channel {where} is declared in {spec.unit!r}, got {b.unit!r}")
        if spec.kind == "spectrum" and b.axis_unit != spec.axis_unit:
            raise DataError(f"channel {where}: axis declared in {spec.axis_unit!r}, "
                            f"got {b.axis_unit!r}")
    axes: list[np.ndarray] | None = None
    if spec.kind == "spectrum":
        axes = [b.axis(i) for b in blocks for i in range(len(b))]
    if len(blocks) == 1:
        b = blocks[0]
        ts, values, metas = b.timestamps_ns, b.values, b.metadata
    else:
        ts = np.concatenate([b.timestamps_ns for b in blocks])
        arrays = all(isinstance(b.values, np.ndarray) for b in blocks)
        values = (np.concatenate([b.values for b in blocks]) if arrays
                  else [v for b in blocks for v in b.values])
        metas = (None if all(b.metadata is None for b in blocks) else
                 [m for b in blocks for m in (b.metadata or [None] * len(b))])
    return build_batch(iid, spec, ts, values, axes=axes, metadata=metas, source="v2")


_PY_DTYPES = {float: np.dtype("float64"), int: np.dtype("int64"), bool: np.dtype("bool")}


def _matching_scalars(rows: Sequence[UnifiedMeasurement | Measurement], payload: list[Data],
                      spec: ChannelSpec, iid: str) -> list[Any] | None:
    """The rows' values when every row is a Scalar of this channel with the declared dtype
    and unit, else None.

    The common case (thousands of v2 samples a second) checked per distinct type, unit and
    id instead of per row; anything unusual returns None for the per-row check, which says
    exactly what is wrong.
    """
    if ({type(d) for d in payload} != {Scalar}
            or {d.unit for d in payload} != {spec.unit}  # type: ignore[union-attr]
            or {r.instrument_id for r in rows} != {iid}
            or {r.channel for r in rows} != {spec.name}):
        return None
    values = [d.value for d in payload]  # type: ignore[union-attr]
    want = np.dtype(spec.dtype)
    for t in {type(v) for v in values}:
        dt = _PY_DTYPES.get(t) or (np.dtype(t) if issubclass(t, np.generic) else None)
        if dt is None or dt != want:  # (a dtype equals None when it is float64)
            return None
    return values


def batch_to_rows(batch: pa.RecordBatch) -> list[UnifiedMeasurement]:
    """A unified-stream (or v4) batch -> rows; a v4 batch without a source column is v4."""
    iid, spec = describe(batch.schema)
    ts = batch.column("timestamp_ns").to_numpy()
    values = column_values(batch, spec)
    axes = column_values(batch, spec, "axis") if spec.kind == "spectrum" else None
    metas = batch.column("metadata").to_pylist()
    sources = (batch.column("source").to_pylist() if "source" in batch.schema.names
               else ["v4"] * batch.num_rows)
    dtype = np.dtype(spec.dtype)
    out = []
    for i in range(batch.num_rows):
        data: Data
        if spec.kind == "scalar":
            data = Scalar(dtype.type(values[i]), spec.unit)
        elif spec.kind == "spectrum":
            assert axes is not None
            data = Spectrum(np.array(values[i], dtype=dtype), np.array(axes[i], dtype=np.float64),
                            spec.unit, spec.axis_unit)
        else:
            data = Image(np.array(values[i], dtype=dtype), spec.unit)
        meta = json.loads(metas[i]) if metas[i] else {}
        out.append(UnifiedMeasurement(iid, spec.name, int(ts[i]), data, as_flavor(sources[i]),
                                      meta))
    return out


CONVERTERS = [
    Converter("v2-to-unified", "v2", "unified", v2_to_unified,
              "v2 Measurements as unified rows tagged source=v2"),
    Converter("unified-to-v2", "unified", "v2", unified_to_v2,
              "unified rows back to v2 Measurements"),
    Converter("unified-to-arrow", "unified", "arrow", rows_to_batch,
              "rows of one channel -> one Arrow batch of the unified schema"),
    Converter("v2-to-arrow", "v2", "arrow", rows_to_batch,
              "v2 Measurements (or Columns blocks) of one channel -> one Arrow batch "
              "(source=v2)"),
    Converter("arrow-to-unified", "arrow", "unified", batch_to_rows,
              "an Arrow channel batch -> unified rows"),
]


@hookimpl
def daqhub_converters() -> list[Converter]:
    return CONVERTERS
