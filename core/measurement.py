"""Measurement formats shared by every flavor, driver and storage backend.

Three kinds of data exist: a scalar, a spectrum (values
over an axis) and an image. Each instrument type declares its channels up front
(:class:`ChannelSpec`), so storage can lay out its files before the first sample
arrives and converters can refuse data that contradicts the declaration instead
of writing something a reader would misinterpret later.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

import numpy as np

Kind: TypeAlias = Literal["scalar", "spectrum", "image"]
KINDS: tuple[Kind, ...] = ("scalar", "spectrum", "image")

#: Numeric dtypes a channel may carry. Arrow, HDF5 and numpy agree on all of them.
DTYPES: tuple[str, ...] = (
    "float64", "float32", "int64", "int32", "int16", "int8",
    "uint64", "uint32", "uint16", "uint8", "bool",
)

MetaValue: TypeAlias = str | int | float | bool


#: Which runtime an instrument runs in, and so which one produced a measurement: ``v2`` (a
#: thread polling a blocking class) or ``v4`` (a supervised asyncio actor). Plain strings, so
#: a lab file, an Arrow ``source`` column and a plugin's declaration all spell it alike.
Flavor: TypeAlias = Literal["v2", "v4"]
FLAVORS: tuple[Flavor, ...] = ("v2", "v4")


class DataError(ValueError):
    """Data contradicts the channel it claims to belong to.

    Raised by a driver's ``read()`` (its own check, or :class:`RefusedValues`), the device
    is fine: the runtimes count the read's values refused, not a failed read (see
    ``InstrumentHealth.read_refused``)."""


class RefusedValues(DataError):
    """A read refused some of its poll's values and has the rest to give: ``kept`` is what
    the read returns without them, ``refused`` each refused value's channel and its
    :class:`DataError` (which names the instrument, the channel and what is wrong).

    Raised, not returned, so a script's or a scan's ``read`` fails naming the value as any
    ``DataError`` does (its text is the refusals'); the runtimes' polls (both flavors)
    publish ``kept`` and count each value as a refused sample
    (``InstrumentHealth.read_refused``). The driver toolkit raises it
    (``daqhub.driver.flavors``); it lives here, beside :class:`DataError`, so the runtimes
    need no driver toolkit to handle it. Until 2026-12-07 one such value cost the whole
    poll, the good values of other channels too, counted as a failed read: the run said ok.
    """

    def __init__(self, kept: list[Any], refused: list[tuple[str, DataError]]) -> None:
        super().__init__("; ".join(str(exc) for _, exc in refused))
        self.kept = kept
        self.refused = refused


_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
#: the item types of a timestamp list taken without numpy's inference (not bool: no ns count)
_INT_TYPES = frozenset({int, np.int64, np.int32, np.uint32, np.int16, np.uint16, np.int8,
                        np.uint8})


def timestamps_array(values: Any, instrument_id: str, channel: str) -> np.ndarray:
    """``values`` as a 1-d int64 array of nanoseconds, or a :class:`DataError` naming the
    instrument and channel, the first offending row and how many there are.

    The one rule of what a timestamp is, for both flavors (:func:`~daqhub.schema.build_batch`
    applies it to every batch it makes, v2 windows and v4 reads alike, and :class:`Columns`
    to its block): a whole number of nanoseconds within int64. NaN, an infinity, ``1.5``,
    None, a string or a bool is refused, never parsed, truncated or wrapped as numpy's int64
    conversion would (and for NaN it raised a bare ``ValueError`` naming no row or channel).
    An integer array passes with a look at its dtype; a list of plain ints (``time_ns()``'s,
    a v2 window's) with one look at its items' types and a conversion (numpy's inference of
    the list took three times as long: 6 % of the v2 rows a bridge converts per second).
    """
    if isinstance(values, list | tuple) and set(map(type, values)) <= _INT_TYPES:
        try:
            return np.fromiter(values, dtype=np.int64, count=len(values))
        except OverflowError:  # past int64: the checks below name the row
            pass
    try:
        arr = values if isinstance(values, np.ndarray) else np.asarray(values)
    except (ValueError, TypeError):  # ragged: the per-row check below names the culprit
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
    if arr.ndim != 1:
        raise DataError(f"channel {instrument_id}.{channel}: timestamps must be 1-d, got "
                        f"shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "i":
        return arr if arr.dtype == np.int64 else arr.astype(np.int64)
    if kind == "u":
        bad = arr > _INT64_MAX
    elif kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(arr) & (np.trunc(arr) == arr) & (arr >= _INT64_MIN)
                    & (arr < 2.0 ** 63))
    else:  # objects, strings, bools: row by row (the rare case)
        bad = np.fromiter((not _whole_ns(v) for v in arr), dtype=bool, count=len(arr))
    if bad.any():
        rows = np.flatnonzero(bad)
        more = f" (and {len(rows) - 1} more row(s))" if len(rows) > 1 else ""
        first = arr[rows[0]]
        first = first.item() if isinstance(first, np.generic) else first  # as the driver gave it
        raise DataError(f"channel {instrument_id}.{channel}: timestamp_ns must be a whole "
                        f"number of nanoseconds within int64; row {rows[0]} has "
                        f"{value_for_error(first)}{more}")
    if kind == "O":
        return np.array([int(v) for v in arr], dtype=np.int64)
    return arr.astype(np.int64)


def _whole_ns(value: Any) -> bool:
    """Whether one timestamp of an object array is a whole number of ns within int64."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | np.integer):
        return _INT64_MIN <= int(value) <= _INT64_MAX
    if isinstance(value, float | np.floating):
        f = float(value)
        return math.isfinite(f) and f.is_integer() and _INT64_MIN <= f < 2.0 ** 63
    return False


_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
#: Names Windows refuses for files whatever the extension; refused everywhere so a
#: session copied to a Windows machine stays readable.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}
#: Names the backends use for their own bookkeeping (the HDF5 ``/_daqhub`` group).
RESERVED_IDS = frozenset({"_daqhub"})


def check_id(value: str, what: str = "id") -> str | None:
    """Why ``value`` cannot name a file or HDF5 group, or None when it can.

    Allowed: 1-64 ASCII letters, digits, ``_`` and ``-``, not starting with
    ``-``, and not a name Windows reserves (``CON``, ``NUL``, ``COM1``...). This
    rules out every path trick (``..``, ``a/b``, absolute paths, NUL bytes) by
    construction rather than by listing them.

    The one rule for every id that becomes a name on disk: instrument and session ids
    (:mod:`daqhub.storage`, which re-exports it) and channel names, which
    :meth:`ChannelSpec.problems` checks by it, so a plugin declaring a channel storage cannot
    name (``'température'``, ``'con'``) fails when it loads, naming the plugin and the
    channel, not every run at its start.
    """
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if value == "":
        return f"{what} must not be empty"
    if _ID.match(value) is None:
        bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "_-"))})
        shown = ", ".join(repr(c) for c in bad) if bad else ""
        if len(value) > 64:
            why = f"is {len(value)} characters long (at most 64)"
        elif bad:
            why = f"contains {shown}"
        else:
            why = "starts with '-'"
        suggestion = _suggest(value)
        return (f"{what} {value!r} {why}; ids name files and HDF5 groups, so they may hold only "
                f"ASCII letters, digits, '_' and '-' (not starting with '-')"
                + (f"; try {suggestion!r}" if suggestion else ""))
    if value.lower() in _RESERVED:
        return f"{what} {value!r} is a reserved device name on Windows; try {value + '_1'!r}"
    if value in RESERVED_IDS:
        return f"{what} {value!r} is reserved for daqhub's own records; try {value[1:]!r}"
    return None


