"""Measurement formats shared by every flavor, driver and storage backend.

Three kinds of data exist: a scalar, a spectrum (values
over an axis) and an image. Each instrument type declares its channels up front
(:class:`ChannelSpec`), so storage can lay out its files before the first sample
arrives and converters can refuse data that contradicts the declaration instead
of writing something a reader would misinterpret later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    """Data contradicts the channel it claims to belong to."""


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
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            out.append("name must be non-empty letters, digits, '_' or '-'")
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


@dataclass(frozen=True)
class Scalar:
    value: Any  # a Python or numpy number; its numpy dtype is what gets stored
    unit: str = ""


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


@dataclass(frozen=True)
class Measurement:
    """One sample as a v2 driver emits it."""

    instrument_id: str
    channel: str
    timestamp_ns: int
    data: Data
    metadata: Mapping[str, MetaValue] = field(default_factory=dict)


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


def check_against(spec: ChannelSpec, data: Data, instrument_id: str = "") -> None:
    """Refuse data that contradicts its channel declaration, naming the channel."""
    where = f"{instrument_id}.{spec.name}" if instrument_id else spec.name
    kind = kind_of(data)
    if kind != spec.kind:
        raise DataError(f"channel {where} is declared {spec.kind}, got a {kind}")
    dtype = dtype_of(data)
    if dtype != np.dtype(spec.dtype):
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
