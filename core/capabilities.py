"""Capabilities: what a script or GUI may rely on without knowing the vendor.

An instrument type lists the capability names it implements
(``InstrumentType.capabilities``). A v2 class implements the methods below as
blocking methods; a v4 actor implements the same names as ``async`` methods.
Scripts reach either through the runtime's instrument handle, which calls the
method in the instrument's own thread or mailbox, so the script never needs to
know the flavor.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from .measurement import Measurement


@runtime_checkable
class Readable(Protocol):
    """Anything that has channels to read."""

    def read(self) -> list[Measurement]: ...


@runtime_checkable
class Motion(Protocol):
    """A single motion axis (a stage, a rotation mount, a slider).

    Positions are in the axis's own unit (mm, deg, slot index), which the
    instrument's ``position`` channel declares.
    """

    def move_absolute(self, position: float) -> None: ...
    def move_relative(self, distance: float) -> None: ...
    def home(self, timeout: float = 30.0) -> None: ...
    def stop(self) -> None: ...
    def position(self) -> float: ...
    def is_moving(self) -> bool: ...
    def wait_until_done(self, timeout: float = 30.0) -> float: ...


@runtime_checkable
class PowerMeter(Protocol):
    """An optical power meter."""

    def power(self) -> float: ...
    def set_wavelength(self, nm: float) -> None: ...
    def wavelength(self) -> float: ...
    def set_units(self, units: str) -> None: ...
    def set_range(self, range_: int) -> None: ...


@runtime_checkable
class PowerSupply(Protocol):
    """A programmable DC supply (one output)."""

    def set_output(self, on: bool) -> None: ...
    def set_voltage(self, volts: float) -> None: ...
    def set_current_limit(self, amps: float) -> None: ...
    def voltage(self) -> float: ...
    def current(self) -> float: ...


@runtime_checkable
class TemperatureController(Protocol):
    """A temperature controller: a setpoint it regulates to, and the temperature it reads.

    Temperatures are in the unit of the instrument's ``temperature`` channel (K, degC).
    """

    def set_setpoint(self, value: float) -> None: ...
    def setpoint(self) -> float: ...
    def temperature(self) -> float: ...


#: The core's capabilities; plugins add theirs through the ``daqhub_capabilities`` hook.
CAPABILITIES: dict[str, type] = {
    "Readable": Readable, "Motion": Motion, "PowerMeter": PowerMeter,
    "PowerSupply": PowerSupply, "TemperatureController": TemperatureController,
}


def methods_of(capability: type) -> list[str]:
    """The methods a capability promises (its public functions)."""
    return [n for n, v in vars(capability).items() if inspect.isfunction(v)
            and not n.startswith("_")]


def missing_methods(obj: object, capability: str,
                    known: Mapping[str, type] = CAPABILITIES) -> list[str]:
    """Methods of ``capability`` that ``obj`` (a v2 instance/class or v4 actor) lacks."""
    proto = known.get(capability)
    if proto is None:
        return [f"<unknown capability {capability!r}; known: {', '.join(known)}>"]
    return [n for n in methods_of(proto) if not callable(getattr(obj, n, None))]


def implementation_problems(cls: type, flavor: str, capabilities: Sequence[str],
                            known: Mapping[str, type] = CAPABILITIES) -> list[str]:
    """Why ``cls`` does not implement ``capabilities`` in the form ``flavor`` needs.

    The runtime calls a v2 method in the instrument's thread and awaits a v4 one in its
    actor: a blocking method in an actor would stall the event loop, a coroutine function
    in a v2 class would return an un-awaited coroutine, so both are load problems.
    """
    out = []
    for cap in capabilities:
        proto = known.get(cap)
        if proto is None:
            out.append(f"capability {cap!r} is unknown (known: {', '.join(sorted(known))})")
            continue
        for name in methods_of(proto):
            attr = getattr(cls, name, None)
            if not callable(attr):
                out.append(f"capability {cap}: method {cls.__name__}.{name} is missing")
            elif flavor == "v4" and not inspect.iscoroutinefunction(attr):
                out.append(f"capability {cap}: {cls.__name__}.{name} must be 'async def' in a "
                           f"v4 actor")
            elif flavor == "v2" and inspect.iscoroutinefunction(attr):
                out.append(f"capability {cap}: {cls.__name__}.{name} must be a blocking "
                           f"method in a v2 class, not 'async def'")
    return out
