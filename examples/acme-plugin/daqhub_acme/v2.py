"""ACME TC-1, v2 flavor: blocking methods, each one transaction of :mod:`.protocol`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from daqhub.instrument import V2Instrument, now_ns
from daqhub.measurement import Measurement, Scalar
from daqhub.specs import InstrumentContext

from . import protocol
from .config import Settings, serial_port_of
from .errors import port_errors
from .protocol import Identity, LineIO

T = TypeVar("T")


class Tc1V2(V2Instrument):
    """An ACME TC-1 (Readable), polled from the V2 runtime's thread."""

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.serial_port = serial_port_of(ctx)
        self.settings = Settings.from_config(ctx.config)
        self.identity: Identity | None = None

    def _run(self, command: str, fn: Callable[[LineIO], T]) -> T:
        with port_errors(self.id, command):
            return self.serial_port.transaction(fn, owner=self.id, what=command)

    def connect(self) -> None:
        self.identity = self._run(
            "*IDN?", lambda io: protocol.start(io, self.id, self.settings.setpoint_k))

    def read(self) -> list[Measurement]:
        reading = self._run("TEMP?; HEAT?", lambda io: protocol.poll(io, self.id))
        t = now_ns()
        return [
            Measurement(self.id, "temperature", t, Scalar(reading.temperature_k, "K")),
            Measurement(self.id, "heater", t, Scalar(reading.heater_percent, "%")),
        ]

    def set_setpoint(self, k: float) -> None:
        """The temperature then approaches ``k`` kelvin (3 to 500 K) over the load's time
        constant; the TC-1 refuses values out of range with error code 3."""
        command = protocol.setpoint_command(k)  # refuses nan and inf before sending
        self._run(command, lambda io: protocol.set_setpoint(io, self.id, k))

    def setpoint(self) -> float:
        return self._run("SETP?", lambda io: protocol.setpoint(io, self.id))
