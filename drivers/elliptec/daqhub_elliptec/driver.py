"""Elliptec modules on the driver toolkit: one session class, both flavors.

Besides plain transactions, an Elliptec plan yields the toolkit's multi-drop bus steps
(:mod:`daqhub.driver.bus`): an exchange whose reply the router picks out of the shared line,
a send whose reply comes later, and the collection of such a deferred reply.
:class:`ElliptecModule` is one module as a Motion axis; the protocol logic is
:class:`.axis.Axis`'s plans.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, ClassVar

from daqhub.driver import Delegate, Sample, command
from daqhub.driver.bus import BusSession
from daqhub.specs import InstrumentContext

from .axis import Axis
from .models import BY_NAME
from .router import ROUTER_KEY, BusRouter


class ElliptecBus(BusSession):
    """A session on an Elliptec bus (discovery uses one on its own)."""

    router_class = BusRouter
    router_key = ROUTER_KEY


class ElliptecModule(ElliptecBus):
    """An ELLx module on a shared bus as a Motion axis (see :class:`.axis.Axis`)."""

    model_name: ClassVar[str] = ""
    capabilities = ("Motion", "Readable")

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.axis = Axis(self.id, BY_NAME[self.model_name], self.options, self.router)

    def connect(self) -> Any:
        return self.axis.connect()

    def poll(self) -> Generator[Any, Any, dict[str, Sample]]:
        position, moving = yield from self.axis.poll()
        return {"position": Sample(position, {"moving": moving})}

    def close(self) -> None:
        self.axis.close()

    def settings(self) -> Generator[Any, Any, dict[str, Any]]:
        """What the module said on connect, and its drive power where it has one."""
        out = self.axis.identity()
        if not self.axis.is_slider:
            out["velocity"] = yield from self.axis.velocity()
        return out

    # Motion, and the Elliptec extras the axis' plans carry out.
    motion = Delegate("axis", Axis, "move_absolute", "move_relative", "home", "stop",
                      "position", "is_moving", "wait_until_done", "jog_step", "set_jog_step",
                      "velocity", "set_velocity", "status", "change_address",
                      "save_user_data", "identity", "home_offset", "set_home_offset",
                      "motor_info", "frequency", "set_frequency", "search_frequency",
                      "isolate")

    @command
    def jog_forward(self) -> Any:
        """One jog step forward (``fw``; sliders: the next slot)."""
        return self.axis.jog(forward=True)

    @command
    def jog_backward(self) -> Any:
        """One jog step backward (``bw``; sliders: the previous slot)."""
        return self.axis.jog(forward=False)

    @command
    def bus_stats(self) -> dict[str, int]:
        """Counters of the bus this module is on (shared by all its instruments)."""
        return dict(self.router.stats)
