"""Newport 1830-C, v2 flavor: blocking methods, each one :class:`MeterSession` operation."""

from __future__ import annotations

from typing import Any, TypeVar

from daqhub.instrument import V2Instrument, now_ns
from daqhub.measurement import Measurement, Scalar
from daqhub.specs import InstrumentContext

from .lineio import Op, run_op, serial_port_of
from .meter1830c_config import MeterSettings
from .meter1830c_session import MeterSession, MeterState

T = TypeVar("T")


class Meter1830cV2(V2Instrument):
    """A Newport 1830-C (PowerMeter capability), blocking."""

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.serial_port = serial_port_of(ctx)
        state = self.serial_port.shared(MeterState.KEY, MeterState)
        self.session = MeterSession(self.id, MeterSettings.from_config(ctx.config), state)

    def _do(self, op: Op[T]) -> T:
        return run_op(self.serial_port, self.id, op)

    def connect(self) -> None:
        self._do(self.session.connect())

    def read(self) -> list[Measurement]:
        value, meta = self._do(self.session.poll())
        unit = self.session.channel_units
        return [Measurement(self.id, "power", now_ns(), Scalar(value, unit), meta)]

    # ------------------------------------------------------------------ PowerMeter
    def power(self) -> float:
        """The reading in the meter's current units (:meth:`units`)."""
        return self._do(self.session.power())

    def set_wavelength(self, nm: float) -> None:
        self._do(self.session.set_wavelength(nm))

    def wavelength(self) -> float:
        return self._do(self.session.wavelength())

    def set_units(self, units: str) -> None:
        """``W``, ``dB``, ``dBm`` or ``REL`` for the display and :meth:`power`; the ``power``
        channel stays in the unit the lab file declares."""
        self._do(self.session.set_units(units))

    def units(self) -> str:
        return self._do(self.session.units())

    def set_range(self, range_: int) -> None:
        """0 = auto range, 1 (most gain) .. 8 (least)."""
        self._do(self.session.set_range(range_))

    # ------------------------------------------------------------------ more of the 1830-C
    def current_range(self) -> int:
        return self._do(self.session.current_range())

    def set_filter(self, speed: str) -> None:
        """``slow`` (16-reading average), ``medium`` (4) or ``fast`` (none)."""
        self._do(self.session.set_filter(speed))

    def filter_speed(self) -> str:
        return self._do(self.session.filter_speed())

    def set_attenuator(self, on: bool) -> None:
        self._do(self.session.set_flag("A", on))

    def attenuator(self) -> bool:
        return self._do(self.session.flag("A"))

    def set_zero(self, on: bool) -> None:
        """On: the next reading becomes an offset subtracted from all later ones."""
        self._do(self.session.set_flag("Z", on))

    def zero(self) -> bool:
        return self._do(self.session.flag("Z"))

    def store_reference(self) -> None:
        """``S``: the current reading becomes the dB/REL reference."""
        self._do(self.session.set("S"))

    def status(self) -> int:
        """The raw status byte (``Q?``)."""
        return self._do(self.session.status())

    def raw_command(self, text: str) -> None:
        """Send a command this driver does not wrap; raise what the status byte reports."""
        self._do(self.session.raw_command(text))

    def raw_query(self, text: str) -> str:
        """Send a query this driver does not wrap and return its reply line."""
        return self._do(self.session.raw_query(text))

    # ------------------------------------------------------------------ settings snapshot
    def settings(self) -> dict[str, Any]:
        return {"model": "Newport 1830-C", "units": self.units(),
                "wavelength_nm": self.wavelength(), "range": self.current_range(),
                "filter": self.filter_speed(), "attenuator": self.attenuator(),
                "zero": self.zero()}
