"""Run a plan (see :mod:`.steps`) on the shared port: blocking for v2, awaited for v4.

The two runners are mirror images; everything they do besides I/O is waiting
for the router (a condition variable for threads, a future for coroutines) and
turning a failure of the shared port into a DriverError that names the
instrument and the command.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from daqhub.instrument import DriverError
from daqhub.resources import PortIO, ResourceError, ResourceTimeoutError, SharedSerialPort
from daqhub.specs import InstrumentContext

from .router import BusRouter, Expectation
from .steps import (
    Collect,
    ElliptecPortError,
    ElliptecTimeout,
    Exchange,
    Pause,
    Plan,
    Send,
    Step,
    command_of,
)

T = TypeVar("T")

#: Longest share of the bus one waiter takes before queued traffic gets its turn.
PUMP_BUDGET_S = 0.25
#: Read budget of a Collect with no time to wait (a poll during a move).
PEEK_S = 0.01


def port_of(ctx: InstrumentContext) -> SharedSerialPort:
    if ctx.port is None:
        raise DriverError(ctx.instrument_id, "", "an Elliptec instrument needs a serial port "
                          "(transport 'serial')")
    return ctx.port


class _RunnerBase:
    def __init__(self, instrument_id: str, port: SharedSerialPort, router: BusRouter,
                 lock_timeout: float | None = None) -> None:
        self.instrument_id = instrument_id
        self.port = port
        self.router = router
        self.lock_timeout = port.default_timeout if lock_timeout is None else lock_timeout

    def _port_error(self, step: Step, exc: ResourceError) -> DriverError:
        command = command_of(step)
        if isinstance(exc, ResourceTimeoutError):
            return ElliptecTimeout(self.instrument_id, command,
                                   f"could not use serial port {self.port.name}: {exc}")
        return ElliptecPortError(self.instrument_id, command,
                                 f"serial port {self.port.name} failed: {exc}")

    def _transaction(self, step: Exchange | Send) -> tuple[Callable[[PortIO], Any],
                                                            dict[str, Any]]:
        """The transaction function of a step and the keywords to run it with."""
        router = self.router
        fn: Callable[[PortIO], Any]
        if isinstance(step, Exchange):
            def fn(io: PortIO) -> Any:
                return router.exchange(io, step.expect, step.reply_timeout, step.drop_stale)
            timeout = self.lock_timeout + step.reply_timeout
            what = step.expect.command.text
        else:
            def fn(io: PortIO) -> Any:
                return router.send(io, step.command, step.drop_stale)
            timeout = self.lock_timeout
            what = step.command.text
        return fn, {"owner": self.instrument_id, "timeout": timeout, "urgent": step.urgent,
                    "what": what}

    def _pump(self, expect: Expectation, remaining: float) -> tuple[Callable[[PortIO], Any],
                                                                     dict[str, Any]]:
        """A short read of the bus on behalf of a waiter nobody else is reading for."""
        budget = min(max(remaining, PEEK_S), PUMP_BUDGET_S)
        router, gate = self.router, self.port.gate

        def fn(io: PortIO) -> Any:
            return router.pump(io, expect, budget, lambda: gate.queue_depth)

        return fn, {"owner": self.instrument_id, "timeout": self.lock_timeout + budget,
                    "what": f"collect {expect.command.text}"}


class SyncRunner(_RunnerBase):
    """Executes plans in the calling thread (v2)."""

    def run(self, plan: Plan[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = self._execute(step)
            except ResourceError as exc:
                error = self._port_error(step, exc)
                error.__cause__ = exc

    def _execute(self, step: Step) -> Any:
        if isinstance(step, Exchange | Send):
            fn, kwargs = self._transaction(step)
            return self.port.transaction(fn, **kwargs)
        if isinstance(step, Collect):
            return self._collect(step.expect, step.timeout)
        if isinstance(step, Pause):
            time.sleep(step.seconds)
            return None
        raise TypeError(f"not a plan step: {step!r}")

    def _collect(self, expect: Expectation, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        pumped = False
        while True:
            line, version, reading = self.router.poll(expect)
            if line is not None:
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 and (pumped or reading):
                return None
            if reading:
                self.router.wait(version, min(remaining, PUMP_BUDGET_S))
                continue
            pumped = True
            fn, kwargs = self._pump(expect, remaining)
            line = self.port.transaction(fn, **kwargs)
            if line is not None:
                return line


class AsyncRunner(_RunnerBase):
    """Executes plans in the event loop (v4); the port's worker thread does the I/O."""

    async def run(self, plan: Plan[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = await self._execute(step)
            except ResourceError as exc:
                error = self._port_error(step, exc)
                error.__cause__ = exc

    async def _execute(self, step: Step) -> Any:
        if isinstance(step, Exchange | Send):
            fn, kwargs = self._transaction(step)
            return await self.port.atransaction(fn, **kwargs)
        if isinstance(step, Collect):
            return await self._collect(step.expect, step.timeout)
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return None
        raise TypeError(f"not a plan step: {step!r}")

    async def _collect(self, expect: Expectation, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        pumped = False
        while True:
            line, version, reading = self.router.poll(expect)
            if line is not None:
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 and (pumped or reading):
                return None
            if reading:
                await self.router.wait_async(version, min(remaining, PUMP_BUDGET_S))
                continue
            pumped = True
            fn, kwargs = self._pump(expect, remaining)
            line = await self.port.atransaction(fn, **kwargs)
            if line is not None:
                return line
