"""Arrow schemas of v4 batches and of the unified stream.

One record batch holds samples of ONE channel of ONE instrument. A lab's
channels differ in kind and dtype, and a column has one type, so a
channel-per-batch layout keeps every column a plain typed array (zero-copy to
numpy, HDF5 and Parquet) instead of a union or a blob.

Columns:

==============  ===========================================================
``timestamp_ns`` int64, nanoseconds since the Unix epoch
``value``        scalar: the channel dtype; spectrum: list (fixed-size when
                 the length is declared); image: fixed-size list of h*w,
                 row-major
``axis``         spectra only: the x axis, float64, same list layout
``metadata``     nullable string: JSON object of per-sample metadata
``source``       unified stream only: ``"v2"`` or ``"v4"``
==============  ===========================================================

The channel declaration and instrument id travel in the schema metadata, so a
batch (or an IPC file of them) is self-describing.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .measurement import (
    ChannelSpec,
    DataError,
    Flavor,
    as_flavor,
    scalar_fits,
    scalar_refused,
    timestamps_array,
)

SCHEMA_VERSION = "1"
META_INSTRUMENT = b"daqhub.instrument_id"
META_CHANNEL = b"daqhub.channel"
META_VERSION = b"daqhub.schema_version"
META_UNIT = b"unit"
#: the schema metadata key of a data-service listing entry for a session's flavor whose files
#: the service cannot read (its value: why)
META_UNREADABLE = b"daqhub.unreadable"


@functools.lru_cache(maxsize=64)
def arrow_dtype(dtype: str) -> pa.DataType:
    """Cached: asked on every batch built."""
    return pa.from_numpy_dtype(np.dtype(dtype))


def value_type(spec: ChannelSpec) -> pa.DataType:
    item = arrow_dtype(spec.dtype)
    if spec.kind == "scalar":
        return item
    size = spec.fixed_size
    return pa.list_(item, size) if size is not None else pa.list_(item)


def axis_type(spec: ChannelSpec) -> pa.DataType:
    size = spec.fixed_size
    return pa.list_(pa.float64(), size) if size is not None else pa.list_(pa.float64())


def unit_meta(unit: str) -> dict[bytes, bytes] | None:
    """Field metadata naming a column's unit: readers that keep field metadata (pyarrow,
    Parquet, ``daqhub.read_session``) then carry it with the column itself, apart from the
    schema-level channel JSON that only daqhub parses."""
    return {META_UNIT: unit.encode()} if unit else None


def channel_schema(instrument_id: str, spec: ChannelSpec, *, unified: bool = False) -> pa.Schema:
    """Schema of a v4 batch (``unified=False``) or a unified-stream batch of one channel.

    Cached: a channel's schema is built once, not once per batch (it carries JSON).
    """
    return _channel_schema(instrument_id, spec, unified)


@functools.lru_cache(maxsize=4096)
def _channel_schema(instrument_id: str, spec: ChannelSpec, unified: bool) -> pa.Schema:
    """:func:`channel_schema`, cached by position: a keyword in the key costs build_batch 100
    ns per batch."""
    fields = [pa.field("timestamp_ns", pa.int64(), nullable=False, metadata=unit_meta("ns")),
              pa.field("value", value_type(spec), nullable=False, metadata=unit_meta(spec.unit))]
    if spec.kind == "spectrum":
        fields.append(pa.field("axis", axis_type(spec), nullable=False,
                               metadata=unit_meta(spec.axis_unit)))
    fields.append(pa.field("metadata", pa.string(), nullable=True))
    if unified:
        fields.append(pa.field("source", pa.string(), nullable=False))
    meta = {META_INSTRUMENT: instrument_id.encode(),
            META_CHANNEL: json.dumps(spec.to_dict()).encode(),
            META_VERSION: SCHEMA_VERSION.encode()}
    return pa.schema(fields, metadata=meta)


def describe(schema: pa.Schema) -> tuple[str, ChannelSpec]:
    """Instrument id and channel declaration carried by a batch's schema."""
    meta = schema.metadata or {}
    return _describe(meta.get(META_INSTRUMENT), meta.get(META_CHANNEL))


