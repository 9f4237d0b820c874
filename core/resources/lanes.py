"""A gate's state: its two queue lanes, who holds it, and the facts its errors report.

The urgent lane is served before the normal FIFO (stop/abort for motion controllers); it
cannot pre-empt a transaction or lease already running. Who runs what next is decided in
:mod:`.worker`; this module only keeps the records.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from .entries import CANCELLED, Entry, Handoff, Job
from .errors import ResourceTimeoutError, TransactionOverrunError
from .handback import HandBack
from .ordering import Holding, LockOrderChecker
from .timeouts import checked_timeout

_now = time.monotonic


class Lanes(HandBack):
    """The state every part of a gate shares, and how it is described."""

    def __init__(self, name: str, order_key: tuple[int, str], checker: LockOrderChecker | None,
                 default_timeout: float, idle_exit_s: float) -> None:
        super().__init__()
        self.name = name
        self.default_timeout = checked_timeout(default_timeout)
        self.order_key = order_key
        self.checker = checker
        self.note: Callable[[], str] | None = None
        self._idle_exit_s = idle_exit_s
        self._mutex = threading.Lock()
        self._wake = threading.Condition(self._mutex)
        self._idle = threading.Condition(self._mutex)
        # Held while the gate is owned (inline caller, lease, worker draining, combining caller).
        # A lock rather than a flag under the mutex, so that a free gate is taken with one
        # non-blocking acquire and given back with one release (see .inline).
        self._owned = threading.Lock()
        self._draining = False
        self._holder: Holding | None = None
        self._last_holder: Holding | None = None
        # The record of an inline sync holder, reused: there is at most one holder at a time, so
        # one object per gate suffices, and allocating one per transaction was measurable.
        # Readers only describe it (timeout and lock-order messages), under the mutex or while
        # it is the holder; the next inline holder overwrites it only after taking the gate.
        self._inline = Holding(self, "", "", ())  # type: ignore[arg-type]
        self._inline_chain = (self._inline,)  # its INLINE_HELD entry when no outer inline one
        self._last_release = 0.0
        self._urgent: deque[Entry] = deque()
        self._normal: deque[Entry] = deque()
        self._direct: deque[Job] = deque()  # jobs of the lease that holds the gate
        self._direct_running: Job | None = None  # the one the worker runs now (see .worker)
        self._worker: threading.Thread | None = None
        self._worker_idle = False
        self._closed = False
        self.max_queue_depth = 0

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
            lines.append(f"  waiting{' (' + lane + ')' if lane else ''}: {entry.owner!r} "
                         f"{_kind(entry)} for {now - entry.enqueued:.3f} s")
        state = "none" if worker is None else ("idle" if worker_idle else "running")
        lines.append(f"  worker: {state}")
        return lines

    def held_by(self, holding: Holding) -> bool:
        """Whether a held record still holds this gate: it is the holder, or the lease job the
        worker is running (whose lease may have exited meanwhile; see ``release``).

        A task or thread started inside a lease copies the lease's context and its record
        with it; once the lease has let go, that copy holds nothing, and counting it would let
        its transactions skip the queue while someone else talks to the device.
        """
        return holding is self._holder or holding is self._direct_running

    def holds(self, held: tuple[Holding, ...]) -> bool:
        """Whether one of the caller's held records holds this gate (:meth:`held_by`): the
        one place that decides whether a caller's transaction runs "direct" (as its lease's
        own, without queueing), and that a lease skips a gate it already holds."""
        for h in held:
            if self.held_by(h):
                return True
        return False

    def holds_or_checks(self, held: tuple[Holding, ...], owner: str) -> bool:
        """A transaction's question: True if the caller holds this gate (:meth:`holds`), so
        it runs direct; else check the order for taking it."""
        if self.holds(held):
            return True
        self.check_order(held, owner)
        return False

    def check_order(self, held: tuple[Holding, ...], owner: str) -> None:
        """Refuse (before waiting) to take this gate against the global order, judged by the
        gates the caller still holds (a record its lease has let go of holds nothing)."""
        checker = self.checker
        if checker is None or not held:
            return
        for h in held:
            if not h.gate.held_by(h):  # the rare case: a new tuple only then
                held = tuple(live for live in held if live.gate.held_by(live))
                break
        checker.check(self, held, owner)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ records and errors
    def _left_locked(self) -> None:
        """Remember who held the gate last: a timeout right after a release still names it."""
        if self._holder is not None:
            self._last_holder = self._holder
            self._last_release = _now()
            self._holder = None

    def _withdraw_locked(self, entry: Entry) -> int:
        """Remove a queued entry; returns how many entries were ahead of it."""
        if isinstance(entry, Job) and entry in self._direct:  # a lease holder's own job
            self._direct.remove(entry)
            entry.state = CANCELLED
            return 0
        lane = self._urgent if entry.urgent else self._normal
        index = lane.index(entry)
        del lane[index]
        entry.state = CANCELLED
        return index if entry.urgent else index + len(self._urgent)

    def _expire_locked(self, entry: Entry) -> ResourceTimeoutError:
        """A queued entry waited its whole timeout: withdraw it and say who held the gate."""
        ahead = self._withdraw_locked(entry)
        if isinstance(entry, Job):
            entry.stats.timeouts += 1
        return self._timeout_error(entry.owner, _now() - entry.enqueued, ahead, _kind(entry))

    def _overrun_error(self, job: Job) -> TransactionOverrunError:
        """A started job outlived its caller's budget: it finishes, its result is dropped."""
        err = self._timeout_error(job.owner, _now() - job.enqueued, 0,
                                  f"transaction started {(_now() - job.since):.2f} s ago and "
                                  f"still running; its result will be discarded",
                                  TransactionOverrunError)
        assert isinstance(err, TransactionOverrunError)
        return err

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


def _kind(entry: Entry) -> str:
    return "lease" if isinstance(entry, Handoff) else "transaction"
