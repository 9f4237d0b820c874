"""Round trips v2 -> unified -> Arrow -> unified -> v2 lose nothing; v2 samples stay cheap
(slotted rows, blocks of column arrays)."""

from __future__ import annotations

import pickle
import time
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from daqhub.config import parse
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument
from daqhub.measurement import (
    DTYPES,
    NO_METADATA,
    ChannelSpec,
    Columns,
    DataError,
    Image,
    Measurement,
    Scalar,
    Spectrum,
    UnifiedMeasurement,
    last_sample,
    sample_count,
)
from daqhub.plugins.converters import batch_to_rows, rows_to_batch
from daqhub.runtime.dual import DualRuntimeManager
from daqhub.scan import samples_of
from daqhub.schema import (
    build_batch,
    channel_schema,
    column_values,
    describe,
    scalar_rows,
    with_source,
)
from daqhub.specs import InstrumentType

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
    (Scalar("1.5", "W"), "declared float64, got str '1.5'"),
    (Scalar(True, "W"), "declared float64, got bool True"),
    (Scalar(None, "W"), "declared float64, got NoneType None"),
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


# --- cheap v2 samples (issue 18) ---------------------------------------------------------

def as_columns(iid: str, spec: ChannelSpec, rows: list[Measurement]) -> Columns:
    """The same samples as one block of arrays."""
    ts = [r.timestamp_ns for r in rows]
    metas = [dict(r.metadata) or None for r in rows]
    if spec.kind == "scalar":
        return Columns(iid, spec.name, ts, np.array([r.data.value for r in rows],
                                                    dtype=spec.dtype), spec.unit,
                       metadata=metas)
    if spec.kind == "spectrum":
        return Columns(iid, spec.name, ts, [r.data.values for r in rows], spec.unit,
                       axes=[r.data.axis for r in rows], axis_unit=spec.axis_unit,
                       metadata=metas)
    return Columns(iid, spec.name, ts, np.stack([r.data.pixels for r in rows])
                   if rows else np.empty((0, *spec.shape), spec.dtype), spec.unit,
                   metadata=metas)


@settings(max_examples=100, deadline=None)
@given(channel_and_rows())
def test_a_block_of_columns_gives_the_batch_its_rows_give(case) -> None:
    iid, spec, rows = case
    block = as_columns(iid, spec, rows)
    assert rows_to_batch([block], spec, iid).equals(rows_to_batch(rows, spec, iid))
    # split in two blocks, and mixed with rows: still the same samples in the same order
    half = len(rows) // 2
    parts = [as_columns(iid, spec, rows[:half]), as_columns(iid, spec, rows[half:])]
    assert rows_to_batch(parts, spec, iid).equals(rows_to_batch(rows, spec, iid))
    mixed = [*rows[:half], as_columns(iid, spec, rows[half:])]
    assert [r.to_v2() for r in batch_to_rows(rows_to_batch(mixed, spec, iid))] == rows
    assert sample_count([block]) == sample_count(rows) == len(rows)
    if rows:
        assert last_sample([block]) == rows[-1]


def test_a_block_contradicting_its_declaration_is_refused_naming_the_channel() -> None:
    spec = ChannelSpec("volts", "scalar", "V", "float64")
    with pytest.raises(DataError, match="dmm.volts is declared float64, got float32"):
        rows_to_batch([Columns("dmm", "volts", [1, 2], np.zeros(2, np.float32), "V")], spec)
    with pytest.raises(DataError, match=r"dmm.volts is declared in 'V', got 'mV'"):
        rows_to_batch([Columns("dmm", "volts", [1, 2], np.zeros(2), "mV")], spec)
    with pytest.raises(DataError, match="got samples of dmm.amps"):
        rows_to_batch([Columns("dmm", "amps", [1], np.zeros(1), "V")], spec, "dmm")
    with pytest.raises(DataError, match="3 timestamps but 2 values"):
        Columns("dmm", "volts", [1, 2, 3], np.zeros(2), "V")


