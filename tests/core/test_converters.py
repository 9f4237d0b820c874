"""Round trips v2 -> unified -> Arrow -> unified -> v2 lose nothing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from daqhub.host import PluginHost
from daqhub.measurement import (
    DTYPES,
    ChannelSpec,
    DataError,
    Image,
    Measurement,
    Scalar,
    Spectrum,
    UnifiedMeasurement,
)
from daqhub.plugins.converters import batch_to_rows, rows_to_batch
from daqhub.schema import build_batch, channel_schema, describe, with_source

ids = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True)
units = st.sampled_from(["W", "V", "mm", "deg", "counts", "", "dBm"])
timestamps = st.integers(min_value=0, max_value=2**63 - 1)
meta_values = st.one_of(st.text(max_size=8), st.integers(-2**53, 2**53), st.booleans(),
                        st.floats(allow_nan=False, allow_infinity=False))
metadata = st.dictionaries(st.text(min_size=1, max_size=6), meta_values, max_size=3)


@st.composite
def channel_and_rows(draw):
    kind = draw(st.sampled_from(["scalar", "spectrum", "image"]))
    dtype = draw(st.sampled_from(DTYPES))
    unit = draw(units)
    iid = draw(ids)
    name = draw(ids)
    n = draw(st.integers(0, 6))
    if kind == "scalar":
        spec = ChannelSpec(name, "scalar", unit, dtype)
    elif kind == "spectrum":
        fixed = draw(st.booleans())
        length = draw(st.integers(1, 8))
        spec = ChannelSpec(name, "spectrum", unit, dtype, (length if fixed else None,),
                           axis_unit=draw(units))
    else:
        spec = ChannelSpec(name, "image", unit, dtype,
                           (draw(st.integers(1, 5)), draw(st.integers(1, 5))))
    elems = hnp.from_dtype(np.dtype(dtype), allow_nan=False)
    rows = []
    for _ in range(n):
        if kind == "scalar":
            arr = draw(hnp.arrays(dtype, (), elements=elems))
            data = Scalar(np.dtype(dtype).type(arr[()]), unit)
        elif kind == "spectrum":
            length = spec.shape[0] if spec.shape[0] is not None else draw(st.integers(0, 8))
            values = draw(hnp.arrays(dtype, (length,), elements=elems))
            axis = draw(hnp.arrays(np.float64, (length,),
                                   elements=st.floats(allow_nan=False, width=64)))
            data = Spectrum(values, axis, unit, spec.axis_unit)
        else:
            data = Image(draw(hnp.arrays(dtype, spec.shape, elements=elems)), unit)
        rows.append(Measurement(iid, name, draw(timestamps), data, draw(metadata)))
    return iid, spec, rows


@settings(max_examples=150, deadline=None)
@given(channel_and_rows())
def test_round_trip_is_lossless(case) -> None:
    iid, spec, rows = case
    unified = [UnifiedMeasurement.from_v2(m) for m in rows]
    batch = rows_to_batch(unified, spec, iid)
    # through Arrow IPC bytes too, as storage and remote subscribers see it
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    batch2 = pa.ipc.open_stream(sink.getvalue()).read_next_batch()
    assert describe(batch2.schema) == (iid, spec)
    back = batch_to_rows(batch2)
    assert [r.source for r in back] == ["v2"] * len(rows)
    v2 = [r.to_v2() for r in back]
    assert v2 == rows
    for a, b in zip(v2, rows, strict=True):
        assert type(a.data) is type(b.data)
        if isinstance(a.data, Scalar):
            assert np.asarray(a.data.value).dtype == np.asarray(b.data.value).dtype
        assert a.timestamp_ns == b.timestamp_ns


def test_v4_batch_becomes_unified_with_source() -> None:
    spec = ChannelSpec("volts", "scalar", "V", "float32")
    b = build_batch("dmm", spec, [1, 2], np.array([1.5, 2.5], dtype=np.float32))
    assert b.schema.equals(channel_schema("dmm", spec))
    rows = batch_to_rows(with_source(b, "v4"))
    assert [r.source for r in rows] == ["v4", "v4"]
    assert rows[1].data == Scalar(np.float32(2.5), "V")


@pytest.mark.parametrize("data, match", [
    (Scalar(np.float32(1.0), "W"), "declared float64, got float32"),
    (Scalar(1.0, "mW"), "declared in 'W', got 'mW'"),
    (Image(np.zeros((2, 2)), "W"), "declared scalar, got a image"),
])
def test_data_contradicting_its_declaration_names_the_channel(data, match) -> None:
    spec = ChannelSpec("power", "scalar", "W", "float64")
    with pytest.raises(DataError, match=match) as info:
        rows_to_batch([Measurement("meter", "power", 0, data)], spec)
    assert "meter.power" in str(info.value)


def test_image_shape_and_spectrum_length_are_checked() -> None:
    img = ChannelSpec("frame", "image", "counts", "uint16", (4, 4))
    with pytest.raises(DataError, match=r"cam.frame is declared \(4, 4\)"):
        rows_to_batch([Measurement("cam", "frame", 0,
                                   Image(np.zeros((4, 5), np.uint16), "counts"))], img)
    spec = ChannelSpec("s", "spectrum", "W", "float64", (3,), axis_unit="nm")
    with pytest.raises(DataError, match="3 points"):
        rows_to_batch([Measurement("osa", "s", 0, Spectrum(np.zeros(4), np.zeros(4), "W",
                                                           "nm"))], spec)


def test_channel_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="fixed shape"):
        ChannelSpec("img", "image", "counts", "uint16", (None, 4))
    with pytest.raises(ValueError, match="dtype 'complex128'"):
        ChannelSpec("x", "scalar", "", "complex128")


def test_converters_are_registered_through_the_hook() -> None:
    host = PluginHost()
    host.load_entry_points()
    conv = host.converter("v2", "arrow")
    spec = ChannelSpec("x", "scalar", "V", "int32")
    batch = conv.convert([Measurement("a", "x", 5, Scalar(np.int32(7), "V"))], spec)
    assert batch.column("value").to_pylist() == [7]
    assert host.converter("arrow", "unified").convert(batch)[0].data == Scalar(np.int32(7), "V")
