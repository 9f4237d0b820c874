"""v4 (actor) flavor: async methods over the shared plans of :mod:`.axis`."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from daqhub.instrument import V4Actor, now_ns
from daqhub.schema import build_batch
from daqhub.specs import InstrumentContext

from .axis import Axis, Options
from .router import bus_router
from .runners import AsyncRunner, port_of
from .steps import Plan

T = TypeVar("T")


class ElliptecV4(V4Actor):
    """An ELLx module on a shared bus, as a v4 Motion actor (see :class:`.axis.Axis`)."""

    def __init__(self, ctx: InstrumentContext, model: str) -> None:
        super().__init__(ctx)
        port = port_of(ctx)
        router = bus_router(port)
        self.axis = Axis(self.id, Options.from_config(model, ctx.config), router)
        self._runner = AsyncRunner(self.id, port, router)
        self._spec = self.channel("position")

    async def _run(self, plan: Plan[T]) -> T:
        return await self._runner.run(plan)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._run(self.axis.connect())

    async def read(self) -> list[pa.RecordBatch]:
        position, moving = await self._run(self.axis.poll())
        batch = build_batch(self.id, self._spec, [now_ns()], np.array([position], np.float64),
                            metadata=[{"moving": moving}])
        return [batch]

    async def close(self) -> None:
        self.axis.close()

    # ------------------------------------------------------------------ Motion
    async def move_absolute(self, position: float) -> None:
        await self._run(self.axis.move_absolute(position))

    async def move_relative(self, distance: float) -> None:
        await self._run(self.axis.move_relative(distance))

    async def home(self, timeout: float = 30.0, direction: int = 0) -> float:
        return await self._run(self.axis.home(timeout, direction))

    async def stop(self) -> None:
        await self._run(self.axis.stop())

    async def position(self) -> float:
        return await self._run(self.axis.position())

    async def is_moving(self) -> bool:
        return await self._run(self.axis.is_moving())

    async def wait_until_done(self, timeout: float = 30.0) -> float:
        return await self._run(self.axis.wait_until_done(timeout))

    # ------------------------------------------------------------------ Elliptec extras
    async def jog_forward(self) -> None:
        await self._run(self.axis.jog(forward=True))

    async def jog_backward(self) -> None:
        await self._run(self.axis.jog(forward=False))

    async def jog_step(self) -> float:
        return await self._run(self.axis.jog_step())

    async def set_jog_step(self, step: float) -> None:
        await self._run(self.axis.set_jog_step(step))

    async def velocity(self) -> int:
        return await self._run(self.axis.velocity())

    async def set_velocity(self, percent: int) -> None:
        await self._run(self.axis.set_velocity(percent))

    async def status(self) -> int:
        return await self._run(self.axis.status())

    async def change_address(self, address: int | str) -> str:
        return await self._run(self.axis.change_address(address))

    async def save_user_data(self) -> None:
        await self._run(self.axis.save_user_data())

    async def identity(self) -> dict[str, Any]:
        return self.axis.identity()

    async def bus_stats(self) -> dict[str, int]:
        """Counters of the bus this module is on (shared by all its instruments)."""
        return dict(self.axis.router.stats)

    # ------------------------------------------------------------------ settings snapshot
    async def settings(self) -> dict[str, Any]:
        return {**self.axis.identity(), "velocity_percent": await self.velocity(),
                "position": await self.position()}
