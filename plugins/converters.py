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

import numpy as np
import pyarrow as pa

from daqhub.hookspecs import hookimpl
from daqhub.measurement import (
    ChannelSpec,
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


def rows_to_batch(rows: Sequence[UnifiedMeasurement | Measurement], spec: ChannelSpec,
                  instrument_id: str | None = None) -> pa.RecordBatch:
    """Rows of one channel of one instrument -> one unified-stream batch."""
    if not rows and instrument_id is None:
        raise DataError("an empty batch needs the instrument id")
    iid = instrument_id if instrument_id is not None else rows[0].instrument_id
    sources = {r.source if isinstance(r, UnifiedMeasurement) else "v2" for r in rows}
    if len(sources) > 1:
        raise DataError(f"channel {iid}.{spec.name}: one batch holds one source, got "
                        f"{sorted(sources)}")
    if spec.kind == "scalar" and _scalars_match(rows, spec, iid):
        pass  # checked in bulk
    else:
        for r in rows:
            if r.instrument_id != iid or r.channel != spec.name:
                raise DataError(f"batch of {iid}.{spec.name} got a sample of "
                                f"{r.instrument_id}.{r.channel}")
            check_against(spec, r.data, iid)
    payload: list[Data] = [r.data for r in rows]
    values: np.ndarray | list[np.ndarray]
    axes = None
    if spec.kind == "scalar":
        values = np.array([d.value for d in payload],  # type: ignore[union-attr]
                          dtype=spec.dtype)
    elif spec.kind == "spectrum":
        values = [d.values for d in payload]  # type: ignore[union-attr]
        axes = [d.axis for d in payload]  # type: ignore[union-attr]
    else:
        values = [d.pixels for d in payload]  # type: ignore[union-attr]
    return build_batch(iid, spec, [r.timestamp_ns for r in rows], values, axes=axes,
                       metadata=[r.metadata for r in rows],
                       source=sources.pop() if sources else "v2")


_PY_DTYPES = {float: np.dtype("float64"), int: np.dtype("int64"), bool: np.dtype("bool")}


def _scalars_match(rows: Sequence[UnifiedMeasurement | Measurement], spec: ChannelSpec,
                   iid: str) -> bool:
    """True when every row is a Scalar of this channel with the declared dtype and unit.

    The common case (thousands of v2 samples a second) checked per distinct type
    instead of per row; anything unusual falls back to the per-row check, which
    says exactly what is wrong.
    """
    want = np.dtype(spec.dtype)
    seen: set[type] = set()
    for r in rows:
        d = r.data
        if (type(d) is not Scalar or d.unit != spec.unit or r.instrument_id != iid
                or r.channel != spec.name):
            return False
        seen.add(type(d.value))
    for t in seen:
        dt = _PY_DTYPES.get(t) or (np.dtype(t) if issubclass(t, np.generic) else None)
        if dt != want:
            return False
    return True


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
              "v2 Measurements of one channel -> one Arrow batch (source=v2)"),
    Converter("arrow-to-unified", "arrow", "unified", batch_to_rows,
              "an Arrow channel batch -> unified rows"),
]


@hookimpl
def daqhub_converters() -> list[Converter]:
    return CONVERTERS
