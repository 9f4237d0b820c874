"""ESP300 axis, v4 flavor: async methods, each one :class:`AxisSession` operation."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from daqhub.instrument import DriverError, V4Actor, now_ns
from daqhub.schema import build_batch
from daqhub.specs import InstrumentContext

from .esp300_axis import AxisSession, ErrorRouter
from .esp300_config import AxisSettings
from .lineio import Op, arun_op, serial_port_of

T = TypeVar("T")
log = logging.getLogger(__name__)


class Esp300AxisV4(V4Actor):
    """One axis of an ESP300 (Motion capability) as an actor.

    The waits (:meth:`wait_until_done`, :meth:`home`) poll with ``asyncio.sleep`` between
    ``MD?`` queries, so a runtime that delivers control messages concurrently can run
    :meth:`stop` meanwhile; stop and abort take the port's urgent lane.
    """

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.serial_port = serial_port_of(ctx)
        self.axis_settings = AxisSettings.from_config(ctx.config)
        router = self.serial_port.shared(ErrorRouter.KEY, ErrorRouter)
        self.session = AxisSession(self.id, self.axis_settings, router)

    async def _do(self, op: Op[T]) -> T:
        return await arun_op(self.serial_port, self.id, op)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._do(self.session.connect())

    async def read(self) -> list[pa.RecordBatch]:
        position, meta = await self._do(self.session.poll())
        batch = build_batch(self.id, self.channel("position"), [now_ns()],
                            np.array([position], dtype=np.float64), metadata=[meta])
        return [batch]

    async def close(self) -> None:
        """Stop this axis: nothing should keep moving once nobody watches it."""
        try:
            await self.stop()
        except DriverError as exc:
            log.warning("%s: could not stop axis %d on close: %s", self.id, self.session.axis,
                        exc)

    # ------------------------------------------------------------------ Motion
    async def move_absolute(self, position: float) -> None:
        await self._do(self.session.move_absolute(position))

    async def move_relative(self, distance: float) -> None:
        await self._do(self.session.move_relative(distance))

    async def home(self, timeout: float = 30.0) -> None:
        """Search home (``OR``) and wait for it; on timeout stop the axis and raise."""
        await self._do(self.session.start_home())
        if not await self._wait(timeout):
            await self.stop()
            raise self.session.motion_timeout(timeout, homing=True)
        self.session.raise_faults()

    async def stop(self) -> None:
        await self._do(self.session.stop())

    async def position(self) -> float:
        return await self._do(self.session.query_float("TP?"))

    async def is_moving(self) -> bool:
        return not await self._do(self.session.motion_done())

    async def wait_until_done(self, timeout: float = 30.0) -> float:
        """Wait until the axis stops; raise what went wrong during the motion; final position."""
        if not await self._wait(timeout):
            raise self.session.motion_timeout(timeout, homing=False)
        self.session.raise_faults()
        return await self.position()

    async def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not await self._do(self.session.motion_done()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(self.axis_settings.poll_interval, left))
        return True

    # ------------------------------------------------------------------ more of the ESP300
    async def abort(self) -> None:
        """``AB``: abort the motion of EVERY axis of the controller at once (no deceleration)."""
        await self._do(self.session.abort())

    async def units(self) -> str:
        """The axis' unit as the controller reports it (``SN?``), e.g. ``mm`` or ``deg``."""
        return await self._do(self.session.units())

    async def motor_on(self) -> None:
        await self._do(self.session.set_value("MO"))

    async def motor_off(self) -> None:
        await self._do(self.session.set_value("MF"))

    async def set_velocity(self, velocity: float) -> None:
        await self._do(self.session.set_value("VA", velocity))

    async def velocity(self) -> float:
        return await self._do(self.session.query_float("VA?"))

    async def set_acceleration(self, acceleration: float) -> None:
        await self._do(self.session.set_value("AC", acceleration))

    async def acceleration(self) -> float:
        return await self._do(self.session.query_float("AC?"))

    async def set_limits(self, left: float, right: float) -> None:
        """Software travel limits (``SL``, ``SR``) in the axis' units."""
        await self._do(self.session.set_value("SL", left))
        await self._do(self.session.set_value("SR", right))

    async def limits(self) -> tuple[float, float]:
        return (await self._do(self.session.query_float("SL?")),
                await self._do(self.session.query_float("SR?")))

    async def raw_command(self, text: str) -> None:
        """Send a command this driver does not wrap (no axis prefix added); raise its errors."""
        await self._do(self.session.raw_command(text))

    async def raw_query(self, text: str) -> str:
        """Send a query this driver does not wrap and return its reply line."""
        return await self._do(self.session.raw_query(text))

    # ------------------------------------------------------------------ settings snapshot
    async def settings(self) -> dict[str, Any]:
        left, right = await self.limits()
        return {"model": "Newport ESP300", "units": await self.units(),
                "velocity": await self.velocity(), "acceleration": await self.acceleration(),
                "limits": [left, right], "position": await self.position()}
