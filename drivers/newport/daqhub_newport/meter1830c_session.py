"""One 1830-C, flavor-neutral: the transactions both flavors run.

Units: the ``power`` channel is declared in the lab file's ``units``. A script may still
change the meter's units (``set_units``: the front panel and :meth:`power` follow), but the
channel keeps its declared unit: while they differ, a poll switches the meter to the channel's
unit for its ``D?`` and back afterwards, all in one transaction. dB and REL depend on the
reference stored in the meter, so converting a reading afterwards would not be possible.

What the meter is set to is a fact about the meter, not about one instrument object: two
instruments may name the same meter (a v2 and a v4 one while a lab migrates, each with its
own channel unit). So it lives in a :class:`MeterState` shared per port.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from daqhub.measurement import MetaValue

from .lineio import LineIO, Op, begin, parse_int
from .meter1830c_config import MeterSettings
from .meter1830c_protocol import (
    FILTER_NAMES,
    UNIT_NAMES,
    clear_status,
    filter_command,
    parse_reading,
    query,
    range_command,
    read_status,
    reading_flags,
    set_command,
    status_error,
    units_command,
    wavelength_command,
)

T = TypeVar("T")


class MeterState:
    """What one physical meter is set to, shared by every instrument on its port.

    ``units`` is None when unknown (a raw command may have changed them); a poll then sets
    the channel's unit and leaves it. Changed only inside transactions (under the port lock);
    the lock makes the value visible across the threads that run them.
    """

    KEY = "daqhub_newport.1830c.state"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._units: str | None = None

    @property
    def units(self) -> str | None:
        with self._lock:
            return self._units

    @units.setter
    def units(self, value: str | None) -> None:
        with self._lock:
            self._units = value


class MeterSession:
    """Everything about one meter that does not depend on the flavor.

    Each method returns an :class:`Op` whose function runs on whichever thread holds the port.
    """

    def __init__(self, instrument_id: str, settings: MeterSettings,
                 state: MeterState | None = None) -> None:
        self.id = instrument_id
        self.settings = settings
        self.channel_units = settings.units
        self.state = state if state is not None else MeterState()

    @property
    def meter_units(self) -> str | None:
        """The units the meter is set to (what :meth:`power` returns); None if unknown."""
        return self.state.units

    def _begin(self, io: LineIO) -> None:
        begin(io, self.settings.reply_timeout)

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> Op[None]:
        """Check the meter answers, clear old errors, set the lab's units and settings."""
        s = self.settings

        def connect(io: LineIO) -> None:
            self._begin(io)
            clear_status(io)
            parse_int(query(io, self.id, "U?"), self.id, "U?", 1, 4)  # is it a 1830-C?
            set_command(io, self.id, units_command(s.units, self.id))
            if s.wavelength_nm is not None:
                set_command(io, self.id, wavelength_command(s.wavelength_nm, self.id))
            if s.range is not None:
                set_command(io, self.id, range_command(s.range, self.id))
            if s.filter is not None:
                set_command(io, self.id, filter_command(s.filter, self.id))
            if s.attenuator is not None:
                set_command(io, self.id, f"A{int(s.attenuator)}")
            self.state.units = s.units

        return Op("connect", connect)

    def poll(self) -> Op[tuple[float, dict[str, MetaValue]]]:
        """One ``power`` sample in the channel's unit, flagged as the status byte says."""
        channel_cmd = units_command(self.channel_units, self.id)

        def poll(io: LineIO) -> tuple[float, dict[str, MetaValue]]:
            self._begin(io)
            meter_units = self.state.units
            if meter_units != self.channel_units:
                set_command(io, self.id, channel_cmd)
                self.state.units = self.channel_units
            value = parse_reading(query(io, self.id, "D?"), self.id)
            status = read_status(io, self.id)
            err = status_error(self.id, "D?", status)
            if err is not None:
                clear_status(io)
                raise err
            if meter_units is not None and meter_units != self.channel_units:
                set_command(io, self.id, units_command(meter_units, self.id))
                self.state.units = meter_units
            return value, reading_flags(status)

        return Op("poll D?", poll)

    # ------------------------------------------------------------------ PowerMeter
    def power(self) -> Op[float]:
        """The reading in the meter's current units (see :attr:`meter_units`)."""

        def power(io: LineIO) -> float:
            self._begin(io)
            return parse_reading(query(io, self.id, "D?"), self.id)

        return Op("D?", power)

    def set_units(self, units: str) -> Op[None]:
        cmd = units_command(units, self.id)

        def set_units(io: LineIO) -> None:
            self._begin(io)
            set_command(io, self.id, cmd)
            self.state.units = units

        return Op(cmd, set_units)

    def units(self) -> Op[str]:
        return self._query("U?", lambda text: UNIT_NAMES[parse_int(text, self.id, "U?", 1, 4)])

    def set_wavelength(self, nm: float) -> Op[None]:
        return self.set(wavelength_command(nm, self.id))

    def wavelength(self) -> Op[float]:
        return self._query("W?", lambda text: float(parse_int(text, self.id, "W?", 1, 9999)))

    def set_range(self, range_: int) -> Op[None]:
        """0 = auto range, 1 (most gain) .. 8 (least)."""
        return self.set(range_command(range_, self.id))

    def current_range(self) -> Op[int]:
        """The range in use (1..8), also while auto-ranging (the meter does not say which)."""
        return self._query("R?", lambda text: parse_int(text, self.id, "R?", 1, 8))

    def set_filter(self, speed: str) -> Op[None]:
        return self.set(filter_command(speed, self.id))

    def filter_speed(self) -> Op[str]:
        return self._query("F?", lambda text: FILTER_NAMES[parse_int(text, self.id, "F?", 1, 3)])

    def set_flag(self, letter: str, on: bool) -> Op[None]:
        """``A`` attenuator, ``Z`` zero, ``G`` go (run) / hold: ``<letter>1`` or ``<letter>0``."""
        return self.set(f"{letter}{int(on)}")

    def flag(self, letter: str) -> Op[bool]:
        query_cmd = f"{letter}?"
        return self._query(query_cmd, lambda text: parse_int(text, self.id, query_cmd, 0, 1) == 1)

    def status(self) -> Op[int]:
        """The raw status byte (``Q?``), without clearing anything."""

        def status(io: LineIO) -> int:
            self._begin(io)
            return read_status(io, self.id)

        return Op("Q?", status)

    # ------------------------------------------------------------------ generic
    def set(self, cmd: str) -> Op[None]:
        def set_(io: LineIO) -> None:
            self._begin(io)
            set_command(io, self.id, cmd)

        return Op(cmd, set_)

    def _query(self, cmd: str, parse: Callable[[str], T]) -> Op[T]:
        def ask(io: LineIO) -> T:
            self._begin(io)
            return parse(query(io, self.id, cmd))

        return Op(cmd, ask)

    def raw_command(self, text: str) -> Op[None]:
        """A command the driver does not wrap; one that may change the units makes them unknown."""

        def raw(io: LineIO) -> None:
            self._begin(io)
            if text.lstrip()[:1].upper() == "U":
                self.state.units = None
            set_command(io, self.id, text)

        return Op(text, raw)

    def raw_query(self, text: str) -> Op[str]:
        return self._query(text, str)
