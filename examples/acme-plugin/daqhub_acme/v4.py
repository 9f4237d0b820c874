"""ACME TC-1, v4 flavor: async methods, each one transaction of :mod:`.protocol`.

The transaction runs on the port's worker thread under the same lock as v2 traffic, so the
event loop never blocks on the serial line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pyarrow as pa
from daqhub.instrument import V4Actor, now_ns
from daqhub.schema import build_batch
from daqhub.specs import InstrumentContext

from . import protocol
from .config import Settings, serial_port_of
from .errors import port_errors
from .protocol import Identity, LineIO

T = TypeVar("T")


class Tc1V4(V4Actor):
    """An ACME TC-1 (Readable) as an actor of the V4 runtime."""

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.serial_port = serial_port_of(ctx)
        self.settings = Settings.from_config(ctx.config)
        self.identity: Identity | None = None

    async def _run(self, command: str, fn: Callable[[LineIO], T]) -> T:
        with port_errors(self.id, command):
            return await self.serial_port.atransaction(fn, owner=self.id, what=command)

    async def start(self) -> None:
        self.identity = await self._run(
            "*IDN?", lambda io: protocol.start(io, self.id, self.settings.setpoint_k))

    async def read(self) -> list[pa.RecordBatch]:
        reading = await self._run("TEMP?; HEAT?", lambda io: protocol.poll(io, self.id))
        t = [now_ns()]
        return [
            build_batch(self.id, self.channel("temperature"), t,
                        np.array([reading.temperature_k], dtype=np.float64)),
            build_batch(self.id, self.channel("heater"), t,
                        np.array([reading.heater_percent], dtype=np.float64)),
        ]

    async def set_setpoint(self, k: float) -> None:
        """The temperature then approaches ``k`` kelvin (3 to 500 K) over the load's time
        constant; the TC-1 refuses values out of range with error code 3."""
        command = protocol.setpoint_command(k)  # refuses nan and inf before sending
        await self._run(command, lambda io: protocol.set_setpoint(io, self.id, k))

    async def setpoint(self) -> float:
        return await self._run("SETP?", lambda io: protocol.setpoint(io, self.id))
