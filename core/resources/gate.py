"""Fair per-resource gates: one FIFO lock with an urgent lane per shared resource.

Every shared resource (a serial port, a VISA session, a GPIB board) is guarded by one
:class:`Gate`: a FIFO lock with an urgent lane, owner tracking and bounded waits. The gate is
written by concern, one module each (measured choices, see ``docs/architecture.md``):

* :mod:`.inline`: the sync caller's path. Uncontended, a V2 thread runs its transaction in its
  own thread (no hand-off); contended, it queues and is woken once, when its result is ready.
* :mod:`.worker`: the queue and the per-gate worker thread. Queued transactions are run back to
  back by whoever holds the gate (combining), and leases are handed the gate in FIFO order.
* :mod:`.handback`: finished async transactions and granted leases go back to their event
  loop in batches, one ``call_soon_threadsafe`` per batch.
* :mod:`.lanes` (the state and what errors report), :mod:`.entries` (what is queued),
  :mod:`.timeouts` (every wait bounded), :mod:`.gil` (where correctness rests on the GIL).

This module adds the async caller (a V4 coroutine: its transaction becomes a job, run on the
worker so the loop never does I/O), leases' acquisition, failing queued work and closing.
Job timeouts bound the wait *for the gate*; once started, a job is given the same time again
to finish, and is never abandoned half-way (a late result is discarded with
:class:`TransactionOverrunError`). A cancelled coroutine withdraws its job if it has not
started; a started one runs to completion on the worker and its result is dropped. Inside a
lease, the lease keeps the gate until then: its exit leaves the hand-over to the worker
(``release``, in :mod:`.worker`), so nobody else talks to the device mid-exchange.

Fairness between flavors is FIFO *at the gate*, and the gate also gives event loops the turns
the GIL would withhold: a V2 thread running inline transactions back to back keeps the GIL, so a
loop sharing the resource used to wait a switch interval (5 ms) or more for each poll timer and
again for each result. :mod:`.handback` hands the GIL over at both points (bounded by the switch
interval), so a coroutine's next request is queued in the order it would come with real I/O.
Measured figures are in ``docs/performance.md`` ("Fairness between flavors").

Deadlock freedom: a gate asks the lock-order checker (:mod:`.ordering`) before waiting, and
records itself in the caller's held set while a transaction or lease holds it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .entries import CANCELLED, GRANTED, QUEUED, RUNNING, Entry, Handoff, Job
from .errors import ResourceClosedError
from .gil import require_gil
from .inline import InlineGate
from .ordering import DEFAULT_CHECKER, Holding, LockOrderChecker, What, current_held, gate_order
from .stats import TransactionStats
from .timeouts import DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S, checked_timeout

__all__ = ["DEFAULT_TIMEOUT_S", "MAX_TIMEOUT_S", "Gate", "dump_gates"]

require_gil()

T = TypeVar("T")
A = TypeVar("A")

_now = time.monotonic
_allocate_lock = threading.Lock

_REGISTRY: weakref.WeakSet[Gate] = weakref.WeakSet()


class Gate(InlineGate):
    """One FIFO lock with an urgent lane, a combining worker and owner tracking.

    The worker thread is started on demand and exits after ``idle_exit_s`` without work, so
    an idle process keeps no thread per resource.
    """

    def __init__(self, name: str, order_key: tuple[int, str], *,
                 checker: LockOrderChecker | None = DEFAULT_CHECKER,
                 default_timeout: float = DEFAULT_TIMEOUT_S, idle_exit_s: float = 5.0) -> None:
        super().__init__(name, order_key, checker, default_timeout, idle_exit_s)
        _REGISTRY.add(self)

    # ------------------------------------------------------------------ async transactions
    async def arun(self, runner: Callable[[A], T], arg: A, owner: str, what: What,
                   timeout: float | None, urgent: bool, stats: TransactionStats) -> T:
        """Run ``runner(arg)`` on the gate's worker thread; the event loop never blocks."""
        timeout = self.default_timeout if timeout is None else checked_timeout(timeout)
        held = current_held()
        direct = self.holds_or_checks(held, owner) if held else False
        loop = asyncio.get_running_loop()
        self._uses(loop)
        job = Job(self, owner, what, held, runner, arg, stats, urgent, timeout)
        job.loop = loop
        job.fut = fut = loop.create_future()
        if urgent:
            stats.urgent += 1
        with self._mutex:
            if not direct:
                self._enqueue_locked(job)
            elif self._closed:
                raise ResourceClosedError(f"{self.name} is closed; {owner!r} cannot use it")
            else:  # our own lease holds the gate: run at once, outside the queue
                self._direct.append(job)
                self._wake_worker_locked()
        job.timer = loop.call_later(timeout, self._async_timeout, job)
        try:
            return await fut
        except asyncio.CancelledError:
            if job.state == QUEUED:
                with self._mutex:
                    if job.state == QUEUED:
                        self._withdraw_locked(job)
            raise
        finally:
            timer = job.timer
            if timer is not None:
                timer.cancel()

    def _async_timeout(self, entry: Entry) -> None:
        entry.timer = None
        fut = entry.fut
        assert fut is not None and entry.loop is not None
        with self._mutex:
            state = entry.state
            if state == QUEUED:
                err = self._expire_locked(entry)
            elif state == RUNNING and isinstance(entry, Job):
                entry.timer = entry.loop.call_later(entry.timeout, self._async_overrun, entry)
                return
            else:
                return
        if not fut.done():
            fut.set_exception(err)

    def _async_overrun(self, job: Job) -> None:
        job.timer = None
        fut = job.fut
        if job.state == RUNNING and fut is not None and not fut.done():
            fut.set_exception(self._overrun_error(job))

    # ------------------------------------------------------------------ leases
    def _take_free_locked(self, holding: Holding) -> bool:
        """Take a free gate with nobody queued for a lease at once; False if it has to wait."""
        if self._closed:
            raise ResourceClosedError(f"{self.name} is closed; {holding.owner!r} cannot use it")
        if not (self._urgent or self._normal) and self._owned.acquire(False):
            holding.since = _now()
            self._holder = holding
            return True
        return False

    def _handoff(self, holding: Holding, timeout: float, urgent: bool) -> Handoff:
        return Handoff(self, holding.owner, holding.held,
                       holding.group if holding.group is not None else [], urgent, timeout)

    def _abandon_locked(self, entry: Handoff) -> None:
        """The lease's wait was interrupted: withdraw it, or give back a gate just granted."""
        if entry.state == QUEUED:
            self._withdraw_locked(entry)
        elif entry.state == GRANTED:
            self._pass_on_locked()

    def _granted_locked(self, holding: Holding, entry: Handoff) -> None:
        """The gate was handed over: the lease's own Holding becomes the record."""
        holding.since = entry.since
        self._holder = holding

    def acquire(self, holding: Holding, timeout: float, urgent: bool = False) -> None:
        """Take the gate for a lease (blocking, bounded)."""
        with self._mutex:
            if self._take_free_locked(holding):
                return
            entry = self._handoff(holding, timeout, urgent)
            entry.waiter = waiter = _allocate_lock()
            waiter.acquire()
            self._enqueue_locked(entry)
        try:
            waiter.acquire(True, max(0.0, timeout))
        except BaseException:
            with self._mutex:
                self._abandon_locked(entry)
            raise
        with self._mutex:
            if entry.state == QUEUED:
                raise self._expire_locked(entry)
            if entry.state == CANCELLED:
                assert entry.exc is not None
                raise entry.exc
            self._granted_locked(holding, entry)

    async def aacquire(self, holding: Holding, timeout: float, urgent: bool = False) -> None:
        """Take the gate for a lease from a coroutine (bounded, cancellable)."""
        loop = asyncio.get_running_loop()
        with self._mutex:
            if self._take_free_locked(holding):
                return
            entry = self._handoff(holding, timeout, urgent)
            entry.loop = loop
            entry.fut = fut = loop.create_future()
            self._enqueue_locked(entry)
        entry.timer = loop.call_later(max(0.0, timeout), self._async_timeout, entry)
        try:
            await fut
        except BaseException:
            with self._mutex:
                self._abandon_locked(entry)
            raise
        finally:
            timer = entry.timer
            if timer is not None:
                timer.cancel()
        with self._mutex:
            self._granted_locked(holding, entry)

    # ------------------------------------------------------------------ failure and shutdown
    def fail_queued(self, make_error: Callable[[Entry], BaseException],
                    runner: Callable[..., Any] | None = None) -> int:
        """Fail queued transactions (not leases); only those of ``runner`` if given."""
        failed: list[Job] = []
        with self._mutex:
            for lane in (self._urgent, self._normal, self._direct):
                keep: list[Entry] = []
                for entry in lane:
                    if type(entry) is Job and (runner is None or entry.runner == runner):
                        entry.state = CANCELLED
                        entry.exc = make_error(entry)
                        failed.append(entry)
                    else:
                        keep.append(entry)
                if len(keep) != len(lane):
                    lane.clear()
                    lane.extend(keep)  # type: ignore[arg-type]
        for job in failed:
            self._deliver(job)
        return len(failed)

    def close(self, timeout: float) -> bool:
        """Refuse new work, fail what is queued, wait (bounded) for the holder to finish.

        Returns False when the holder did not finish in time (the gate is then left marked
        closed, and whatever runs keeps running).
        """
        deadline = _now() + timeout
        with self._mutex:
            self._closed = self._notice = True
            queued = list(self._urgent) + list(self._normal) + list(self._direct)
            self._urgent.clear()
            self._normal.clear()
            self._direct.clear()
            for entry in queued:
                entry.state = CANCELLED
                entry.exc = ResourceClosedError(
                    f"{self.name} was closed while {entry.owner!r} waited for it")
        for entry in queued:
            self._deliver(entry)
        with self._mutex:
            while self._owned.locked():
                remaining = deadline - _now()
                if remaining <= 0 or not self._idle.wait(remaining):
                    break
            idle = not self._owned.locked()
            worker = self._worker
            if worker is not None and self._worker_idle:
                self._wake.notify()
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, deadline - _now()))
            idle = idle and not worker.is_alive()
        return idle


def dump_gates(gates: Iterable[Gate] | None = None) -> str:
    """Every gate (or the given ones): holder, waiters, worker state. For humans, not parsing."""
    chosen = sorted(_REGISTRY if gates is None else gates, key=gate_order)
    now = _now()
    lines: list[str] = []
    for gate in chosen:
        lines.extend(gate.describe(now))
    return "\n".join(lines) if lines else "(no resources)"