def _suggest(value: str) -> str:
    """An allowed id close to ``value``: accents dropped (``température`` -> ``temperature``),
    anything else outside the alphabet made ``_``; empty when nothing of it is left (``温度``:
    a made-up word would name something else)."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", value)
                    if not unicodedata.combining(c))
    return re.sub(r"[^A-Za-z0-9_-]+", "_", plain).strip("_-")[:64]


def as_flavor(value: object) -> Flavor:
    """``value`` checked to be a flavor (``DataError`` if not)."""
    if value == "v2" or value == "v4":
        return value  # type: ignore[return-value]
    raise DataError(f"a source is 'v2' or 'v4', not {value!r}")


@dataclass(frozen=True)
class ChannelSpec:
    """What one channel of an instrument carries, declared before acquisition.

    ``shape`` is the shape of one sample: ``()`` for a scalar, ``(n,)`` for a
    spectrum (``(None,)`` when its length varies between samples) and ``(h, w)``
    for an image (images must have a fixed size: HDF5 datasets need it).
    """

    name: str
    kind: Kind
    unit: str
    dtype: str = "float64"
    shape: tuple[int | None, ...] = ()
    axis_unit: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError(f"channel {self.name!r}: " + "; ".join(problems))

    def problems(self) -> list[str]:
        out: list[str] = []
        why = check_id(self.name, "name")  # storage's rule: the name names its files
        if why:
            out.append(why)
        if self.kind not in KINDS:
            out.append(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.dtype not in DTYPES:
            out.append(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        expected_ndim = {"scalar": 0, "spectrum": 1, "image": 2}.get(self.kind)
        if expected_ndim is not None and len(self.shape) != expected_ndim:
            out.append(f"a {self.kind} has {expected_ndim} dimension(s), shape {self.shape} has "
                       f"{len(self.shape)}")
        if self.kind == "image" and any(d is None for d in self.shape):
            out.append("an image needs a fixed shape (height, width)")
        if any(d is not None and d <= 0 for d in self.shape):
            out.append(f"shape {self.shape} has a non-positive dimension")
        return out

    @property
    def fixed_size(self) -> int | None:
        """Number of elements per sample, or None when the length varies."""
        if any(d is None for d in self.shape):
            return None
        n = 1
        for d in self.shape:
            n *= int(d)  # type: ignore[arg-type]  # None ruled out above
        return n

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "unit": self.unit, "dtype": self.dtype,
            "shape": list(self.shape), "axis_unit": self.axis_unit,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChannelSpec:
        return cls(
            name=d["name"], kind=d["kind"], unit=d.get("unit", ""), dtype=d.get("dtype", "float64"),
            shape=tuple(d.get("shape", ())), axis_unit=d.get("axis_unit", ""),
            description=d.get("description", ""),
        )


class Scalar:
    """One number and its unit.

    A slotted class rather than a frozen dataclass, like :class:`Measurement`: a v2 driver
    makes one per sample. Treat it as immutable (it is shared once emitted).
    """

    __slots__ = ("value", "unit")
    __match_args__ = ("value", "unit")

    def __init__(self, value: Any, unit: str = "") -> None:
        self.value = value  # a Python or numpy number; its numpy dtype is what gets stored
        self.unit = unit

    def __eq__(self, other: object) -> bool:
        if type(other) is not Scalar:
            return NotImplemented
        return (self.value, self.unit) == (other.value, other.unit)

    def __hash__(self) -> int:
        return hash((self.value, self.unit))

    def __repr__(self) -> str:
        return f"Scalar(value={self.value!r}, unit={self.unit!r})"


@dataclass(frozen=True, eq=False)
class Spectrum:
    values: np.ndarray
    axis: np.ndarray
    unit: str = ""
    axis_unit: str = ""

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Spectrum) and self.unit == other.unit
                and self.axis_unit == other.axis_unit and _same_array(self.values, other.values)
                and _same_array(self.axis, other.axis))


@dataclass(frozen=True, eq=False)
class Image:
    pixels: np.ndarray
    unit: str = ""

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Image) and self.unit == other.unit
                and _same_array(self.pixels, other.pixels))


Data: TypeAlias = Scalar | Spectrum | Image


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=
                                                                            a.dtype.kind == "f"))


def kind_of(data: Data) -> Kind:
    if isinstance(data, Scalar):
        return "scalar"
    if isinstance(data, Spectrum):
        return "spectrum"
    if isinstance(data, Image):
        return "image"
    raise DataError(f"not a measurement payload: {type(data).__name__}")


def dtype_of(data: Data) -> np.dtype[Any]:
    if isinstance(data, Scalar):
        return np.asarray(data.value).dtype
    if isinstance(data, Spectrum):
        return data.values.dtype
    return data.pixels.dtype


#: The metadata of every sample that has none: one shared, read-only empty mapping instead
#: of a dict per row.
NO_METADATA: Mapping[str, MetaValue] = MappingProxyType({})


class Measurement:
    """One sample as a v2 driver emits it.

    A slotted class with a plain ``__init__`` rather than a frozen dataclass: a v2 driver may
    emit thousands a second, and the dataclass's per-field ``object.__setattr__`` plus a fresh
    metadata dict per row were most of what a sample cost (measured: 4.7-7.7 us a sample,
    now about a quarter of that). Samples without metadata share :data:`NO_METADATA`. Treat a
    measurement as immutable: once emitted it is shared with the bridge and the live view.
    A driver that reads many samples of a channel at once returns a :class:`Columns` instead.
    """

    __slots__ = ("instrument_id", "channel", "timestamp_ns", "data", "metadata")
    __match_args__ = ("instrument_id", "channel", "timestamp_ns", "data", "metadata")

    def __init__(self, instrument_id: str, channel: str, timestamp_ns: int, data: Data,
                 metadata: Mapping[str, MetaValue] = NO_METADATA) -> None:
        self.instrument_id = instrument_id
        self.channel = channel
        self.timestamp_ns = timestamp_ns
        self.data = data
        self.metadata = metadata

    def __eq__(self, other: object) -> bool:
        if type(other) is not Measurement:
            return NotImplemented
        return ((self.instrument_id, self.channel, self.timestamp_ns, self.data, self.metadata)
                == (other.instrument_id, other.channel, other.timestamp_ns, other.data,
                    other.metadata))

    __hash__ = None  # type: ignore[assignment]  # metadata is a mapping: rows are not keys

    def __repr__(self) -> str:
        return (f"Measurement(instrument_id={self.instrument_id!r}, channel={self.channel!r}, "
                f"timestamp_ns={self.timestamp_ns!r}, data={self.data!r}, "
                f"metadata={dict(self.metadata)!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Measurement, (self.instrument_id, self.channel, self.timestamp_ns, self.data,
                              dict(self.metadata)))


class Columns:
    """Many samples of one channel as arrays: what a v2 driver that reads blocks returns.

    ``values`` holds one sample per row: a 1-d array for a scalar channel, ``(n, length)``
    (or a sequence of 1-d arrays when the length varies) for spectra, ``(n, h, w)`` for
    images; ``axes`` one axis per spectrum row (a 1-d array shared by every row is repeated).
    ``metadata`` is None or one mapping (or None) per row. The bridge turns a block into an
    Arrow batch from the arrays themselves, without a Python object per sample, and refuses
    one that contradicts the channel's declaration (dtype, unit, shape) as it refuses rows.
    """

    __slots__ = ("instrument_id", "channel", "timestamps_ns", "values", "unit", "axes",
                 "axis_unit", "metadata")

    def __init__(self, instrument_id: str, channel: str, timestamps_ns: Any, values: Any,
                 unit: str = "", *, axes: Any = None, axis_unit: str = "",
                 metadata: Sequence[Mapping[str, MetaValue] | None] | None = None) -> None:
        self.instrument_id = instrument_id
        self.channel = channel
        self.timestamps_ns = timestamps_array(timestamps_ns, instrument_id, channel)
        self.values = values
        self.unit = unit
        self.axes = axes
        self.axis_unit = axis_unit
        self.metadata = metadata
        if len(values) != len(self.timestamps_ns):
            raise DataError(f"channel {instrument_id}.{channel}: {len(self.timestamps_ns)} "
                            f"timestamps but {len(values)} values")

    def __len__(self) -> int:
        return len(self.timestamps_ns)

    def __repr__(self) -> str:
        return (f"Columns({self.instrument_id!r}, {self.channel!r}, {len(self)} samples, "
                f"unit={self.unit!r})")

    def axis(self, i: int) -> np.ndarray:
        """The axis of spectrum row ``i`` (a 1-d array ``axes`` is every row's)."""
        if self.axes is None:
            raise DataError(f"channel {self.instrument_id}.{self.channel}: spectra need axes")
        shared = isinstance(self.axes, np.ndarray) and self.axes.ndim == 1
        return np.asarray(self.axes if shared else self.axes[i])

    def row(self, i: int) -> Measurement:
        """Sample ``i`` as a :class:`Measurement` (one object per call: for the last sample,
        or a list mixing rows and blocks of one channel)."""
        value = np.asarray(self.values[i])
        data: Data
        if value.ndim == 0:
            data = Scalar(value[()], self.unit)
        elif value.ndim == 1:
            data = Spectrum(value, self.axis(i), self.unit, self.axis_unit)
        else:
            data = Image(value, self.unit)
        meta = self.metadata[i] if self.metadata is not None else None
        return Measurement(self.instrument_id, self.channel, int(self.timestamps_ns[i]), data,
                           meta or NO_METADATA)


def sample_count(items: Sequence[Measurement | Columns]) -> int:
    """How many samples a v2 ``read()`` returned (a :class:`Columns` counts its rows)."""
    if Columns not in set(map(type, items)):  # rows only: told without a loop in bytecode
        return len(items)
    return sum(len(i) if type(i) is Columns else 1 for i in items)


def read_size(items: object) -> int:
    """How many samples a v2 ``read()`` returned, after checking that it returned a list (or
    tuple) of :class:`Measurement` and :class:`Columns`: a TypeError naming the first item
    that is not one (a None in the list), which the worker counts as its driver's crash.

    Checked where the read is made, so the driver is named, not the bridge thread every v2
    instrument shares (a None there killed it, and the report blamed the instruments whose
    samples were lost with it). One set of the items' types, as :func:`sample_count` takes.
    """
    if not isinstance(items, list | tuple):
        raise TypeError(f"returned {value_for_error(items)}: a v2 read() returns a list of "
                        "Measurement and Columns")
    kinds = set(map(type, items))
    if kinds <= _ROWS:
        return len(items)
    if not kinds <= _SAMPLES:
        for at, item in enumerate(items):
            if not isinstance(item, Measurement | Columns):
                raise TypeError(f"returned {value_for_error(item)} as item {at} of "
                                f"{len(items)}: a v2 read() returns a list of Measurement "
                                "and Columns")
    return sum(len(i) if isinstance(i, Columns) else 1 for i in items)


#: what a v2 worker publishes per poll: its instrument's id and what ``read()`` returned
V2Read: TypeAlias = tuple[str, Sequence[Measurement | Columns]]


_ROWS: frozenset[type] = frozenset({Measurement})
_SAMPLES: frozenset[type] = frozenset({Measurement, Columns})


def group_by_channel(read: V2Read, into: dict[tuple[str, str], list[Measurement | Columns]]
                     ) -> list[Measurement | Columns]:
    """Append a v2 ``read()``'s items to ``into[(instrument_id, channel)]``; return the items
    naming another instrument than the one whose read returned them, not grouped (a driver
    speaks for its own instrument only: its samples must not be stored as another's).

    A read of its instrument's one channel (the common case when samples are many) is moved
    as one list, not item by item. A read with an item that is not a sample raises before
    anything of it is grouped, so the caller can refuse that read whole.
    """
    owner, items = read
    if {i.instrument_id for i in items} == {owner} and len({i.channel for i in items}) == 1:
        into[(owner, items[0].channel)].extend(items)
        return []
    foreign: list[Measurement | Columns] = []
    mine: list[tuple[tuple[str, str], Measurement | Columns]] = []
    for i in items:
        if i.instrument_id == owner:
            mine.append(((owner, i.channel), i))
        else:
            foreign.append(i)
    for key, i in mine:
        into[key].append(i)
    return foreign


def last_sample(items: Sequence[Measurement | Columns]) -> Measurement | None:
    """The last sample of a v2 ``read()`` as a row (for the live view), None when empty."""
    for item in reversed(items):
        if isinstance(item, Measurement):
            return item
        if len(item):
            return item.row(len(item) - 1)
    return None


@dataclass(frozen=True)
class UnifiedMeasurement:
    """Row view of the unified stream: a sample of either flavor, tagged with its source."""

    instrument_id: str
    channel: str
    timestamp_ns: int
    data: Data
    source: Flavor
    metadata: Mapping[str, MetaValue] = field(default_factory=dict)

    @classmethod
    def from_v2(cls, m: Measurement) -> UnifiedMeasurement:
        return cls(m.instrument_id, m.channel, m.timestamp_ns, m.data, "v2", dict(m.metadata))

    def to_v2(self) -> Measurement:
        return Measurement(self.instrument_id, self.channel, self.timestamp_ns, self.data,
                           dict(self.metadata))


def scalar_fits(value: Any, dtype: str | np.dtype[Any]) -> bool:
    """Whether a scalar value is stored in a channel of ``dtype`` as what it says.

    The one rule for both flavors' scalar samples: a number converts when the channel stores
    that number, at the channel's precision. An integer goes into an integer channel whose
    range holds it, or into a float channel that holds it exactly (``2**53 + 1`` is no
    float64 and ``16777217`` no float32: each would be stored as its neighbour, a different
    count). A float goes into a float channel of any width, rounded to it (``0.1`` is stored
    as float32's nearest, which is what declaring float32 asks for), unless it is finite and
    the width makes it an infinity (``1e308`` in float32). A bool goes only into a bool
    channel, and a bool channel takes nothing else; anything else (a string, None, a float
    for an integer channel) is refused, not parsed or truncated, because a driver that
    returns it has a bug its author must see. :func:`scalar_refused` says which.

    Cheap, as it is asked of every sample whose type alone does not settle it: the common
    cases are a type test and a comparison or two; numpy converts the value only for a float
    wider than float64 (``np.longdouble``).
    """
    want = np.dtype(dtype)
    if type(value) is np.ndarray and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool | np.bool_):
        return want.kind == "b"
    if want.kind == "b":
        return False
    if isinstance(value, int | np.integer):
        if want.kind == "f":
            n = abs(int(value))
            return n < _EXACT_BELOW.get(want.itemsize, 0) or _float_holds(n, want)
        info = np.iinfo(want)
        return bool(info.min <= int(value) <= info.max)
    if not (isinstance(value, float | np.floating) and want.kind == "f"):
        return False
    size = 8 if isinstance(value, float) else value.itemsize  # (np.float64 is a float)
    if size <= want.itemsize:
        return True
    if size == 8 and want.itemsize == 4:
        return not _F32_INF_FROM <= abs(float(value)) < math.inf  # (Python's compare: fast)
    with np.errstate(over="ignore"):
        return not (np.isinf(want.type(value)) and np.isfinite(value))


