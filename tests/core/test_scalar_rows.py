"""A v4 poll's one-row batch (``schema.scalar_rows``) is exactly what ``build_batch`` makes."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from daqhub.measurement import ChannelSpec, DataError
from daqhub.schema import (
    BLOCK_META_BYTES,
    BLOCK_ROWS,
    build_batch,
    row_bytes,
    scalar_array,
    scalar_rows,
    shown_bytes,
)

DTYPES = ["float64", "float32", "int64", "int32", "int16", "int8", "uint64", "uint32",
          "uint16", "uint8", "bool"]
VALUES: list[Any] = [1.5, 3, -1, True, 300, np.float64(2.25), np.float32(0.1), np.int64(7),
                     np.uint8(255), np.bool_(False), float("nan"), 2**63 - 1]


def outcome(make: Any) -> Any:
    try:
        return make()
    except Exception as exc:  # what build_batch refuses, the fast path must refuse alike
        return type(exc)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dtype", DTYPES)
def test_equal_to_build_batch_for_every_dtype_and_value_kind(dtype: str) -> None:
    spec = ChannelSpec("c", "scalar", "V", dtype)
    row = scalar_rows("inst", spec, "v4")
    t = time.time_ns()
    for value in VALUES:
        want = outcome(lambda v=value: build_batch(
            "inst", spec, [t], scalar_array(v, spec, "inst"), source="v4"))
        got = outcome(lambda v=value: row(t, v))
        if isinstance(want, type):
            assert got is want, (dtype, value)
            continue
        assert not isinstance(got, type), (dtype, value, got)
        if isinstance(value, float) and value != value:  # NaN != NaN: compare as numbers
            np.testing.assert_array_equal(got.column("value").to_numpy(zero_copy_only=False),
                                          want.column("value").to_numpy(zero_copy_only=False))
            got, want = got.drop_columns(["value"]), want.drop_columns(["value"])
        assert got.equals(want), (dtype, value, got.to_pydict(), want.to_pydict())
        assert got.schema.equals(want.schema, check_metadata=True)


@pytest.mark.parametrize("meta", [{"moving": True}, {"status": "ok", "code": 3, "note": "µ"},
                                  {}, None])
@pytest.mark.parametrize("value", [0.5, np.float16(2.5)])  # the fast path, build_batch's way
def test_equal_to_build_batch_with_metadata(meta: dict[str, Any] | None, value: Any) -> None:
    spec = ChannelSpec("c", "scalar", "mm", "float64")
    got = scalar_rows("inst", spec, "v4")(7, value, meta)
    want = build_batch("inst", spec, [7], np.array([value], dtype="float64"),
                       metadata=[meta] if meta else None, source="v4")
    assert got.equals(want), (got.to_pydict(), want.to_pydict())
    assert got.schema.equals(want.schema, check_metadata=True)
    assert got.column("metadata").to_pylist() == [json.dumps(meta) if meta else None]


def test_values_struct_would_pack_differently_are_refused_not_converted() -> None:
    spec = ChannelSpec("c", "scalar", "V", "float64")
    row = scalar_rows("inst", spec, "v4")
    # struct packs a bool as 1.0 and numpy parses text: both would hide a driver's bug
    with pytest.raises(DataError, match="inst.c is declared float64, got str '4.5'"):
        row(5, "4.5")
    with pytest.raises(DataError, match="got bool True"):
        row(5, True)
    with pytest.raises(DataError, match="got ndarray"):  # one element is not a scalar
        row(5, np.array([1.5]))
    ints = scalar_rows("inst", ChannelSpec("n", "scalar", "", "int64"), "v4")
    with pytest.raises(DataError, match="inst.n is declared int64, got float 2.9"):
        ints(5, 2.9)  # numpy would truncate it to 2
    with pytest.raises(DataError, match="got int 9223372036854775808"):
        ints(5, 2**63)  # struct refuses it, and so does the general way


def test_only_for_scalar_channels() -> None:
    with pytest.raises(ValueError, match="spectrum"):
        scalar_rows("inst", ChannelSpec("s", "spectrum", "V", "float64", (4,)), "v4")


def test_rows_across_blocks_keep_what_they_showed() -> None:
    """Every batch stays what it was when made while later rows fill its block and the next,
    null counts included, and survives Arrow IPC and concatenation as a reader would use it."""
    spec = ChannelSpec("pos", "scalar", "mm", "float64")
    row = scalar_rows("inst", spec, "v4")
    n = 2 * BLOCK_ROWS + 7
    metas = [{"moving": i % 3 == 0, "i": i} if i % 2 else None for i in range(n)]
    got = [row(1_000 + i, i * 0.5, metas[i]) for i in range(n)]
    # metadata long enough to end a block early still lands in the right rows
    long = {"note": "x" * (BLOCK_META_BYTES // 3)}
    got += [row(9_000 + i, -1.0, long) for i in range(4)]
    metas += [long] * 4
    stamps = [1_000 + i for i in range(n)] + [9_000 + i for i in range(4)]
    values = [i * 0.5 for i in range(n)] + [-1.0] * 4
    for b, t, v, m in zip(got, stamps, values, metas, strict=True):
        want = build_batch("inst", spec, [t], np.array([v]), metadata=[m] if m else None,
                           source="v4")
        assert b.equals(want), (t, b.to_pydict(), want.to_pydict())
        assert b.column("metadata").null_count == (0 if m else 1)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, got[0].schema) as writer:
        for b in got[BLOCK_ROWS - 2:BLOCK_ROWS + 2]:
            writer.write_batch(b)
    back = pa.ipc.open_stream(sink.getvalue()).read_all()
    assert back.column("timestamp_ns").to_pylist() == stamps[BLOCK_ROWS - 2:BLOCK_ROWS + 2]
    assert back.column("metadata").to_pylist() == [
        json.dumps(m) if m else None for m in metas[BLOCK_ROWS - 2:BLOCK_ROWS + 2]]
    whole = pa.Table.from_batches(got).combine_chunks()
    assert whole.column("value").to_pylist() == values
    assert shown_bytes(got[0]) < 100  # a view is counted as its row, not its block
    assert shown_bytes(got[0], row_bytes(spec)) == 16  # a writer's count: timestamp, value


@pytest.mark.parametrize("spec", [
    ChannelSpec("frame", "image", "counts", "uint16", (64, 48)),
    ChannelSpec("trace", "spectrum", "V", "float32", (500,), axis_unit="s"),
])
def test_a_fixed_shape_channel_is_counted_from_its_declaration_as_pyarrow_counts_it(
        spec: ChannelSpec) -> None:
    """Writers decide when they hold enough by these bytes; for arrays of a fixed shape
    they come from the declaration, without asking pyarrow per batch."""
    n = 3
    shape = (n, *(int(d) for d in spec.shape))
    values = np.ones(shape, dtype=spec.dtype)
    axes = [np.linspace(0, 1, shape[-1])] * n if spec.kind == "spectrum" else None
    batch = build_batch("inst", spec, list(range(n)), values, axes=axes, source="v2")
    row = row_bytes(spec)
    assert row is not None
    assert shown_bytes(batch, row) == pytest.approx(batch.get_total_buffer_size(), rel=0.02)


def test_scalars_are_counted_from_their_dtype_and_varying_spectra_by_pyarrow() -> None:
    assert row_bytes(ChannelSpec("x", "scalar", "V")) == 16
    assert row_bytes(ChannelSpec("n", "scalar", "", "uint8")) == 9
    assert row_bytes(ChannelSpec("t", "spectrum", "V", "float64", (None,))) is None
