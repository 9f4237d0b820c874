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


CAPABILITIES: dict[str, type] = {
    "Readable": Readable, "Motion": Motion, "PowerMeter": PowerMeter,
    "PowerSupply": PowerSupply,
}


def missing_methods(obj: object, capability: str) -> list[str]:
    """Methods of ``capability`` that ``obj`` (a v2 instance/class or v4 actor) lacks."""
    proto = CAPABILITIES.get(capability)
    if proto is None:
        return [f"<unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}>"]
    wanted = [n for n, v in vars(proto).items() if inspect.isfunction(v)
              and not n.startswith("_")]
    return [n for n in wanted if not callable(getattr(obj, n, None))]
