"""Fair per-resource gates: one FIFO lock with an urgent lane per shared resource.

Every shared resource (a serial port, a VISA session, a GPIB board) is guarded by one
:class:`Gate`: a FIFO lock with an urgent lane, owner tracking and bounded waits.

How a transaction runs (measured choices, see design.md §3):

* **Uncontended sync caller** (V2 thread): takes the gate and runs the transaction in its own
  thread. No thread hand-off, because a hand-off costs more than a pty or pyvisa-sim round trip.
  This path is counted in bytecodes: against a pure-Python device each one costs about the
  same, and a pyvisa-sim query is ~1,140 of them. So the gate is owned through a lock taken
  with one non-blocking ``acquire`` and given back with one ``release`` (no mutex; see
  :meth:`Gate._let_go` for why that is safe), the held set of an inline transaction lives in
  a per-thread dict instead of a ContextVar, and the gate itself counts and times the
  transaction. ~180 bytecodes in all (``bench/visa_throughput.py``).
* **Anything that has to wait, and every async caller** (V4 coroutine): becomes a *job* in the
  gate's queue. Whoever holds the gate runs queued jobs back to back (combining): a sync caller
  runs up to ``COMBINE_BUDGET`` of them after its own transaction, then the per-gate worker
  thread takes over (it also runs async jobs on an idle gate, so the loop never does I/O).
  A contended resource thus changes hands once per batch instead of once per transaction; each
  waiting thread is woken once, when its own result is ready. Finished async jobs are handed
  back to their loop in batches (``_hold_back``): one ``call_soon_threadsafe`` per batch, sent
  when the holder runs out of work, or after ``POST_BATCH_MAX`` jobs or ``POST_BATCH_AGE_S``.
  Job timeouts bound the wait *for the gate*; once started, a job is given the same time again
  to finish, and is never abandoned half-way (a late result is discarded with
  :class:`TransactionOverrunError`).
* **Trade-off of combining:** a transaction may run on another caller's thread or on the worker,
  never necessarily on its own. pyvisa (all backends here) and pyserial sessions are not bound to
  the thread that opened them, so this is safe for them; a thread-affine library would need its
  own single-thread runner (all of its I/O on one thread), not this gate alone.
* **Fairness between flavors** is FIFO *at the gate*; what the gate cannot change is the GIL. A
  V2 thread that holds the GIL finds the gate free and runs inline, hundreds of queries per
  switch interval (5 ms), while each V4 query needs the loop thread to get the GIL once per
  round trip. Measured (4 V2 threads + 4 coroutines on one pyvisa-sim resource): ~27,000 inline
  V2 queries/s against ~330 queued V2 and ~380 V4 jobs/s, the V4 ones posted back in one batch
  per round trip of ~10 ms; coroutines get ~2% of the queries. Shortening the switch interval
  to 1 ms raised their share to ~6% but cut total throughput by a quarter, so the gate does not
  trade throughput for it.
* **Leases** (several transactions or resources without interleaving) are handed over directly:
  the releasing side grants the gate to the next waiter in FIFO order.

The urgent lane is served before the normal FIFO (stop/abort for motion controllers); it cannot
pre-empt a transaction or lease already running.

Deadlock freedom: a gate asks the lock-order checker (:mod:`.ordering`) before waiting, and
records itself in the caller's held set while a transaction or lease holds it.

Ctrl-C (see :mod:`.sigint` for the deferral): a transaction the main thread runs is never split
from its reply. While the main thread is merely *queued* the interrupt is honoured at once and
the queued job is withdrawn (never sent); if the worker already started it, the main thread
first waits (bounded) for it to finish. Async callers are cancelled the asyncio way: a cancelled
coroutine withdraws its job if it has not started; a started one runs to completion on the
worker and its result is dropped.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .errors import (
    ResourceClosedError,
    ResourceTimeoutError,
    TransactionOverrunError,
)
from .ordering import (
    _HELD,
    _INLINE,
    DEFAULT_CHECKER,
    Holding,
    LockOrderChecker,
    What,
    _gate_order,
    current_held,
)
from .sigint import _SIGINT
from .stats import TransactionStats

T = TypeVar("T")
A = TypeVar("A")

DEFAULT_TIMEOUT_S = 2.0
# Waits are bounded: "forever" (None, -1, inf) is refused rather than silently allowed.
MAX_TIMEOUT_S = 3600.0
# How many queued transactions a sync caller runs for others after its own (see Gate._combine).
COMBINE_BUDGET = 16
# Finished async transactions are handed back to their loop in batches (see Gate._hold_back).
POST_BATCH_MAX = 64
POST_BATCH_AGE_S = 0.002
SLOW_JOB_S = 0.0005

_QUEUED = 0
_RUNNING = 1
_DONE = 2
_CANCELLED = 3
_GRANTED = 4

_now = time.monotonic
_get_ident = threading.get_ident
_allocate_lock = threading.Lock
_running_loop = asyncio.events._get_running_loop
_MAIN_IDENT = threading.main_thread().ident


class _Queued(Holding):
    """What every queue entry carries: its lane, age, state, outcome and how it is woken."""

    __slots__ = ("urgent", "enqueued", "state", "result", "exc", "waiter", "loop", "fut", "timer",
                 "timeout")

    def _queue(self, urgent: bool, timeout: float) -> None:
        self.urgent = urgent
        self.enqueued = _now()
        self.state = _QUEUED
        self.result: Any = None
        self.exc: BaseException | None = None
        self.waiter: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fut: asyncio.Future[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timeout = timeout


class _Job(_Queued):
    """A transaction waiting for, or being run by, a gate's worker."""

    __slots__ = ("runner", "arg", "stats")

    def __init__(self, gate: Gate, owner: str, what: What, held: tuple[Holding, ...],
                 runner: Callable[[Any], Any], arg: Any, stats: TransactionStats,
                 urgent: bool, timeout: float) -> None:
        Holding.__init__(self, gate, owner, what, held)
        self.runner = runner
        self.arg = arg
        self.stats = stats
        self._queue(urgent, timeout)