def undeclared(iid: str, channel: str, declared: Iterable[tuple[str, str]]) -> str:
    """Why samples of ``iid``'s ``channel`` are refused, it being none of ``declared`` (the
    ``(instrument id, channel)`` pairs a run knows): one wording, the v4 runner's
    (:func:`declared_channel`) and the v2 bridge's."""
    known = ", ".join(f"{i}.{c}" for i, c in sorted(declared)) or "none"
    return f"channel {iid}.{channel} was not declared (declared: {known})"


def declared_channel(schema: pa.Schema, declared: Mapping[tuple[str, str], ChannelSpec]
                     ) -> tuple[str, str]:
    """The ``(instrument id, channel)`` a batch's schema describes, if ``declared`` holds it
    as such; else a DataError naming the channel: an undeclared channel, or one described
    otherwise (unit, dtype, shape) than it was declared, cannot be stored faithfully."""
    iid, spec = describe(schema)
    key = (iid, spec.name)
    found = declared.get(key)
    if found is None:
        raise DataError(undeclared(iid, spec.name, declared))
    if found != spec:
        raise DataError(f"channel {iid}.{spec.name} was declared as {found.to_dict()}, but a "
                        f"batch describes it as {spec.to_dict()}")
    return key


@functools.lru_cache(maxsize=4096)
def _describe(instrument: bytes | None, channel: bytes | None) -> tuple[str, ChannelSpec]:
    """Cached: every batch of a channel carries the same metadata, parsed once."""
    if instrument is None or channel is None:
        raise DataError("not a daqhub channel batch (no daqhub schema metadata)")
    try:
        instrument_id = instrument.decode()
        spec = ChannelSpec.from_dict(json.loads(channel))
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"not a daqhub channel batch (schema metadata: {exc})") from exc
    return instrument_id, spec


