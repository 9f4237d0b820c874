"""v2 (direct) flavor: blocking methods over the shared plans of :mod:`.axis`."""

from __future__ import annotations

from typing import Any, TypeVar

from daqhub.instrument import V2Instrument, now_ns
from daqhub.measurement import Measurement, Scalar
from daqhub.specs import InstrumentContext

from .axis import Axis, Options
from .router import bus_router
from .runners import SyncRunner, port_of
from .steps import Plan

T = TypeVar("T")

class ElliptecV2(V2Instrument):
    """An ELLx module on a shared bus, as a v2 Motion instrument (see :class:`.axis.Axis`)."""

    def __init__(self, ctx: InstrumentContext, model: str) -> None:
        super().__init__(ctx)
        port = port_of(ctx)
        router = bus_router(port)
        self.axis = Axis(self.id, Options.from_config(model, ctx.config), router)
        self._runner = SyncRunner(self.id, port, router)
        self._spec = self.channel("position")

    def _run(self, plan: Plan[T]) -> T:
        return self._runner.run(plan)

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        self._run(self.axis.connect())

    def read(self) -> list[Measurement]:
        position, moving = self._run(self.axis.poll())
        return [Measurement(self.id, self._spec.name, now_ns(), Scalar(position, self._spec.unit),
                            {"moving": moving})]

    def close(self) -> None:
        self.axis.close()

    # ------------------------------------------------------------------ Motion
    def move_absolute(self, position: float) -> None:
        self._run(self.axis.move_absolute(position))

    def move_relative(self, distance: float) -> None:
        self._run(self.axis.move_relative(distance))

    def home(self, timeout: float = 30.0, direction: int = 0) -> float:
        return self._run(self.axis.home(timeout, direction))

    def stop(self) -> None:
        self._run(self.axis.stop())

    def position(self) -> float:
        return self._run(self.axis.position())

    def is_moving(self) -> bool:
        return self._run(self.axis.is_moving())

    def wait_until_done(self, timeout: float = 30.0) -> float:
        return self._run(self.axis.wait_until_done(timeout))

    # ------------------------------------------------------------------ Elliptec extras
    def jog_forward(self) -> None:
        self._run(self.axis.jog(forward=True))

    def jog_backward(self) -> None:
        self._run(self.axis.jog(forward=False))

    def jog_step(self) -> float:
        return self._run(self.axis.jog_step())

    def set_jog_step(self, step: float) -> None:
        self._run(self.axis.set_jog_step(step))

    def velocity(self) -> int:
        return self._run(self.axis.velocity())

    def set_velocity(self, percent: int) -> None:
        self._run(self.axis.set_velocity(percent))

    def status(self) -> int:
        return self._run(self.axis.status())

    def change_address(self, address: int | str) -> str:
        return self._run(self.axis.change_address(address))

    def save_user_data(self) -> None:
        self._run(self.axis.save_user_data())

    def identity(self) -> dict[str, Any]:
        return self.axis.identity()

    def bus_stats(self) -> dict[str, int]:
        """Counters of the bus this module is on (shared by all its instruments)."""
        return dict(self.axis.router.stats)

    # ------------------------------------------------------------------ settings snapshot
    def settings(self) -> dict[str, Any]:
        return {**self.identity(), "velocity_percent": self.velocity(),
                "position": self.position()}