class _Handoff(_Queued):
    """A lease waiting for a gate to be handed over to it."""

    __slots__ = ()

    def __init__(self, gate: Gate, owner: str, held: tuple[Holding, ...], group: list[Gate],
                 urgent: bool, timeout: float) -> None:
        Holding.__init__(self, gate, owner, "lease", held, group)
        self._queue(urgent, timeout)


_Entry = _Job | _Handoff

_REGISTRY: weakref.WeakSet[Gate] = weakref.WeakSet()


class Gate:
    """One FIFO lock with an urgent lane, a combining worker and owner tracking.

    The worker thread is started on demand and exits after ``idle_exit_s`` without work, so
    an idle process keeps no thread per resource.
    """

    def __init__(self, name: str, order_key: tuple[int, str], *,
                 checker: LockOrderChecker | None = DEFAULT_CHECKER,
                 default_timeout: float = DEFAULT_TIMEOUT_S, idle_exit_s: float = 5.0) -> None:
        self.name = name
        self.default_timeout = _checked_timeout(default_timeout)
        self.order_key = order_key
        self.checker = checker
        self.note: Callable[[], str] | None = None
        self._idle_exit_s = idle_exit_s
        self._mutex = threading.Lock()
        self._wake = threading.Condition(self._mutex)
        self._idle = threading.Condition(self._mutex)
        # Held while the gate is owned (inline caller, lease, worker draining, combining caller).
        # A lock rather than a flag under the mutex, so that a free gate is taken with one
        # non-blocking acquire and given back with one release (see run()).
        self._owned = threading.Lock()
        self._draining = False
        self._holder: Holding | None = None
        self._last_holder: Holding | None = None
        # The record of an inline sync holder, reused: there is at most one holder at a time, so
        # one object per gate suffices, and allocating one per transaction was measurable.
        # Readers only describe it (timeout and lock-order messages), under the mutex or while
        # it is the holder; the next inline holder overwrites it only after taking the gate.
        self._inline = Holding(self, "", "", ())
        self._inline_chain = (self._inline,)  # its _INLINE entry when no outer inline one
        self._last_release = 0.0
        self._urgent: deque[_Entry] = deque()
        self._normal: deque[_Entry] = deque()
        self._direct: deque[_Job] = deque()
        self._worker: threading.Thread | None = None
        self._worker_idle = False
        self._closed = False
        self._post_lock = threading.Lock()
        self._posts: dict[asyncio.AbstractEventLoop, list[_Entry]] = {}
        self._finished: list[_Job] = []
        self._finished_since = 0.0
        self.max_queue_depth = 0
        _REGISTRY.add(self)

    def __repr__(self) -> str:
        return f"<Gate {self.name}>"

    # ------------------------------------------------------------------ introspection
    @property
    def queue_depth(self) -> int:
        return len(self._urgent) + len(self._normal)

    @property
    def closed(self) -> bool:
        return self._closed

    def holder_description(self, now: float | None = None) -> str | None:
        holder = self._holder
        if holder is None:
            return None
        return holder.describe(_now() if now is None else now)

    def describe(self, now: float | None = None) -> list[str]:
        """Holder and waiters, one line each: the body of the diagnostic dump."""
        now = _now() if now is None else now
        with self._mutex:
            holder = self._holder
            waiting = [("urgent", e) for e in self._urgent] + [("", e) for e in self._normal]
            worker = self._worker
            worker_idle = self._worker_idle
            draining = self._draining
        lines = [f"{self.name} order={self.order_key}"
                 + (" CLOSED" if self._closed else "")
                 + (f" [{self.note()}]" if self.note is not None else "")]
        if holder is not None:
            lines.append(f"  holder: {holder.describe(now)}")
        elif draining:
            lines.append("  holder: worker (between queued transactions)")
        else:
            lines.append("  holder: none")
        for lane, entry in waiting:
            kind = "lease" if isinstance(entry, _Handoff) else "transaction"
            lines.append(f"  waiting{' (' + lane + ')' if lane else ''}: {entry.owner!r} "
                         f"{kind} for {now - entry.enqueued:.3f} s")
        state = "none" if worker is None else ("idle" if worker_idle else "running")
        lines.append(f"  worker: {state}")
        return lines

    # ------------------------------------------------------------------ ordering
    def _check_order(self, held: tuple[Holding, ...], owner: str) -> None:
        checker = self.checker
        if checker is not None and held:
            checker.check(self, held, owner)

    def _timeout_error(self, owner: str, waited: float, ahead: int, kind: str,
                       cls: type[ResourceTimeoutError] = ResourceTimeoutError
                       ) -> ResourceTimeoutError:
        now = _now()
        holder = self.holder_description(now)
        last = self._last_holder
        if holder is not None:
            tail = f"held by {holder}"
        elif last is not None:
            # released an instant ago, to a request queued ahead of this one
            holder = (f"{last.describe(self._last_release)}, released "
                      f"{now - self._last_release:.3f} s ago")
            tail = f"last held by {holder}"
        else:
            tail = "it was free at that moment"
        msg = (f"{owner!r} timed out after {waited:.2f} s waiting for {self.name} ({kind}); "
               f"{tail}; {ahead} request(s) were queued ahead")
        return cls(msg, resource=self.name, waited_s=waited, holder=holder, owner=owner)

    # ------------------------------------------------------------------ queue helpers
    def _enqueue_locked(self, entry: _Entry, urgent: bool) -> None:
        if self._closed:
            raise ResourceClosedError(f"{self.name} is closed")
        (self._urgent if urgent else self._normal).append(entry)
        depth = len(self._urgent) + len(self._normal)
        if depth > self.max_queue_depth:
            self.max_queue_depth = depth

    def _withdraw_locked(self, entry: _Entry) -> int:
        """Remove a queued entry; returns how many entries were ahead of it."""
        if isinstance(entry, _Job) and entry in self._direct:  # a lease holder's own job
            self._direct.remove(entry)
            entry.state = _CANCELLED
            return 0
        lane = self._urgent if entry.urgent else self._normal
        index = lane.index(entry)
        del lane[index]
        entry.state = _CANCELLED
        return index if entry.urgent else index + len(self._urgent)

    def _wake_worker_locked(self) -> None:
        worker = self._worker
        if worker is None:
            worker = threading.Thread(target=self._worker_main, daemon=True,
                                      name=f"daqhub-gate {self.name}")
            self._worker = worker
            worker.start()
        elif self._worker_idle:
            self._wake.notify()

    def _grant_locked(self, handoff: _Handoff) -> None:
        handoff.state = _GRANTED
        handoff.since = _now()
        self._holder = handoff
        if handoff.waiter is not None:
            handoff.waiter.release()
        elif not self._post(handoff):  # its loop is gone: nobody will use or release the gate
            handoff.state = _CANCELLED
            self._pass_on_locked()

    def _left_locked(self) -> None:
        """Remember who held the gate last: a timeout right after a release still names it."""
        if self._holder is not None:
            self._last_holder = self._holder
            self._last_release = _now()
            self._holder = None

    def _pass_on_locked(self) -> None:
        """The holder is done: grant the next lease or let the worker run queued jobs."""
        self._left_locked()
        lane = self._urgent or self._normal
        if not lane:
            self._owned.release()
            if self._closed:
                self._idle.notify_all()
            return
        head = lane[0]
        if type(head) is _Handoff:
            lane.popleft()
            self._grant_locked(head)
        else:
            self._draining = True
            self._wake_worker_locked()

    def release(self) -> None:
        """Give the gate up (lease exit, or the end of an inline transaction)."""
        with self._mutex:
            self._pass_on_locked()

    # ------------------------------------------------------------------ worker
    def _next_job_locked(self) -> _Job | None:
        if self._direct:
            job = self._direct.popleft()
            job.state = _RUNNING
            return job
        if not self._draining:
            return None
        while True:
            lane = self._urgent or self._normal
            if not lane:
                self._draining = False
                self._left_locked()  # before the release: a new holder records itself after it
                self._owned.release()
                if self._closed:
                    self._idle.notify_all()
                return None
            entry = lane.popleft()
            if isinstance(entry, _Handoff):
                self._draining = False
                self._grant_locked(entry)
                return None
            entry.state = _RUNNING
            self._left_locked()
            self._holder = entry
            return entry

    def _worker_main(self) -> None:
        mutex = self._mutex
        while True:
            with mutex:
                job = self._next_job_locked()
            if job is not None:
                self._execute(job)
                continue
            if self._finished:
                self._send_finished()  # out of work: wake the loops for what is done
            with mutex:
                job = self._next_job_locked()  # work may have come while we sent
                if job is None:
                    if self._closed and not self._owned.locked():
                        self._worker = None
                        return
                    self._worker_idle = True
                    woken = self._wake.wait(self._idle_exit_s)
                    self._worker_idle = False
                    if (not woken and not self._direct and not self._draining) or (
                            self._closed and not self._owned.locked() and not self._direct):
                        self._worker = None
                        return
                    continue
            self._execute(job)

    def _execute(self, job: _Job) -> None:
        start = _now()
        job.since = start
        if self._finished and start - self._finished_since >= POST_BATCH_AGE_S:
            self._send_finished()  # do not keep finished async jobs waiting behind this one
        stats = job.stats
        wait = start - job.enqueued
        stats.wait_total += wait
        if wait > stats.wait_max:
            stats.wait_max = wait
        token = _HELD.set((*job.held, job))
        try:
            job.result = job.runner(job.arg)
        except BaseException as exc:  # delivered to the caller, whatever it is
            job.exc = exc
        finally:
            _HELD.reset(token)
        if job.exc is None:
            stats.transactions += 1
        else:
            stats.errors += 1
        io = _now() - start
        stats.io_total += io
        if io > stats.io_max:
            stats.io_max = io
        job.state = _DONE
        if job.waiter is not None:
            job.waiter.release()
            # sync traffic must not hold back finished async jobs beyond the batch age
            if self._finished and _now() - self._finished_since >= POST_BATCH_AGE_S:
                self._send_finished()
        else:
            self._hold_back(job)

    def _hold_back(self, job: _Job) -> None:
        """Collect finished async jobs so their loop is woken once per batch.

        Waking a loop per job made the worker and the loop trade the GIL at every
        ``call_soon_threadsafe`` (its pipe write releases the GIL): 1.2 jobs per wake-up and a
        quarter of raw throughput. A batch is sent when the holder runs out of queued work,
        reaches ``POST_BATCH_MAX`` jobs or ``POST_BATCH_AGE_S`` seconds, or at once after a slow
        job (a 9600-baud exchange takes milliseconds; a loop wake-up is cheap next to it).
        """
        with self._post_lock:
            finished = self._finished
            now = _now()
            if not finished:
                self._finished_since = now
            finished.append(job)
            if (len(finished) < POST_BATCH_MAX and now - self._finished_since < POST_BATCH_AGE_S
                    and now - job.since < SLOW_JOB_S):
                return
        self._send_finished()

    def _send_finished(self) -> None:
        schedule: list[asyncio.AbstractEventLoop] = []
        with self._post_lock:
            finished = self._finished
            if not finished:
                return
            self._finished = []
            for job in finished:
                loop = job.loop
                assert loop is not None
                batch = self._posts.get(loop)
                if batch is None:
                    self._posts[loop] = [job]
                    schedule.append(loop)
                else:
                    batch.append(job)
        for loop in schedule:
            try:
                loop.call_soon_threadsafe(self._flush, loop)
            except RuntimeError:  # loop closed: nobody is waiting any more
                with self._post_lock:
                    self._posts.pop(loop, None)

    # ------------------------------------------------------------------ loop hand-back
    def _post(self, entry: _Entry) -> bool:
        """Hand a finished job or a granted lease back to its loop, one wake-up per batch.

        Returns False when the loop is closed (nobody is waiting any more).
        """
        loop = entry.loop
        assert loop is not None
        with self._post_lock:
            batch = self._posts.get(loop)
            if batch is not None:
                batch.append(entry)
                return True
            self._posts[loop] = [entry]
        try:
            loop.call_soon_threadsafe(self._flush, loop)
        except RuntimeError:
            with self._post_lock:
                self._posts.pop(loop, None)
            return False
        return True

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._post_lock:
            batch = self._posts.pop(loop, ())
        for entry in batch:
            fut = entry.fut
            if fut is None or fut.done():
                continue
            if entry.exc is not None:
                fut.set_exception(entry.exc)
            else:
                fut.set_result(entry.result)

    # ------------------------------------------------------------------ sync transactions
    def run(self, runner: Callable[[A], T], arg: A, owner: str, what: What,
            timeout: float | None, urgent: bool, stats: TransactionStats) -> T:
        """Run ``runner(arg)`` with exclusive access; blocking, for threads.

        ``runner`` is the resource's own wrapper (disconnect handling) and ``arg`` what it
        runs, usually a function of the session. ``timeout`` (None: the gate's default) bounds
        the wait for the gate. The gate counts the transaction, its errors and its I/O time in
        ``stats``.
        """
        if timeout is not None:
            _checked_timeout(timeout)
        ident = _get_ident()
        outer = _INLINE.get(ident)
        held = _HELD.get()
        if outer is not None:
            held = (*held, *outer)
        if held:
            for h in held:
                if h.gate is self:  # inside our own lease or transaction: already exclusive
                    return _reentrant(runner, arg, stats, ident)
            self._check_order(held, owner)
        if _running_loop() is not None:
            raise RuntimeError(f"blocking transaction on {self.name} from a running event loop "
                               f"(owner {owner!r}); use the async API")
        # installed before the gate is taken, so no interrupt can land between take and try
        guarded = ident == _MAIN_IDENT and _SIGINT.enter()
        try:
            if urgent:
                stats.urgent += 1
            # Fast path: a free gate with nobody queued is taken with one non-blocking acquire
            # and given back with one release, no mutex: every line here is measurable against
            # a pyvisa-sim query (bench/visa_throughput.py).
            if not (self._urgent or self._normal) and self._owned.acquire(False):
                holding = self._inline
                holding.owner = owner
                holding.what = what
                holding.held = held
                holding.since = start = _now()
                self._holder = holding
                if self._closed:
                    self._let_go(holding, start, held)
                    raise ResourceClosedError(f"{self.name} is closed; {owner!r} cannot use it")
                # Inline holdings live in _INLINE, not in _HELD (leases and queued jobs stay
                # there): a ContextVar set and reset per transaction cost 5% of a query.
                _INLINE[ident] = (*outer, holding) if outer is not None else self._inline_chain
                try:
                    result = runner(arg)
                except BaseException:
                    stats.errors += 1
                    raise
                else:
                    stats.transactions += 1
                    return result
                finally:
                    if outer is None:
                        del _INLINE[ident]
                    else:
                        _INLINE[ident] = outer
                    end = _now()
                    io = end - start
                    stats.io_total += io
                    if io > stats.io_max:
                        stats.io_max = io
                    # _let_go() written out: a call here costs 1% of a pyvisa-sim query
                    self._holder = None
                    self._last_holder = holding
                    self._last_release = end
                    self._owned.release()
                    if self._urgent or self._normal or self._closed:
                        self._serve_queue(held)
            job = _Job(self, owner, what, held, runner, arg, stats, urgent,
                       self.default_timeout if timeout is None else timeout)
            job.waiter = waiter = _allocate_lock()
            waiter.acquire()
            with self._mutex:
                if self._closed:
                    raise ResourceClosedError(f"{self.name} is closed; {owner!r} cannot use it")
                self._enqueue_locked(job, urgent)
                # Taken after queueing, so that a holder letting go without the mutex either
                # sees this job or has already let go and leaves the gate to us (_let_go).
                if self._owned.acquire(False):
                    self._pass_on_locked()
            return self._wait_job(job, waiter, guarded)
        finally:
            if guarded:
                _SIGINT.exit()

    def _let_go(self, holding: Holding, now: float, held: tuple[Holding, ...]) -> None:
        """End of an inline transaction: give the gate back, then serve what was queued.

        The release needs no mutex because every queuer appends first and tries to take the
        gate second: either it took the free gate itself, or it queued before the release and
        the check below sees it. Bytecodes are atomic under the GIL, which orders both sides.
        """
        self._holder = None  # before the release: the next holder records itself after it
        self._last_holder = holding
        self._last_release = now
        self._owned.release()
        if self._urgent or self._normal or self._closed:
            self._serve_queue(held)

    def _serve_queue(self, held: tuple[Holding, ...]) -> None:
        """After an inline release with work queued (or the gate closing): serve it."""
        with self._mutex:
            if not self._owned.acquire(False):
                return  # taken meanwhile: its holder will see the queue when it lets go
            if held:  # holding another gate: do not run others' work meanwhile
                self._pass_on_locked()
                return
        self._combine()  # which also grants a lease at the head, or announces the closing

    def _combine(self) -> None:
        """After its own transaction, a sync holder runs a few queued ones before letting go.

        Saves waking the worker thread (an OS wake-up costs more than a pyvisa-sim query); the
        budget bounds how long a V2 caller can be kept from returning.
        """
        budget = COMBINE_BUDGET
        mutex = self._mutex
        while True:
            with mutex:
                lane = self._urgent or self._normal
                if budget <= 0 or not lane or type(lane[0]) is _Handoff:
                    self._pass_on_locked()
                    break
                job = lane.popleft()
                job.state = _RUNNING
                self._left_locked()
                self._holder = job
            self._execute(job)  # type: ignore[arg-type]
            budget -= 1
        if self._finished:
            self._send_finished()

    def _wait_job(self, job: _Job, waiter: Any, guarded: bool) -> Any:
        if guarded:
            _SIGINT.interruptible = _SIGINT.depth == 1
        try:
            got = waiter.acquire(True, job.timeout)
            if guarded:
                _SIGINT.interruptible = False
        except BaseException:  # Ctrl-C (or whatever the previous SIGINT handler raised)
            if guarded:
                _SIGINT.interruptible = False
            with self._mutex:
                if job.state == _QUEUED:
                    self._withdraw_locked(job)  # never sent
                    raise
            try:
                self._finish_started(job, waiter)  # never split from its reply
            except ResourceTimeoutError:
                pass
            raise
        if not got:
            with self._mutex:
                if job.state == _QUEUED:
                    ahead = self._withdraw_locked(job)
                    job.stats.timeouts += 1
                    raise self._timeout_error(job.owner, _now() - job.enqueued, ahead,
                                              "transaction")
            self._finish_started(job, waiter)
        if job.exc is not None:
            exc, job.exc = job.exc, None
            raise exc
        return job.result

    def _finish_started(self, job: _Job, waiter: Any) -> None:
        """A started job is never abandoned half-way: wait (bounded) for it to finish."""
        budget = max(0.0, job.since + job.timeout - _now()) if job.since else job.timeout
        if waiter.acquire(True, budget):
            return
        raise self._timeout_error(job.owner, _now() - job.enqueued, 0,
                                  f"transaction started {(_now() - job.since):.2f} s ago and "
                                  f"still running; its result will be discarded",
                                  TransactionOverrunError)

    # ------------------------------------------------------------------ async transactions
    async def arun(self, runner: Callable[[A], T], arg: A, owner: str, what: What,
                   timeout: float | None, urgent: bool, stats: TransactionStats) -> T:
        """Run ``runner(arg)`` on the gate's worker thread; the event loop never blocks."""
        timeout = self.default_timeout if timeout is None else _checked_timeout(timeout)
        held = current_held()
        direct = False
        if held:
            for h in held:
                if h.gate is self:
                    direct = True
                    break
            if not direct:
                self._check_order(held, owner)
        loop = asyncio.get_running_loop()
        job = _Job(self, owner, what, held, runner, arg, stats, urgent, timeout)
        job.loop = loop
        job.fut = fut = loop.create_future()
        if urgent:
            stats.urgent += 1
        with self._mutex:
            if direct:
                # our own lease holds the gate: run at once, outside the queue
                if self._closed:
                    raise ResourceClosedError(f"{self.name} is closed; {owner!r} cannot use it")
                self._direct.append(job)
                self._wake_worker_locked()
            else:
                self._enqueue_locked(job, urgent)
                if self._owned.acquire(False):  # the gate is free: serve the queue from its head
                    self._pass_on_locked()
        job.timer = loop.call_later(timeout, self._async_timeout, job)
        try:
            return await fut
        except asyncio.CancelledError:
            if job.state == _QUEUED:
                with self._mutex:
                    if job.state == _QUEUED:
                        self._withdraw_locked(job)
            raise
        finally:
            timer = job.timer
            if timer is not None:
                timer.cancel()

    def _async_timeout(self, entry: _Entry) -> None:
        entry.timer = None
        fut = entry.fut
        assert fut is not None and entry.loop is not None
        with self._mutex:
            state = entry.state
            if state == _QUEUED:
                ahead = self._withdraw_locked(entry)
                kind = "lease" if isinstance(entry, _Handoff) else "transaction"
                if isinstance(entry, _Job):
                    entry.stats.timeouts += 1
                err = self._timeout_error(entry.owner, _now() - entry.enqueued, ahead, kind)
            elif state == _RUNNING and isinstance(entry, _Job):
                entry.timer = entry.loop.call_later(entry.timeout, self._async_overrun, entry)
                return
            else:
                return
        if not fut.done():
            fut.set_exception(err)

    def _async_overrun(self, job: _Job) -> None:
        job.timer = None
        fut = job.fut
        if job.state == _RUNNING and fut is not None and not fut.done():
            fut.set_exception(self._timeout_error(
                job.owner, _now() - job.enqueued, 0,
                f"transaction started {(_now() - job.since):.2f} s ago and still running; "
                f"its result will be discarded", TransactionOverrunError))

    # ------------------------------------------------------------------ leases
    def acquire(self, holding: Holding, timeout: float, urgent: bool = False) -> None:
        """Take the gate for a lease (blocking, bounded)."""
        with self._mutex:
            if self._closed:
                raise ResourceClosedError(f"{self.name} is closed; {holding.owner!r} cannot use it")
            if not (self._urgent or self._normal) and self._owned.acquire(False):
                holding.since = _now()
                self._holder = holding
                return
            entry = _Handoff(self, holding.owner, holding.held,
                             holding.group if holding.group is not None else [], urgent, timeout)
            entry.waiter = waiter = _allocate_lock()
            waiter.acquire()
            self._enqueue_locked(entry, urgent)
            if self._owned.acquire(False):  # freed meanwhile: serve the queue from its head
                self._pass_on_locked()
        try:
            waiter.acquire(True, max(0.0, timeout))
        except BaseException:
            with self._mutex:
                if entry.state == _QUEUED:
                    self._withdraw_locked(entry)
                    raise
                if entry.state == _GRANTED:
                    self._pass_on_locked()
            raise
        with self._mutex:
            if entry.state == _QUEUED:
                ahead = self._withdraw_locked(entry)
                raise self._timeout_error(holding.owner, _now() - entry.enqueued, ahead, "lease")
            if entry.state == _CANCELLED:
                assert entry.exc is not None
                raise entry.exc
            # granted: the lease's own Holding becomes the record
            holding.since = entry.since
            self._holder = holding

    async def aacquire(self, holding: Holding, timeout: float, urgent: bool = False) -> None:
        """Take the gate for a lease from a coroutine (bounded, cancellable)."""
        loop = asyncio.get_running_loop()
        with self._mutex:
            if self._closed:
                raise ResourceClosedError(f"{self.name} is closed; {holding.owner!r} cannot use it")
            if not (self._urgent or self._normal) and self._owned.acquire(False):
                holding.since = _now()
                self._holder = holding
                return
            entry = _Handoff(self, holding.owner, holding.held,
                             holding.group if holding.group is not None else [], urgent, timeout)
            entry.loop = loop
            entry.fut = fut = loop.create_future()
            self._enqueue_locked(entry, urgent)
            if self._owned.acquire(False):  # freed meanwhile: serve the queue from its head
                self._pass_on_locked()
        entry.timer = loop.call_later(max(0.0, timeout), self._async_timeout, entry)
        try:
            await fut
        except BaseException:
            with self._mutex:
                if entry.state == _QUEUED:
                    self._withdraw_locked(entry)
                elif entry.state == _GRANTED:
                    self._pass_on_locked()
            raise
        finally:
            timer = entry.timer
            if timer is not None:
                timer.cancel()
        with self._mutex:
            holding.since = entry.since
            self._holder = holding

    # ------------------------------------------------------------------ failure and shutdown
    def fail_queued(self, make_error: Callable[[_Entry], BaseException],
                    runner: Callable[..., Any] | None = None) -> int:
        """Fail queued transactions (not leases); only those of ``runner`` if given."""
        failed: list[_Job] = []
        with self._mutex:
            for lane in (self._urgent, self._normal, self._direct):
                keep: list[_Entry] = []
                for entry in lane:
                    if type(entry) is _Job and (runner is None or entry.runner == runner):
                        entry.state = _CANCELLED
                        entry.exc = make_error(entry)
                        failed.append(entry)
                    else:
                        keep.append(entry)
                if len(keep) != len(lane):
                    lane.clear()
                    lane.extend(keep)  # type: ignore[arg-type]
        for job in failed:
            if job.waiter is not None:
                job.waiter.release()
            else:
                self._post(job)
        return len(failed)

    def close(self, timeout: float) -> bool:
        """Refuse new work, fail what is queued, wait (bounded) for the holder to finish.

        Returns False when the holder did not finish in time (the gate is then left marked
        closed, and whatever runs keeps running).
        """
        deadline = _now() + timeout
        with self._mutex:
            self._closed = True
            queued = list(self._urgent) + list(self._normal) + list(self._direct)
            self._urgent.clear()
            self._normal.clear()
            self._direct.clear()
            for entry in queued:
                entry.state = _CANCELLED
                entry.exc = ResourceClosedError(
                    f"{self.name} was closed while {entry.owner!r} waited for it")
        for entry in queued:
            if entry.waiter is not None:
                entry.waiter.release()
            elif entry.loop is not None:
                self._post(entry)
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