def test_a_shared_spectrum_axis_is_every_rows_axis() -> None:
    spec = ChannelSpec("s", "spectrum", "counts", "int32", (3,), axis_unit="nm")
    axis = np.array([400.0, 500.0, 600.0])
    block = Columns("spec", "s", [5, 6], np.arange(6, dtype=np.int32).reshape(2, 3), "counts",
                    axes=axis, axis_unit="nm")
    rows = batch_to_rows(rows_to_batch([block], spec))
    assert [r.data for r in rows] == [
        Spectrum(np.array([0, 1, 2], np.int32), axis, "counts", "nm"),
        Spectrum(np.array([3, 4, 5], np.int32), axis, "counts", "nm")]


def test_rows_are_light_and_keep_their_public_form() -> None:
    m = Measurement("dmm", "volts", 7, Scalar(1.5, "V"))
    assert not hasattr(m, "__dict__") and not hasattr(m.data, "__dict__")
    assert m.metadata is NO_METADATA and m.metadata == {}
    assert Measurement("dmm", "volts", 8, Scalar(2.0, "V")).metadata is m.metadata
    with pytest.raises(TypeError):
        m.metadata["x"] = 1  # type: ignore[index]  # the shared empty mapping is read-only
    flagged = Measurement(instrument_id="dmm", channel="volts", timestamp_ns=7,
                          data=Scalar(1.5, "V"), metadata={"range": 2})
    assert flagged != m and flagged.metadata == {"range": 2}
    assert m == Measurement("dmm", "volts", 7, Scalar(1.5, "V"), {})
    assert pickle.loads(pickle.dumps(flagged)) == flagged
    assert pickle.loads(pickle.dumps(m)) == m
    assert "Scalar(value=1.5, unit='V')" in repr(m)
    match m:
        case Measurement(channel="volts", data=Scalar(value=v)):
            assert v == 1.5


SPEC = ChannelSpec("x", "scalar", "V", "float64")


class BlockReader(V2Instrument):
    """Reads 100 samples a poll, as a DAQ card's buffer would."""

    polls = 0

    def read(self) -> list[Columns]:
        t = time.time_ns()
        n = BlockReader.polls * 100
        BlockReader.polls += 1
        return [Columns(self.id, "x", np.arange(t, t + 100), np.arange(n, n + 100,
                                                                       dtype=np.float64), "V")]


def test_a_v2_driver_returning_columns_runs_end_to_end(tmp_path: Path) -> None:
    h = PluginHost()
    h.load_entry_points()
    itype = InstrumentType("test.block", "v2", "none", BlockReader, [SPEC], "test source")
    h.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(lambda: [itype])),
               "test-block", "test", "0")
    lab = parse(f'[daqhub]\noutput_dir = "{tmp_path}"\n[[v2.instruments]]\nid = "card"\n'
                f'type = "test.block"\npoll_hz = 50\n', "lab.toml", h, tmp_path)
    rt = DualRuntimeManager(lab, h)
    rt.start()
    sub = rt.subscribe("test", lossless=True, capacity=100)
    got: list[float] = []
    try:
        deadline = time.monotonic() + 20
        while len(got) < 300 and time.monotonic() < deadline:
            for b in sub.get_many(0.2):
                got.extend(b.column("value").to_pylist())
                assert b.column("source")[0].as_py() == "v2"
        health = rt.health()["instruments"][0]
    finally:
        report = rt.shutdown()
    assert got[:300] == [float(i) for i in range(300)]  # every sample, in order
    assert health["measurements"] >= 300 and health["last_value"].endswith("V")
    assert report.counts["card"]["x"] >= 300