#: the smallest magnitude a float64 becomes float32's infinity from: float32's largest
#: number, (2**24 - 1) * 2**104, plus half its last step (halfway rounds to the even 2**128)
_F32_INF_FROM = 2.0 ** 128 - 2.0 ** 103
#: float width in bytes -> the whole numbers below this bound it holds, all of them exactly
#: (2**significand bits)
_EXACT_BELOW = {8: 2 ** 53, 4: 2 ** 24}


def _float_holds(n: int, want: np.dtype[Any]) -> bool:
    """Whether the float dtype ``want`` holds the whole number ``n >= 0`` exactly: no more
    significant bits than its significand has, and no higher than its largest number."""
    info = np.finfo(want)
    significant = n >> ((n & -n).bit_length() - 1) if n else 0  # trailing zeros dropped
    return n.bit_length() <= info.maxexp and significant.bit_length() <= info.nmant + 1


def scalar_refused(where: str, dtype: str, value: Any) -> DataError:
    """The error for a value :func:`scalar_fits` refused: the channel (``where``:
    ``instrument.channel``), its dtype and the value, and for a number a float channel would
    change, what it would store instead, which says why a number was refused."""
    text = f"channel {where} is declared {dtype}, got {value_for_error(value)}"
    want = np.dtype(dtype)
    if want.kind != "f" or isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating):
        return DataError(text)
    try:
        with np.errstate(over="ignore"):
            held = want.type(value).item()
    except OverflowError:  # an int past float64's range
        return DataError(f"{text}, which is beyond {dtype}'s range")
    return DataError(f"{text}, which {dtype} would store as {held!r}")


