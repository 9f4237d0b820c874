"""What waits in a gate's queue: transactions (:class:`Job`) and leases (:class:`Handoff`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .ordering import Holding, What
from .stats import TransactionStats

if TYPE_CHECKING:
    from .gate import Gate

# An entry's state: changed under the gate's mutex (RUNNING to DONE by whoever runs the job).
QUEUED = 0
RUNNING = 1
DONE = 2
CANCELLED = 3
GRANTED = 4

_now = time.monotonic


class Queued(Holding):
    """What every queue entry carries: its lane, age, state, outcome and how it is woken.

    A sync caller waits on ``waiter`` (a lock it already holds); an async one on ``fut`` of
    ``loop``, with ``timer`` bounding the wait.
    """

    __slots__ = ("urgent", "enqueued", "state", "result", "exc", "waiter", "loop", "fut", "timer",
                 "timeout")

    def _queue(self, urgent: bool, timeout: float) -> None:
        self.urgent = urgent
        self.enqueued = _now()
        self.state = QUEUED
        self.result: Any = None
        self.exc: BaseException | None = None
        self.waiter: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fut: asyncio.Future[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timeout = timeout


class Job(Queued):
    """A transaction waiting for, or being run by, a gate's worker or a combining holder."""

    __slots__ = ("runner", "arg", "stats")

    def __init__(self, gate: Gate, owner: str, what: What, held: tuple[Holding, ...],
                 runner: Callable[[Any], Any], arg: Any, stats: TransactionStats,
                 urgent: bool, timeout: float) -> None:
        Holding.__init__(self, gate, owner, what, held)
        self.runner = runner
        self.arg = arg
        self.stats = stats
        self._queue(urgent, timeout)


class Handoff(Queued):
    """A lease waiting for a gate to be handed over to it."""

    __slots__ = ()

    def __init__(self, gate: Gate, owner: str, held: tuple[Holding, ...], group: list[Gate],
                 urgent: bool, timeout: float) -> None:
        Holding.__init__(self, gate, owner, "lease", held, group)
        self._queue(urgent, timeout)


Entry = Job | Handoff
