"""The sync caller's way through a gate: inline when it is free, else queued and woken once.

An uncontended sync caller (a V2 thread) takes the gate and runs the transaction in its own
thread. No thread hand-off, because a hand-off costs more than a pty or pyvisa-sim round trip.
This path is counted in bytecodes: against a pure-Python device each one costs about the same,
and a pyvisa-sim query is ~1,140 of them. So the gate is owned through a lock taken with one
non-blocking ``acquire`` and given back with one ``release`` (no mutex; :meth:`_let_go` and
:mod:`.gil` say why that is safe), the held set of an inline transaction lives in a per-thread
dict instead of a ContextVar, and the gate itself counts and times the transaction. Its speed
is guarded by ``bench/visa_throughput.py`` and ``bench/serial_overhead.py``, not by writing
steps out by hand: each step here is written once.

Ctrl-C (see :mod:`.sigint` for the deferral): a transaction the main thread runs is never split
from its reply. While the main thread is merely *queued* the interrupt is honoured at once and
the queued job is withdrawn (never sent); if the worker already started it, the main thread
first waits (bounded) for it to finish.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .entries import QUEUED, Job
from .errors import ResourceClosedError, ResourceTimeoutError
from .ordering import INLINE_HELD, Holding, What, context_held
from .sigint import SIGINT_GUARD
from .stats import TransactionStats
from .timeouts import MAX_TIMEOUT_S, checked_timeout
from .worker import Worker

A = TypeVar("A")
T = TypeVar("T")

_now = time.monotonic
_get_ident = threading.get_ident
_allocate_lock = threading.Lock
_running_loop = asyncio.events._get_running_loop
_set_running_loop = asyncio.events._set_running_loop
_MAIN_IDENT = threading.main_thread().ident


#: what :meth:`InlineGate.run_on_loop` returns when the gate was not free
NOT_TAKEN = object()


class InlineGate(Worker):
    """Blocking transactions for threads."""

    def run(self, runner: Callable[[A], T], arg: A, owner: str, what: What,
            timeout: float | None, urgent: bool, stats: TransactionStats) -> T:
        """Run ``runner(arg)`` with exclusive access; blocking, for threads.

        ``runner`` is the resource's own wrapper (disconnect handling) and ``arg`` what it
        runs, usually a function of the session. ``timeout`` (None: the gate's default) bounds
        the wait for the gate. The gate counts the transaction, its errors and its I/O time in
        ``stats``.
        """
        if timeout is not None and not 0.0 <= timeout <= MAX_TIMEOUT_S:
            checked_timeout(timeout)  # which refuses it (the test inlined: the hot path)
        ident = _get_ident()
        outer = INLINE_HELD.get(ident)
        held = context_held()
        if outer is not None:
            held = (*held, *outer)
        mine = self.holds_or_checks(held, owner) if held else False
        if not mine and _running_loop() is not None:
            raise RuntimeError(f"blocking transaction on {self.name} from a running event loop "
                               f"(owner {owner!r}); use the async API")
        # installed before the gate is taken, so no interrupt can land between take and try
        guarded = ident == _MAIN_IDENT and SIGINT_GUARD.enter()
        try:
            if mine:  # inside our own lease or transaction: already exclusive
                return stats.run_counted(runner, arg, _now())
            if urgent:
                stats.urgent += 1
            if self._urgent or self._normal or not self._owned.acquire(False):
                return self._wait_in_queue(runner, arg, owner, what, held, timeout, urgent,
                                           stats, guarded)
            holding = self._inline
            holding.owner = owner
            holding.what = what
            holding.held = held
            holding.since = start = _now()
            self._holder = holding
            # Inline holdings live in INLINE_HELD, not in the context's held set (leases and
            # queued jobs stay there): a ContextVar set and reset per transaction cost 5%.
            INLINE_HELD[ident] = (*outer, holding) if outer is not None else self._inline_chain
            try:
                if self._closed:
                    raise ResourceClosedError(f"{self.name} is closed; {owner!r} cannot use it")
                return stats.run_counted(runner, arg, start)
            finally:
                if outer is None:
                    del INLINE_HELD[ident]
                else:
                    INLINE_HELD[ident] = outer
                self._let_go(holding, held)
        finally:
            if guarded:
                SIGINT_GUARD.exit()

    def run_on_loop(self, runner: Callable[[A], T], arg: A, owner: str, what: What,
                    stats: TransactionStats) -> T | object:
        """Run an async caller's transaction in the loop's own thread, if the gate is free.

        Returns :data:`NOT_TAKEN` when it is held, queued for or closed, or when the task
        holds a gate (a lease; leased work keeps its own path): the caller hands the
        transaction to the worker instead. Only for what :mod:`.loopinline` judged quick (the
        loop waits meanwhile). Unlike :meth:`run`, what others queue meanwhile is passed on
        to the worker thread, never run here; and the transaction runs as on the worker (no
        running loop), so a blocking transaction it nests on another resource works as it
        would there.
        """
        ident = _get_ident()
        if (self._urgent or self._normal or self._closed or ident in INLINE_HELD
                or context_held() or not self._owned.acquire(False)):
            return NOT_TAKEN
        guarded = ident == _MAIN_IDENT and SIGINT_GUARD.enter()
        holding = self._inline
        holding.owner = owner
        holding.what = what
        holding.held = ()
        holding.since = start = _now()
        self._holder = holding
        INLINE_HELD[ident] = self._inline_chain
        loop = _running_loop()
        _set_running_loop(None)
        try:
            return stats.run_counted(runner, arg, start)
        finally:
            _set_running_loop(loop)
            del INLINE_HELD[ident]
            self._let_go(holding, (), False)
            if guarded:
                SIGINT_GUARD.exit()

    def _let_go(self, holding: Holding, held: tuple[Holding, ...], run_queued: bool = True
                ) -> None:
        """End of an inline transaction: give the gate back, then serve what was queued.

        The release needs no mutex because every queuer appends first and tries to take the
        gate second (:meth:`_enqueue_locked`): either it took the free gate itself, or it
        queued before the release and the check below sees it (see .gil).
        ``run_queued=False`` (a transaction run on an event loop's thread): what was queued
        goes to the worker, and no turn is handed to loops, this thread being one.
        """
        self._holder = None  # before the release: the next holder records itself after it
        self._last_holder = holding
        self._last_release = _now()
        self._owned.release()
        if self._urgent or self._normal or self._notice:  # _notice: closed, or loops use it
            if run_queued and not held and self._last_release >= self._turns.look_at:
                self._turn_for_loops(self._last_release)  # a loop due? (.handback)
            if not (self._urgent or self._normal or self._closed):
                return
            with self._mutex:
                if not self._owned.acquire(False):
                    return  # taken meanwhile: its holder will see the queue when it lets go
                if held or not run_queued:  # holding another gate, or on the loop's thread:
                    self._pass_on_locked()  # do not run others' work meanwhile
                    return
            self._combine()  # which also grants a lease at the head, or announces the closing

    def _wait_in_queue(self, runner: Callable[[A], T], arg: A, owner: str, what: What,
                       held: tuple[Holding, ...], timeout: float | None, urgent: bool,
                       stats: TransactionStats, guarded: bool) -> T:
        """Queue the transaction and wait (bounded) until a holder or the worker ran it."""
        job = Job(self, owner, what, held, runner, arg, stats, urgent,  # type: ignore[arg-type]
                  self.default_timeout if timeout is None else timeout)
        job.waiter = waiter = _allocate_lock()
        waiter.acquire()
        with self._mutex:
            self._enqueue_locked(job)
        if guarded:  # interruptible while merely queued, not while waiting for a reply
            SIGINT_GUARD.interruptible = SIGINT_GUARD.depth == 1
        try:
            try:
                got = waiter.acquire(True, job.timeout)
            finally:
                if guarded:
                    SIGINT_GUARD.interruptible = False
        except BaseException:  # Ctrl-C (or whatever the previous SIGINT handler raised)
            with self._mutex:
                if job.state == QUEUED:
                    self._withdraw_locked(job)  # never sent
                    raise
            try:
                self._finish_started(job, waiter)  # never split from its reply
            except ResourceTimeoutError:
                pass
            raise
        if not got:
            with self._mutex:
                if job.state == QUEUED:
                    raise self._expire_locked(job)
            self._finish_started(job, waiter)
        if job.exc is not None:
            exc, job.exc = job.exc, None
            raise exc
        return job.result

    def _finish_started(self, job: Job, waiter: Any) -> None:
        """A started job is never abandoned half-way: wait (bounded) for it to finish."""
        budget = max(0.0, job.since + job.timeout - _now()) if job.since else job.timeout
        if not waiter.acquire(True, budget):
            raise self._overrun_error(job)