def value_for_error(value: Any) -> str:
    """A refused value as an error message names it: its type and a short repr."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def check_against(spec: ChannelSpec, data: Data, instrument_id: str = "") -> None:
    """Refuse data that contradicts its channel declaration, naming the channel."""
    where = f"{instrument_id}.{spec.name}" if instrument_id else spec.name
    kind = kind_of(data)
    if kind != spec.kind:
        raise DataError(f"channel {where} is declared {spec.kind}, got a {kind}")
    if isinstance(data, Scalar):
        if not scalar_fits(data.value, spec.dtype):
            raise scalar_refused(where, spec.dtype, data.value)
    elif (dtype := dtype_of(data)) != np.dtype(spec.dtype):
        raise DataError(f"channel {where} is declared {spec.dtype}, got {dtype}")
    unit = data.unit
    if unit != spec.unit:
        raise DataError(f"channel {where} is declared in {spec.unit!r}, got {unit!r}")
    if isinstance(data, Spectrum):
        if data.values.ndim != 1 or data.axis.shape != data.values.shape:
            raise DataError(f"channel {where}: a spectrum needs 1-d values and an axis of the same "
                            f"length, got {data.values.shape} and {data.axis.shape}")
        if data.axis.dtype != np.float64:
            raise DataError(f"channel {where}: a spectrum axis is float64, got {data.axis.dtype}")
        if data.axis_unit != spec.axis_unit:
            raise DataError(f"channel {where}: axis declared in {spec.axis_unit!r}, "
                            f"got {data.axis_unit!r}")
        expected = spec.shape[0]
        if expected is not None and data.values.shape[0] != expected:
            raise DataError(f"channel {where} is declared with {expected} points, "
                            f"got {data.values.shape[0]}")
    elif isinstance(data, Image) and data.pixels.shape != spec.shape:
        raise DataError(f"channel {where} is declared {spec.shape}, got an image of "
                        f"{data.pixels.shape}")
