"""Both flavors, made from one :class:`~daqhub.driver.session.Session` class.

The v2 class and the v4 actor are generated, not written: each lifecycle method runs the
session's plan (blocking in the v2 thread, awaited in the v4 actor) and packages the polled
values (``Measurement`` objects for v2, Arrow batches for v4); each declared command becomes a
method of the same name, signature and docstring, sync in v2 and ``async`` in v4.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from ..instrument import LIFECYCLE, V2Instrument, V4Actor, now_ns
from ..measurement import (
    NO_METADATA,
    ChannelSpec,
    Data,
    DataError,
    Image,
    Measurement,
    RefusedValues,
    Scalar,
    Spectrum,
    check_against,
    scalar_fits,
)
from ..schema import ScalarRows, build_batch, scalar_array, scalar_rows
from ..specs import Flavor, InstrumentContext, InstrumentType
from .declare import declared_commands
from .session import Sample, Session, arun, run, unpolled_channels


def _split(value: Any, t: int) -> tuple[Any, Mapping[str, Any] | None, int]:
    if isinstance(value, Sample):
        return value.value, value.meta, t if value.timestamp_ns is None else value.timestamp_ns
    return value, None, t


def _declared(instrument: V2Instrument | V4Actor, name: str) -> ChannelSpec:
    """The declaration of a channel a poll returned, or the :class:`DataError` that refuses
    its value alone (a KeyError crashed the instrument, every poll's good values lost)."""
    try:
        return instrument.channel(name)
    except KeyError:
        declared = ", ".join(c.name for c in instrument.channels)
        raise DataError(f"{instrument.id}: its poll returned channel {name!r}, which it does "
                        f"not declare (declared: {declared})") from None


def _data(value: Any, spec: ChannelSpec, instrument_id: str) -> Data:
    """A polled value as the data of its channel (a bare number is in the declared unit),
    or the :class:`DataError` of ``measurement.check_against``, the rule the v2 bridge's
    converter applies, naming the instrument, the channel and what is wrong: the kind, the
    dtype (a scalar that does not fit, ``scalar_fits``), the unit, the axis or its unit, the
    shape. Both flavors ask it of every value their fast paths do not settle, so a value
    that cannot be stored as what it says is refused alike, with the same text."""
    data = value if isinstance(value, Scalar | Spectrum | Image) else Scalar(value, spec.unit)
    check_against(spec, data, instrument_id)
    return data


#: Scalar types whose fit to a channel may not depend on the value, each with its extremes:
#: a type fits a channel by type when both do (a float fits a float64 channel whatever it
#: is, a bool only a bool channel: ``measurement.scalar_fits``), so the v2 flavor decides it
#: once per channel; any other value is looked at each time.
_FIT_BY_TYPE: tuple[tuple[type, tuple[Any, Any]], ...] = (
    (float, (0.0, sys.float_info.max)),
    (np.float64, (np.float64(0), np.finfo(np.float64).max)),
    (np.float32, (np.float32(0), np.finfo(np.float32).max)),
    (bool, (False, True)), (np.bool_, (np.False_, np.True_)))


class SessionInstrument(V2Instrument):
    """The v2 flavor of a session: blocking, in the instrument's thread."""

    _session_class: ClassVar[type[Session]] = Session

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.session = self._session_class(ctx)
        # channel -> (its declaration, and for a scalar channel its dtype and the value
        # types that always fit it)
        self._channels: dict[str, tuple[ChannelSpec, np.dtype[Any] | None,
                                        frozenset[type]]] = {}

    def connect(self) -> None:
        run(self.session, self.session.connect())

    def read(self) -> list[Measurement]:
        """One poll: the current samples of this instrument's channels.

        A value its channel cannot hold (:func:`_data`) is refused alone, as in the v4
        flavor: :class:`RefusedValues` names it and carries the poll's other samples, which
        the runtime stores (a script's ``read`` gets the error)."""
        values = run(self.session, self.session.poll())
        t: int | None = None  # when the poll ended: read only for a value without its own
        out = []
        refused: list[tuple[str, DataError]] = []  # (channel, why) of each value refused
        channels = self._channels
        for name, item in values.items():
            if isinstance(item, Sample):  # _split, a call less per reading
                value, meta, at = item
            else:
                value, meta, at = item, None, None
            known = channels.get(name)
            if known is None:
                try:
                    known = self._channel(name)
                except DataError as exc:  # not a declared channel
                    refused.append((name, exc))
                    continue
            spec, dtype, fits = known
            # a scalar channel's number as declared passes at a look at its type (the usual
            # case) or at scalar_fits, check_against's rule for it; anything else is _data's
            if type(value) is Scalar:
                fine = value.unit == spec.unit and (
                    type(value.value) in fits or dtype is not None
                    and scalar_fits(value.value, dtype))
            elif fine := type(value) in fits or dtype is not None and scalar_fits(value, dtype):
                value = Scalar(value, spec.unit)
            if not fine:
                try:
                    value = _data(value, spec, self.id)
                except DataError as exc:
                    refused.append((name, exc))
                    continue
            if at is None:
                at = t = now_ns() if t is None else t
            out.append(Measurement(self.id, name, at, value,
                                   dict(meta) if meta else NO_METADATA))
        if refused:
            raise RefusedValues(out, refused)
        return out

    def _channel(self, name: str
                 ) -> tuple[ChannelSpec, np.dtype[Any] | None, frozenset[type]]:
        spec = _declared(self, name)
        dtype = np.dtype(spec.dtype) if spec.kind == "scalar" else None
        fits = frozenset() if dtype is None else frozenset(
            t for t, extremes in _FIT_BY_TYPE if all(scalar_fits(v, dtype) for v in extremes))
        known = self._channels[name] = (spec, dtype, fits)
        return known

    def close(self) -> None:
        run(self.session, self.session.close())

    def settings(self) -> dict[str, Any]:
        return run(self.session, self.session.settings())  # type: ignore[no-any-return]


class SessionActor(V4Actor):
    """The v4 flavor of a session: each plan awaited, its I/O on the resource's worker."""

    _session_class: ClassVar[type[Session]] = Session

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.session = self._session_class(ctx)
        # channel -> its one-row batch builder (a scalar channel's sample)
        self._rows: dict[str, ScalarRows] = {}

    async def start(self) -> None:
        await arun(self.session, self.session.connect())

    async def read(self) -> list[pa.RecordBatch]:
        """One poll: a batch per channel polled. A value its channel cannot hold is refused
        alone, as in the v2 flavor (:class:`RefusedValues`, with the poll's other batches)."""
        values = await arun(self.session, self.session.poll())
        t = now_ns()
        out = []
        refused: list[tuple[str, DataError]] = []
        for name, item in values.items():
            try:
                out.append(self._batch(name, t, item))
            except DataError as exc:
                refused.append((name, exc))
        if refused:
            raise RefusedValues(out, refused)
        return out

    def _batch(self, name: str, now: int, item: Any) -> pa.RecordBatch:
        """One polled value's batch, or its :class:`DataError`. A scalar channel's value
        goes straight to its :class:`ScalarRows` (which refuses, by ``scalar_fits``, one
        that does not fit) unless it is a :class:`Scalar` in another unit; anything else is
        checked by :func:`_data` first, the v2 flavor's rule."""
        value, meta, at = _split(item, now)
        row = self._rows.get(name)
        if row is not None:
            if type(value) is Scalar:
                if value.unit == row.spec.unit:
                    return row(at, value.value, meta)
            elif not isinstance(value, Spectrum | Image):
                return row(at, value, meta)
        spec = _declared(self, name)
        data = _data(value, spec, self.id)
        if spec.kind == "scalar" and row is None:
            self._rows[name] = scalar_rows(self.id, spec, "v4")
        return _batch(self.id, spec, at, data, meta)

    async def close(self) -> None:
        await arun(self.session, self.session.close())

    async def settings(self) -> dict[str, Any]:
        return await arun(self.session, self.session.settings())  # type: ignore[no-any-return]


def _batch(instrument_id: str, spec: ChannelSpec, at: int, value: Any,
           meta: Mapping[str, Any] | None) -> pa.RecordBatch:
    """One polled value as a unified-stream batch: built once, with its source column (the
    runtime publishes it as it is)."""
    t = [at]
    metadata = [dict(meta)] if meta else None
    if isinstance(value, Spectrum):
        return build_batch(instrument_id, spec, t, [value.values], axes=[value.axis],
                           metadata=metadata, source="v4")
    if isinstance(value, Image):
        return build_batch(instrument_id, spec, t, [value.pixels], metadata=metadata,
                           source="v4")
    if isinstance(value, Scalar):
        value = value.value
    return build_batch(instrument_id, spec, t, scalar_array(value, spec, instrument_id),
                       metadata=metadata, source="v4")


def _v2_method(name: str, impl: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(impl)
    def method(self: SessionInstrument, *args: Any, **kwargs: Any) -> Any:
        return run(self.session, impl(self.session, *args, **kwargs))
    method.__name__ = method.__qualname__ = name
    return method


def _v4_method(name: str, impl: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(impl)
    async def method(self: SessionActor, *args: Any, **kwargs: Any) -> Any:
        return await arun(self.session, impl(self.session, *args, **kwargs))
    method.__name__ = method.__qualname__ = name
    return method


def flavor_class(session_class: type[Session], flavor: Flavor,
                 base: type | None = None) -> type:
    """The generated v2 class or v4 actor of ``session_class`` (made once, then cached).

    ``base`` replaces :class:`SessionInstrument`/:class:`SessionActor` for a driver that
    needs flavor-specific behaviour beyond :meth:`Session.run_step`/``arun_step``.
    """
    key = f"_daqhub_{flavor}_class"
    cached = session_class.__dict__.get(key)
    if cached is not None and base is None:
        return cached  # type: ignore[no-any-return]
    parent = base or (SessionInstrument if flavor == "v2" else SessionActor)
    wrap = _v2_method if flavor == "v2" else _v4_method
    namespace: dict[str, Any] = {
        "_session_class": session_class, "__module__": session_class.__module__,
        "__doc__": f"{flavor} flavor of {session_class.__qualname__} (generated by "
                   f"daqhub.driver).\n\n{inspect.getdoc(session_class) or ''}"}
    for name, impl in declared_commands(session_class).items():
        if name in LIFECYCLE:
            raise TypeError(f"{session_class.__qualname__}: a command may not be named {name!r}"
                            f" (the runtime calls {', '.join(sorted(LIFECYCLE))} itself)")
        namespace[name] = wrap(name, impl)
    cls = type(f"{session_class.__name__}{flavor.upper()}", (parent,), namespace)
    if base is None:
        setattr(session_class, key, cls)
    return cls


def instrument_types(session_class: type[Session], **overrides: Any) -> list[InstrumentType]:
    """Both flavors' declarations of a session's type, read from its class attributes.

    ``overrides`` replaces any field (``name=``, ``factory`` is always the generated class)
    for a driver that declares several types from one session (models of one family).

    Raises TypeError, naming the class and the channel, for a declared channel the default
    poll would never fill (:func:`~daqhub.driver.session.unpolled_channels`): checked here,
    where a class becomes a type, not when it is defined, since a shared base declares
    channels its model subclasses fill (a channels function's: at the first poll).
    """
    channels = overrides.get("channels", session_class.channels)
    if isinstance(channels, Sequence):
        names = [c.name for c in channels if isinstance(c, ChannelSpec)]
        if unfilled := unpolled_channels(session_class, names):
            raise TypeError(unfilled)
    out = []
    for flavor in ("v2", "v4"):
        fields: dict[str, Any] = {
            "name": session_class.type_name, "flavor": flavor,
            "transport": session_class.transport,
            "factory": flavor_class(session_class, flavor),  # type: ignore[arg-type]
            "channels": session_class.channels, "description": session_class.description,
            "config_schema": session_class.config_schema,
            "capabilities": session_class.capabilities,
            "serial_settings": session_class.serial_settings}
        fields.update(overrides)
        out.append(InstrumentType(**fields))
    return out
