"""Channels and samples for the storage tests, covering every kind and several dtypes.

A module with a unique name rather than conftest.py: several test folders have a
conftest, and ``from conftest import ...`` could pick up another folder's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from daqhub.measurement import ChannelSpec

#: instrument id -> channels; every kind, fixed and variable spectra, several dtypes.
CHANNELS: dict[str, list[ChannelSpec]] = {
    "meter": [
        ChannelSpec("power", "scalar", "W", "float64"),
        ChannelSpec("volts", "scalar", "V", "float32"),
        ChannelSpec("counts", "scalar", "", "int32"),
        ChannelSpec("locked", "scalar", "", "bool"),
    ],
    "spectro": [
        ChannelSpec("fixed", "spectrum", "counts", "float64", (16,), "nm"),
        ChannelSpec("var", "spectrum", "V", "float32", (None,), "s"),
        ChannelSpec("raw", "spectrum", "adu", "int16", (5,), "px"),
    ],
    "cam": [
        ChannelSpec("frame", "image", "counts", "uint16", (24, 32)),
        ChannelSpec("heat", "image", "W/m2", "float64", (5, 7)),
        ChannelSpec("mask", "image", "", "bool", (3, 4)),
    ],
}
INSTRUMENTS: dict[str, dict[str, Any]] = {
    "meter": {"type": "newport.1830c", "port": "sim://newport1830c", "poll_hz": 5},
    "spectro": {"type": "acme.spectro", "resource": "GPIB0::5::INSTR"},
    "cam": {"type": "acme.cam", "exposure_ms": 2.5},
}
LAB_CONFIG = '[daqhub]\noutput_dir = "data"\n# unicode survives: µW, é\n'


@dataclass
class ChannelData:
    """Every sample of one channel, as the unified stream carries it."""

    instrument: str
    spec: ChannelSpec
    timestamps: np.ndarray
    values: list[Any]
    axes: list[np.ndarray] = field(default_factory=list)
    metadata: list[dict[str, Any] | None] = field(default_factory=list)


def _sample(spec: ChannelSpec, rng: np.random.Generator, i: int) -> tuple[Any, np.ndarray | None]:
    dtype = np.dtype(spec.dtype)
    if spec.kind == "scalar":
        shape: tuple[int, ...] = ()
    elif spec.kind == "spectrum":
        shape = (int(spec.shape[0]) if spec.shape[0] is not None else int(rng.integers(0, 9)),)
    else:
        shape = tuple(int(d) for d in spec.shape if d is not None)
    if dtype == np.bool_:
        arr = rng.integers(0, 2, size=shape).astype(bool)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    else:
        arr = (rng.standard_normal(size=shape) * 1e3).astype(dtype)
        if i % 11 == 3 and arr.size:
            arr.flat[0] = np.nan if i % 2 else np.inf
    axis = (np.linspace(400.0, 700.0, shape[0]) + i * 1e-9 if spec.kind == "spectrum"
            else None)
    return (dtype.type(arr) if spec.kind == "scalar" else arr), axis


def make_channel_data(rows: int, seed: int = 1, start_ns: int = 1_700_000_000_123_456_789
                      ) -> list[ChannelData]:
    rng = np.random.default_rng(seed)
    out = []
    for iid, specs in CHANNELS.items():
        for spec in specs:
            steps = rng.integers(1, 5_000_000, size=rows, dtype=np.int64)
            ts = start_ns + np.cumsum(steps)
            data = ChannelData(iid, spec, ts, [])
            for i in range(rows):
                value, axis = _sample(spec, rng, i)
                data.values.append(value)
                if axis is not None:
                    data.axes.append(axis)
                data.metadata.append({"range": i % 4, "note": "é"} if i % 7 == 0 else None)
            out.append(data)
    return out


def table_bytes(table: pa.Table) -> bytes:
    """The table's data as IPC bytes: equal bytes, equal data (NaNs included, which
    ``Table.equals`` calls unequal)."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table.combine_chunks())
    return sink.getvalue().to_pybytes()