def _list_array(flat: np.ndarray, n_rows: int, spec: ChannelSpec,
                lengths: Sequence[int] | None) -> pa.Array:
    values = pa.array(flat, type=arrow_dtype(str(flat.dtype)))
    size = spec.fixed_size
    if size is not None:
        return pa.FixedSizeListArray.from_arrays(values, size)
    assert lengths is not None
    offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def build_batch(
    instrument_id: str,
    spec: ChannelSpec,
    timestamps_ns: Sequence[int] | np.ndarray,
    values: Sequence[Any] | np.ndarray,
    *,
    axes: Sequence[np.ndarray] | None = None,
    metadata: Sequence[Mapping[str, Any] | None] | None = None,
    source: Flavor | None = None,
) -> pa.RecordBatch:
    """Build one channel batch from columns, checking them against the declaration.

    ``values`` is a 1-d array of scalars, or a sequence (or stacked array) of
    spectra/images. ``source`` given -> a unified-stream batch.
    """
    ts = timestamps_array(timestamps_ns, instrument_id, spec.name)
    n = len(ts)
    dtype = _np_dtype(spec.dtype)
    lengths: list[int] | None = None
    if spec.kind == "scalar":
        arr = np.asarray(values)
        if arr.shape != (n,):
            raise DataError(f"channel {_where(instrument_id, spec)}: {n} timestamps but values "
                            f"of shape {arr.shape}")
        if arr.dtype is not dtype and arr.dtype != dtype:  # (builtin dtypes are singletons)
            raise DataError(f"channel {_where(instrument_id, spec)} is declared {spec.dtype}, "
                            f"got {arr.dtype}")
        value_col: pa.Array = _primitive(arr, arrow_dtype(spec.dtype))
    else:
        where = _where(instrument_id, spec)
        samples = [np.asarray(v) for v in values] if not isinstance(values, np.ndarray) else values
        if len(samples) != n:
            raise DataError(f"channel {where}: {n} timestamps but {len(samples)} samples")
        for s in samples:
            if s.dtype != dtype:
                raise DataError(f"channel {where} is declared {spec.dtype}, got {s.dtype}")
            if spec.fixed_size is not None and s.shape != spec.shape:
                raise DataError(f"channel {where} is declared {spec.shape}, got {s.shape}")
            if spec.kind == "spectrum" and s.ndim != 1:
                raise DataError(f"channel {where}: a spectrum is 1-d, got shape {s.shape}")
        if spec.fixed_size is None:
            lengths = [len(s) for s in samples]
        flat = (np.ascontiguousarray(samples).reshape(-1) if isinstance(samples, np.ndarray)
                else (np.concatenate([s.reshape(-1) for s in samples]) if n
                      else np.empty(0, dtype)))
        value_col = _list_array(flat.astype(dtype, copy=False), n, spec, lengths)
    cols: list[pa.Array] = [_primitive(ts, _INT64), value_col]
    if spec.kind == "spectrum":
        where = _where(instrument_id, spec)
        if axes is None or len(axes) != n:
            raise DataError(f"channel {where}: a spectrum batch needs one axis per sample")
        ax = [np.asarray(a) for a in axes]
        for a, length in zip(ax, lengths or [spec.fixed_size or 0] * n, strict=True):
            if a.dtype != np.float64 or a.shape != (length,):
                raise DataError(f"channel {where}: axis must be float64 of the values' length, "
                                f"got {a.dtype} {a.shape}")
        flat_axis = np.concatenate(ax) if n else np.empty(0, np.float64)
        cols.append(_list_array(flat_axis, n, spec, lengths))
    if metadata and any(metadata):
        if len(metadata) != n:
            raise DataError(f"channel {_where(instrument_id, spec)}: {n} timestamps but "
                            f"{len(metadata)} metadata entries")
        cols.append(pa.array([metadata_json(m, instrument_id, spec.name) if m else None
                              for m in metadata], type=pa.string()))
    else:
        cols.append(_no_metadata(n))
    schema = _channel_schema(instrument_id, spec, source is not None)
    if source is not None:
        cols.append(constant_string(as_flavor(source), n))
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def scalar_array(value: Any, spec: ChannelSpec, instrument_id: str = "") -> np.ndarray:
    """One scalar sample as a one-element array of its channel's dtype, or a
    :class:`DataError` naming the channel when the value does not fit it
    (:func:`~daqhub.measurement.scalar_fits`: never parsed, truncated or wrapped)."""
    if not scalar_fits(value, spec.dtype):
        raise scalar_refused(_where(instrument_id, spec), spec.dtype, value)
    return np.array([value], dtype=_np_dtype(spec.dtype))


def metadata_json(meta: Mapping[str, Any], instrument_id: str, channel: str) -> str:
    """One sample's metadata as the JSON text of its ``metadata`` column: the one place
    metadata becomes text (:func:`build_batch`, :class:`ScalarRows`), for both flavors.

    A numpy scalar (what numpy arithmetic gives a driver: ``np.int64(3)``) is stored as
    the Python value it is (``.item()``); anything else JSON has no value for (a numpy
    array, an object) is a :class:`DataError` naming the instrument, channel and key, so the
    sample is refused for what it is, alike in both flavors (a bare TypeError from
    ``json`` blamed the v2 converter, and crashed a v4 actor over and over). Plain Python
    metadata is dumped at once, as before; the numpy look is taken only when that fails.
    """
    try:
        return json.dumps(dict(meta))
    except (TypeError, ValueError):
        pass
    where = f"channel {instrument_id}.{channel}: metadata"
    if not isinstance(meta, Mapping):
        raise DataError(f"{where} is a {type(meta).__name__}, not a mapping of names to "
                        "values")
    for key, value in meta.items():
        try:
            json.dumps({key: value}, default=_numpy_scalar)
        except _NotJSON as exc:
            inside = isinstance(value, dict | list | tuple)  # name what is wrong in it
            culprit = exc.value if inside else value
            what = ("a numpy array" if isinstance(culprit, np.ndarray)
                    else f"a {type(culprit).__name__}")
            raise DataError(f"{where} {key!r} {'holds' if inside else 'is'} {what}, not a "
                            "JSON value") from None
        except (TypeError, ValueError) as exc:  # a key JSON has no name for, a cycle
            raise DataError(f"{where} {key!r}: {exc}") from None
    return json.dumps(dict(meta), default=_numpy_scalar)