def _checked_timeout(timeout: float) -> float:
    """Waits are bounded: "forever" (None, -1, inf) is refused rather than silently allowed."""
    if not 0.0 <= timeout <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout must be between 0 and {MAX_TIMEOUT_S} s, not {timeout!r}")
    return timeout


def _reentrant(runner: Callable[[A], T], arg: A, stats: TransactionStats, ident: int) -> T:
    """A transaction inside a lease (or transaction) that already holds its gate.

    Counted as :meth:`Gate.run` counts an inline one (which keeps its copy written out: a
    shared helper would be one more call per transaction on the hot path).
    """
    guarded = ident == _MAIN_IDENT and _SIGINT.enter()
    start = _now()
    try:
        result = runner(arg)
    except BaseException:
        stats.errors += 1
        raise
    else:
        stats.transactions += 1
        return result
    finally:
        io = _now() - start
        stats.io_total += io
        if io > stats.io_max:
            stats.io_max = io
        if guarded:
            _SIGINT.exit()


def dump_gates(gates: Iterable[Gate] | None = None) -> str:
    """Every gate (or the given ones): holder, waiters, worker state. For humans, not parsing."""
    chosen = sorted(_REGISTRY if gates is None else gates, key=_gate_order)
    now = _now()
    lines: list[str] = []
    for gate in chosen:
        lines.extend(gate.describe(now))
    return "\n".join(lines) if lines else "(no resources)"
