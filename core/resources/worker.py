"""A gate's queue and its worker: who runs next, and the thread that runs queued jobs.

Anything that has to wait, and every async caller, becomes a job in the gate's queue. Whoever
holds the gate runs queued jobs back to back (combining): a sync caller runs up to
``COMBINE_BUDGET`` of them after its own transaction, then the per-gate worker thread takes
over (it also runs async jobs on an idle gate, so the loop never does I/O). A contended
resource thus changes hands once per batch instead of once per transaction; each waiting thread
is woken once, when its own result is ready. Leases are handed over directly: the releasing side
grants the gate to the next waiter in FIFO order (urgent lane first).

Trade-off of combining: a transaction may run on another caller's thread or on the worker,
never necessarily on its own. pyvisa (all backends here) and pyserial sessions are not bound to
the thread that opened them, so this is safe for them; a thread-affine library would need its
own single-thread runner (all of its I/O on one thread), not this gate alone.

The worker thread is started on demand and exits after ``idle_exit_s`` without work, so an idle
process keeps no thread per resource.
"""

from __future__ import annotations

import threading
import time

from .entries import CANCELLED, DONE, GRANTED, RUNNING, Entry, Handoff, Job
from .errors import ResourceClosedError
from .lanes import Lanes
from .ordering import Holding, reset_context_held, set_context_held

# How many queued transactions a sync caller runs for others after its own (see _combine).
COMBINE_BUDGET = 16

_now = time.monotonic


class Worker(Lanes):
    """Queueing, handing the gate on, and running queued jobs (worker thread or combiner)."""

    # A lease's own jobs (``_direct``) run on the worker while the lease holds the gate. Set
    # and read under the mutex: the one the worker is running (``_direct_running``, in
    # .lanes: set when it takes one, cleared when it looks for work again), and the lease has
    # let go while one was queued or running, so the worker passes the gate on after the last
    # (see release).
    _release_deferred = False

    def _enqueue_locked(self, entry: Entry) -> None:
        """Queue an entry, then try the gate: if it is free, serve the queue from its head.

        Taken after queueing, so that an inline holder letting go without the mutex either
        sees this entry or has already let go and leaves the gate to us (see .gil).
        """
        if self._closed:
            raise ResourceClosedError(f"{self.name} is closed; {entry.owner!r} cannot use it")
        (self._urgent if entry.urgent else self._normal).append(entry)
        depth = len(self._urgent) + len(self._normal)
        if depth > self.max_queue_depth:
            self.max_queue_depth = depth
        if self._owned.acquire(False):
            self._pass_on_locked()

    def _wake_worker_locked(self) -> None:
        worker = self._worker
        if worker is None:
            worker = threading.Thread(target=self._worker_main, daemon=True,
                                      name=f"daqhub-gate {self.name}")
            self._worker = worker
            worker.start()
        elif self._worker_idle:
            self._wake.notify()

    def _deliver(self, entry: Entry) -> bool:
        """Wake the one waiting for an entry; False if that was a closed loop."""
        if entry.waiter is not None:
            entry.waiter.release()
            return True
        return self._post(entry)

    def _grant_locked(self, handoff: Handoff) -> None:
        handoff.state = GRANTED
        handoff.since = _now()
        self._holder = handoff
        if not self._deliver(handoff):  # its loop is gone: nobody will use or release the gate
            handoff.state = CANCELLED
            self._pass_on_locked()

    def _hand_on_locked(self) -> bool:
        """The holder is done: release the gate or grant it to a lease at the head.

        Returns True instead when a job is at the head: the gate stays owned, to run it.
        """
        self._left_locked()  # before the release: a new holder records itself after it
        lane = self._urgent or self._normal
        if not lane:
            self._owned.release()
            if self._closed:
                self._idle.notify_all()
            return False
        if type(lane[0]) is Handoff:
            self._grant_locked(lane.popleft())  # type: ignore[arg-type]
            return False
        return True

    def _start_head_locked(self) -> Job:
        """Take the job at the head of the queue (the gate is owned) as the holder."""
        job = (self._urgent or self._normal).popleft()
        job.state = RUNNING
        self._holder = job
        return job  # type: ignore[return-value]

    def _pass_on_locked(self) -> None:
        """The holder is done: grant the next lease, or let the worker run queued jobs."""
        if self._hand_on_locked():
            self._draining = True
            self._wake_worker_locked()

    def release(self) -> None:
        """Give the gate up (lease exit, or a queued caller that found it free).

        A started job is never abandoned half-way, so a lease whose own job is still queued or
        running (its coroutine was cancelled, or gave up with TransactionOverrunError) keeps
        the gate until the worker has finished it: passing it on now would let the next holder
        talk to the device mid-exchange, each reading the other's reply. Meanwhile the lease
        stays the holder that timeout errors name, under a record of its own: the lease's
        record, which tasks and threads it started may have copied, no longer holds the gate
        (:meth:`held_by`), so they queue; the worker passes the gate on.
        """
        with self._mutex:
            if self._direct or self._direct_running:
                self._release_deferred = True
                lease = self._holder
                if lease is not None:  # say why it still holds
                    record = Holding(lease.gate, lease.owner,
                                     "lease exited; its transaction still running",
                                     lease.held, lease.group)
                    record.since = lease.since
                    self._holder = record
            else:
                self._pass_on_locked()

    def _next_job_locked(self) -> Job | None:
        if self._direct:
            job = self._direct.popleft()
            job.state = RUNNING
            self._direct_running = job
            return job
        self._direct_running = None
        if self._release_deferred:  # the lease let go; its last job has finished
            self._release_deferred = False
            self._pass_on_locked()
        if not self._draining:
            return None
        if not self._hand_on_locked():
            self._draining = False
            return None
        return self._start_head_locked()

    def _worker_main(self) -> None:
        mutex = self._mutex
        while True:
            with mutex:
                job = self._next_job_locked()
            if job is not None:
                self._execute(job)
                continue
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

    def _combine(self) -> None:
        """After its own transaction, a sync holder runs a few queued ones before letting go.

        Saves waking the worker thread (an OS wake-up costs more than a pyvisa-sim query); the
        budget bounds how long a V2 caller can be kept from returning.
        """
        budget = COMBINE_BUDGET
        while True:
            with self._mutex:
                if budget <= 0:
                    self._pass_on_locked()
                    break
                if not self._hand_on_locked():
                    break
                job = self._start_head_locked()
            self._execute(job)
            budget -= 1
        self._send_finished()
        self._yield_to_loops()

    def _execute(self, job: Job) -> None:
        """Run a queued job for its caller, in the caller's held set, and wake the caller."""
        start = _now()
        job.since = start
        self._send_due()  # do not keep finished async jobs waiting behind this one
        stats = job.stats
        wait = start - job.enqueued
        stats.wait_total += wait
        if wait > stats.wait_max:
            stats.wait_max = wait
        token = set_context_held((*job.held, job))
        try:
            job.result = stats.run_counted(job.runner, job.arg, start)
        except BaseException as exc:  # delivered to the caller, whatever it is
            job.exc = exc
        finally:
            reset_context_held(token)
        job.state = DONE
        if job.waiter is not None:
            job.waiter.release()
            self._send_due()  # sync traffic must not hold back finished async jobs
        else:
            self._hold_back(job)