class _NotJSON(TypeError):
    """A metadata value JSON has no value for (``value``)."""

    def __init__(self, value: object) -> None:
        super().__init__(type(value).__name__)
        self.value = value


def _numpy_scalar(value: object) -> object:
    """``json.dumps``'s ``default``: a numpy scalar as its Python value, nothing else."""
    if isinstance(value, np.generic):
        return value.item()
    raise _NotJSON(value)


_INT64 = pa.int64()


_PACK_CODES = {"float64": "d", "float32": "f", "int64": "q", "int32": "i", "int16": "h",
               "int8": "b", "uint64": "Q", "uint32": "I", "uint16": "H", "uint8": "B"}
#: what ``struct`` packs as numpy converts it (an array would pack as its one element)
_NUMBERS: frozenset[type] = frozenset(
    {float, int, bool, np.bool_, *(np.dtype(t).type for t in _PACK_CODES)})


#: rows of one block of :class:`ScalarRows` (each of its batches is a one-row view of a block)
BLOCK_ROWS = 1024
#: bytes of metadata JSON one block holds; a sample whose text does not fit starts a block
BLOCK_META_BYTES = 1 << 16


def scalar_rows(instrument_id: str, spec: ChannelSpec, source: Flavor) -> ScalarRows:
    """``row(timestamp_ns, value, meta=None)``: one sample of a scalar channel as a
    unified-stream batch, equal to what :func:`build_batch` makes of it (see
    :class:`ScalarRows`). One per producer: it is not thread-safe."""
    if spec.kind != "scalar":
        raise ValueError(f"channel {spec.name!r} is a {spec.kind}, not a scalar")
    return ScalarRows(instrument_id, spec, source)