SCALARS = [3, 2.7, True, np.bool_(False), "1.5", None, 2**63, -1, 300, np.float32(0.5),
           np.int64(7), np.uint64(2**63), np.array(2.0), b"x"]


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int8", "uint8", "bool"])
def test_both_flavors_store_or_refuse_a_scalar_alike(dtype: str) -> None:
    """The one rule (``scalar_fits``): what a v2 sample would store, a v4 one stores too,
    and what one refuses the other refuses, so a driver does not lose its data in one
    flavor and keep it, converted, in the other."""
    spec = ChannelSpec("flow", "scalar", "l/min", dtype)
    v4 = scalar_rows("m", spec, "v4")
    for value in SCALARS:
        def v2_way(v: object = value) -> object:
            m = Measurement("m", "flow", 1, Scalar(v, "l/min"))
            return rows_to_batch([m], spec).column("value").to_pylist()

        def v4_way(v: object = value) -> object:
            return v4(1, v).column("value").to_pylist()
        results = []
        for way in (v2_way, v4_way):
            try:
                results.append(way())
            except DataError as exc:
                assert "m.flow is declared" in str(exc), exc
                results.append("refused")
        assert results[0] == results[1], (dtype, value, results)
        if results[0] != "refused":
            assert np.asarray(value).dtype.kind in "biuf"
            assert results[0][0] == np.array(value, dtype=dtype)  # as the dtype holds it


class Garbled(V2Instrument):
    """A driver with a bug: text where it declared a number."""

    def read(self) -> list[Measurement]:
        return [Measurement(self.id, "x", time.time_ns(), Scalar("abc", "V"))]


def test_a_driver_returning_text_loses_its_samples_not_the_others(tmp_path: Path) -> None:
    """Its samples are refused by name; the bridge goes on, and so do the other v2
    instruments' samples, and the run's report says what was refused."""
    h = PluginHost()
    h.load_entry_points()
    types_ = [InstrumentType("test.garbled", "v2", "none", Garbled, [SPEC], "bad driver"),
              InstrumentType("test.block", "v2", "none", BlockReader, [SPEC], "good one")]
    h.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(lambda: types_)),
               "test-garbled", "test", "0")
    lab = parse(f'[daqhub]\noutput_dir = "{tmp_path}"\n'
                f'[[v2.instruments]]\nid = "bad"\ntype = "test.garbled"\npoll_hz = 50\n'
                f'[[v2.instruments]]\nid = "card"\ntype = "test.block"\npoll_hz = 50\n',
                "lab.toml", h, tmp_path)
    rt = DualRuntimeManager(lab, h)
    rt.start()
    sub = rt.subscribe("test", lossless=True, capacity=100)
    got = 0
    try:
        deadline = time.monotonic() + 20
        while got < 1000 and time.monotonic() < deadline:
            got += sum(b.num_rows for b in sub.get_many(0.2))
        assert rt.bridge.thread.is_alive()
    finally:
        report = rt.shutdown()
    assert got >= 1000  # the good instrument's samples went on flowing
    assert report.counts["card"]["x"] >= 1000
    assert not report.ok and [f for f in report.failed if f.startswith("bad:")], report.failed
    [bad] = [i for i in report.instruments if i["id"] == "bad"]
    assert "bad.x is declared float64, got str 'abc'" in str(bad), bad


def test_a_scan_reads_the_last_sample_of_a_block() -> None:
    block = Columns("card", "x", [10, 20], np.array([1.0, 2.0]), "V")
    assert samples_of([block]) == {"x": (2.0, 20)}




def test_the_values_of_a_row_sliced_from_a_window_of_spectra_are_that_rows() -> None:
    """``Lab.latest`` and a scan's points table read one row of a window of variable-length
    spectra: a slice, whose offsets go on from its parent's. Its values were another row's
    tail (or empty), so ``lab.latest("s")["spec"]["value"]`` was wrong every time."""
    spec = ChannelSpec("spec", "spectrum", "counts", "float64", (None,), axis_unit="nm")
    rows = [np.array([10.0, 11.0, 12.0]), np.array([20.0, 21.0]), np.array([30.0])]
    axes = [np.arange(len(r), dtype=float) for r in rows]
    batch = build_batch("s", spec, [1, 2, 3], rows, axes=axes, source="v2")
    for start in range(3):
        for length in range(1, 4 - start):
            got = column_values(batch.slice(start, length), spec)
            assert [list(v) for v in got] == [list(r) for r in rows[start:start + length]]
        axes = column_values(batch.slice(start, 1), spec, "axis")
        assert list(axes[0]) == list(range(len(rows[start])))
