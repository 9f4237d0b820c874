"""Elliptec modules on the driver toolkit: one session class, both flavors.

:class:`ElliptecBus` is the flavor-specific hook the toolkit gives: besides plain
transactions, an Elliptec plan yields the bus router's own steps (:mod:`.steps`): an
exchange whose reply the router picks out of a shared multi-drop line, a send whose reply
comes later, and the *collection* of such a deferred reply, which waits on the router
(a condition variable in v2, a future in v4) and reads the bus itself when nobody else
is. :class:`ElliptecModule` is one module as a Motion axis; the protocol logic is
:class:`.axis.Axis`'s plans.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any, ClassVar

from daqhub.driver import Delegate, Sample, Session, command
from daqhub.resources import PortIO
from daqhub.specs import InstrumentContext

from .axis import Axis, Options
from .router import BusRouter, Expectation, bus_router
from .steps import Collect, Exchange, Send, command_of

#: Longest share of the bus one waiter takes before queued traffic gets its turn.
PUMP_BUDGET_S = 0.25
#: Read budget of a Collect with no time to wait (a poll during a move).
PEEK_S = 0.01
Call = tuple[Callable[[PortIO], Any], dict[str, Any]]


class ElliptecBus(Session):
    """A session on an Elliptec bus: runs the router's steps as well as the toolkit's."""

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.router: BusRouter = bus_router(self.resource)
        self.lock_timeout: float = self.resource.default_timeout

    def step_command(self, step: Any) -> str:
        return command_of(step) if isinstance(step, Exchange | Send | Collect) else \
            super().step_command(step)

    def _bus_call(self, step: Exchange | Send) -> Call:
        router = self.router
        fn: Callable[[PortIO], Any]
        if isinstance(step, Exchange):
            def fn(io: PortIO) -> Any:
                return router.exchange(io, step.expect, step.reply_timeout, step.drop_stale)
            timeout = self.lock_timeout + step.reply_timeout
        else:
            def fn(io: PortIO) -> Any:
                return router.send(io, step.command, step.drop_stale)
            timeout = self.lock_timeout
        return fn, {"owner": self.id, "timeout": timeout, "urgent": step.urgent,
                    "what": command_of(step)}

    def _pump(self, expect: Expectation, remaining: float) -> Call:
        """A short read of the bus on behalf of a waiter nobody else is reading for."""
        budget = min(max(remaining, PEEK_S), PUMP_BUDGET_S)
        router, gate = self.router, self.resource.gate

        def fn(io: PortIO) -> Any:
            return router.pump(io, expect, budget, lambda: gate.queue_depth)

        return fn, {"owner": self.id, "timeout": self.lock_timeout + budget,
                    "what": f"collect {expect.command.text}"}

    def _collecting(self, step: Collect) -> Generator[tuple[str, Any], Any, Any]:
        """The wait for a deferred reply, written once: yields ("wait", (version, s)) to
        block on the router, ("pump", call) to read the bus; returns the line or None."""
        deadline = time.monotonic() + step.timeout
        pumped = False
        while True:
            line, version, reading = self.router.poll(step.expect)
            if line is not None:
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 and (pumped or reading):
                return None
            if reading:
                yield "wait", (version, min(remaining, PUMP_BUDGET_S))
                continue
            pumped = True
            line = yield "pump", self._pump(step.expect, remaining)
            if line is not None:
                return line

    def run_step(self, step: Any) -> Any:
        if isinstance(step, Exchange | Send):
            fn, kw = self._bus_call(step)
            return self.resource.transaction(fn, **kw)
        if not isinstance(step, Collect):
            return super().run_step(step)
        wait = self._collecting(step)
        result: Any = None
        try:
            while True:
                kind, arg = wait.send(result)
                if kind == "wait":
                    self.router.wait(*arg)
                    result = None
                else:
                    fn, kw = arg
                    result = self.resource.transaction(fn, **kw)
        except StopIteration as stop:
            return stop.value

    async def arun_step(self, step: Any) -> Any:
        if isinstance(step, Exchange | Send):
            fn, kw = self._bus_call(step)
            return await self.resource.atransaction(fn, **kw)
        if not isinstance(step, Collect):
            return await super().arun_step(step)
        wait = self._collecting(step)
        result: Any = None
        try:
            while True:
                kind, arg = wait.send(result)
                if kind == "wait":
                    await self.router.wait_async(*arg)
                    result = None
                else:
                    fn, kw = arg
                    result = await self.resource.atransaction(fn, **kw)
        except StopIteration as stop:
            return stop.value


class ElliptecModule(ElliptecBus):
    """An ELLx module on a shared bus as a Motion axis (see :class:`.axis.Axis`)."""

    model_name: ClassVar[str] = ""
    capabilities = ("Motion", "Readable")

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.axis = Axis(self.id, Options.from_config(self.model_name, ctx.config), self.router)

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