class ScalarRows:
    """One scalar channel's one-row batches, each a zero-copy slice of a block of rows.

    A v4 poll's usual batch. Building it with pyarrow's constructors costs 7 us alone, but
    each of them (``Array.from_buffers``, ``RecordBatch.from_arrays``: their validation)
    lets go of the GIL, four times a row; in a process whose other threads want the GIL
    (v2 instruments, simulators, storage), the event loop then waited for it every time:
    measured in ``bench/lab_load.py``, 446 us of wall time and 59 us of CPU per row, so the
    v4 actors got 79-86 % of their rate while the v2 ones got all of theirs. Here the
    constructors run once per :data:`BLOCK_ROWS` rows, over buffers this builder owns; a
    row is written into the block with ``struct.pack_into`` (the timestamp, the value, the
    metadata JSON and its validity bit) and handed out as ``block.slice(i, 1)``, which
    neither validates nor lets go of the GIL.

    Arrow arrays are immutable to their readers, and these are: a row's bytes are written
    once, before the slice that shows them exists, and never again; the rest of a block is
    seen by nobody (the block itself is never handed out). The metadata column is made with
    an unknown null count, so a slice counts its nulls from its own bits.

    Only values of the types that always fit the dtype are packed here (``struct`` would
    pack a bool as 1.0), and an integer for a float channel once :func:`scalar_fits` found
    the float holds it exactly (``struct`` would round ``2**53 + 1``); any other value, an
    integer ``struct`` finds out of range, a float it finds beyond float32's range, a boolean
    channel (Arrow packs those in bits) and metadata longer than a block go through
    :func:`scalar_array` and :func:`build_batch`, which refuse what does not fit.
    """

    def __init__(self, instrument_id: str, spec: ChannelSpec, source: Flavor) -> None:
        self.instrument_id, self.spec, self.source = instrument_id, spec, source
        code = _PACK_CODES.get(spec.dtype)
        self.value_struct = struct.Struct(f"<{code}") if code is not None else None
        self.dtype = np.dtype(spec.dtype)
        fit = frozenset(t for t in _NUMBERS if scalar_fits(t(0), self.dtype))
        # the types packed as they come: those whose values fit the dtype, or whose misfits
        # struct refuses (an integer out of range, a float float32 makes infinite), which
        # then go through scalar_array and are refused; an integer for a float channel,
        # which struct rounds, is looked at first
        self.looked_at = (frozenset(t for t in fit if issubclass(t, int | np.integer))
                          if self.dtype.kind == "f" else frozenset())
        self.numbers = fit - self.looked_at
        self.schema = channel_schema(instrument_id, spec, unified=True)
        self.block: pa.RecordBatch | None = None
        self.i = BLOCK_ROWS  # the next row's index in the block: none is open yet
        self.meta_end = 0

    def __call__(self, timestamp_ns: int, value: Any, meta: Mapping[str, Any] | None = None
                 ) -> pa.RecordBatch:
        text = metadata_json(meta, self.instrument_id, self.spec.name).encode() if meta else b""
        if (self.value_struct is None or len(text) > BLOCK_META_BYTES
                or (type(value) not in self.numbers
                    and not (type(value) in self.looked_at
                             and scalar_fits(value, self.dtype)))):
            return self._general(timestamp_ns, value, meta)
        if self.i == BLOCK_ROWS or self.meta_end + len(text) > BLOCK_META_BYTES:
            self._new_block()
        i = self.i
        try:
            self.value_struct.pack_into(self.values, i * self.value_struct.size, value)
            _I64.pack_into(self.timestamps, i * 8, timestamp_ns)
        except (struct.error, OverflowError):
            return self._general(timestamp_ns, value, meta)
        if text:
            start = self.meta_end
            self.meta_end = start + len(text)
            self.meta_bytes[start:self.meta_end] = text
            self.valid[i >> 3] |= 1 << (i & 7)
        _I32.pack_into(self.offsets, (i + 1) * 4, self.meta_end)
        self.i = i + 1
        assert self.block is not None
        return self.block.slice(i, 1)

    def _general(self, timestamp_ns: int, value: Any, meta: Mapping[str, Any] | None
                 ) -> pa.RecordBatch:
        return build_batch(self.instrument_id, self.spec, [timestamp_ns],
                           scalar_array(value, self.spec, self.instrument_id),
                           metadata=[meta] if meta else None, source=self.source)

    def _new_block(self) -> None:
        n, item = BLOCK_ROWS, self.value_struct.size if self.value_struct else 0
        self.timestamps, self.values = bytearray(8 * n), bytearray(item * n)
        self.offsets, self.valid = bytearray(4 * (n + 1)), bytearray((n + 7) // 8)
        self.meta_bytes = bytearray(BLOCK_META_BYTES)
        buf = pa.py_buffer
        self.block = pa.RecordBatch.from_arrays([
            pa.Array.from_buffers(_INT64, n, [None, buf(self.timestamps)]),
            pa.Array.from_buffers(arrow_dtype(self.spec.dtype), n, [None, buf(self.values)]),
            pa.Array.from_buffers(pa.string(), n, [buf(self.valid), buf(self.offsets),
                                                   buf(self.meta_bytes)], null_count=-1),
            constant_string(as_flavor(self.source), n)], schema=self.schema)
        self.i = self.meta_end = 0


_I64, _I32 = struct.Struct("<q"), struct.Struct("<i")


def row_bytes(spec: ChannelSpec) -> int | None:
    """The bytes one row of a channel shows in its timestamp, values and axis, for
    :func:`shown_bytes` to count a batch of it without asking pyarrow; None for spectra
    whose length varies.

    Metadata is not counted: asking pyarrow what a one-row scalar batch shows, metadata
    included, took 15-20 us per batch (``nbytes``), as much as the rest of its way into
    storage, for every v4 poll. A writer's flush interval bounds what uncounted metadata
    adds to the rows it holds."""
    if spec.kind == "scalar":
        return 8 + np.dtype(spec.dtype).itemsize
    n = spec.fixed_size
    if n is None:
        return None
    return 8 + n * np.dtype(spec.dtype).itemsize + (8 * n if spec.kind == "spectrum" else 0)


def shown_bytes(batch: pa.RecordBatch, row: int | None = None) -> int:
    """The bytes of the rows a batch shows, for a writer deciding when it holds enough;
    ``row``: what one row of the batch's channel shows, if :func:`row_bytes` knows it.

    Counted from ``row`` when given: each call into pyarrow right after an image went
    through the caches cost 10-20 us, against ~1 us warm, and asking pyarrow took four.
    A one-row scalar batch may be a view of a :class:`ScalarRows` block, whose buffers
    ``get_total_buffer_size`` counts whole (92 KB for a row of 40 bytes); ``nbytes`` counts
    what the view shows but costs 9-18 us, 7 % of writing a 512x512 image, so it is asked
    only of one-row batches whose value is not nested (images and waveforms never are views).
    """
    if row is not None:
        return batch.num_rows * row
    if batch.num_rows == 1 and batch.schema.field("value").type.num_fields == 0:
        return batch.nbytes
    return batch.get_total_buffer_size()


def _primitive(arr: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A numeric numpy column as Arrow over the same memory, as ``pa.array`` makes it, but
    without its conversion machinery: measured next to a pyvisa-sim query (caches shared), a
    one-row v4 batch cost 40 us more through ``pa.array``, 10 us through this."""
    if arr.dtype.kind in "iuf" and arr.flags.c_contiguous and arr.dtype.isnative:
        return pa.Array.from_buffers(arrow_type, len(arr), [None, pa.py_buffer(arr)])
    return pa.array(arr, type=arrow_type)


def _where(instrument_id: str, spec: ChannelSpec) -> str:
    """``<instrument>.<channel>`` for error messages (formatted only when one is raised)."""
    return f"{instrument_id}.{spec.name}"


_np_dtype = functools.lru_cache(maxsize=64)(np.dtype)


@functools.lru_cache(maxsize=256)
def _no_metadata(n: int) -> pa.Array:
    """The metadata column of ``n`` rows without metadata (cached: arrays are immutable)."""
    return pa.nulls(n, pa.string())


@functools.lru_cache(maxsize=256)
def constant_string(text: str, n: int) -> pa.Array:
    """``n`` copies of ``text`` as a string array, built from buffers (no Python list).

    Cached: arrays are immutable and batch sizes repeat.
    """
    raw = text.encode()
    offsets = np.arange(0, len(raw) * (n + 1), len(raw), dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(raw * n))


def with_source(batch: pa.RecordBatch, source: Flavor) -> pa.RecordBatch:
    """A v4 batch as a unified-stream batch (zero-copy for the data columns)."""
    if batch.schema.get_field_index("source") >= 0:  # (``names`` makes a list: 3x the time)
        return batch
    return batch.append_column(_SOURCE_FIELD, constant_string(as_flavor(source), batch.num_rows))


_SOURCE_FIELD = pa.field("source", pa.string(), nullable=False)


def column_values(batch: pa.RecordBatch | pa.Table, spec: ChannelSpec, name: str = "value"
                  ) -> np.ndarray | list[np.ndarray]:
    """The value (or axis) column as numpy: an array for scalars and fixed shapes, else a list."""
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if spec.kind == "scalar":
        return col.to_numpy(zero_copy_only=False)
    flat = col.flatten().to_numpy(zero_copy_only=False)
    if spec.fixed_size is not None:
        return flat.reshape((len(col), *spec.shape))  # type: ignore[arg-type]
    # a slice's offsets go on from its parent's (a row of a window: Lab.latest), its
    # flatten() starts at its own first value
    offsets = col.offsets.to_numpy()
    offsets = offsets - offsets[0]
    return [flat[offsets[i]:offsets[i + 1]] for i in range(len(col))]
