"""What a shared serial port and a shared VISA session have in common.

Both are one handle per device per process, used only through transactions under a
:class:`~.gate.Gate` (which also counts and times them), leasable with other resources, and
both can lose their device. The disconnect rule is written here once: the transaction that
sees the loss fails with the resource's own "disconnected" error, every transaction queued
behind it fails without being sent, and a reconnect thread tells listeners
``disconnected``, reopens with capped exponential backoff (first try after 0.5 s by
default) and tells them ``reconnected``. Nothing is retried on anybody's behalf, so nothing
is sent twice. A manager told to (``open_absent``: a restarted worker process's, whose
devices were open in the process before it) makes a resource it cannot open begin that
way, disconnected and reopened by the reconnect thread, rather than refuse it. What
differs (how a handle is opened and closed, which exception means the device is gone, the
query's arguments) stays in :mod:`.serial` and :mod:`.visa`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from .gate import Gate
from .inline import NOT_TAKEN
from .lease import Lease
from .loopinline import QuickKinds
from .ordering import What, default_owner
from .stats import TransactionStats

T = TypeVar("T")
H = TypeVar("H")  # what a transaction function receives: PortIO or a pyvisa resource
log = logging.getLogger(__name__)
_now = time.monotonic


@dataclass(frozen=True)
class ResourceEvent:
    """What listeners are told. ``at`` is wall-clock time (``time.time()``); ``what`` says
    which kind of resource (``serial port``, ``VISA resource``) ``port`` names."""

    kind: Literal["disconnected", "reconnected"]
    port: str
    at: float
    detail: str
    attempt: int = 0
    what: str = "serial port"


Listener = Callable[[ResourceEvent], None]


class EventSource:
    """Listeners of disconnect/reconnect events (a resource's own, or a whole manager's)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(event)`` on disconnect and reconnect, from the reconnect thread."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        self._listeners.remove(fn)

    def emit(self, event: ResourceEvent) -> None:
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception:
                log.exception("listener %r failed on %s event of %s", fn, event.kind,
                              event.port)


class SharedResource(EventSource, Generic[H]):
    """The common part of :class:`.serial.SharedSerialPort` and :class:`.visa.SharedVisaResource`.

    A subclass sets ``gate``, ``_stats`` and ``_runners`` (the functions its transactions run
    under the gate, whose queued jobs a disconnect fails) and implements ``_open_handle``,
    ``_install``, ``_close_handle``, ``_disconnected_error`` and ``_stats_extra``.
    """

    what = "resource"
    #: exceptions of a failed reopen that mean "try again later"
    open_errors: tuple[type[BaseException], ...] = (Exception,)
    gate: Gate
    _runners: tuple[Callable[..., Any], ...]

    def __init__(self, label: str, manager_events: EventSource, default_timeout: float,
                 reconnect_initial_s: float, reconnect_max_s: float) -> None:
        super().__init__()
        self.label = label
        self.default_timeout = default_timeout
        self._manager_events = manager_events
        self._reconnect_s = (reconnect_initial_s, reconnect_max_s)
        self._stats = TransactionStats()
        self._quick = QuickKinds()  # which async transactions may skip the worker hand-off
        self._state_lock = threading.Lock()
        self._connected = False
        self._closed = False
        self._disconnected_at = 0.0
        self._last_error = ""
        self._stop = threading.Event()
        self._reconnector: threading.Thread | None = None

    # ------------------------------------------------------------------ what differs
    def _open_handle(self) -> Any:
        raise NotImplementedError

    def _install(self, handle: Any) -> None:
        """Make a freshly opened handle the one transactions use (under the state lock)."""
        raise NotImplementedError

    def _close_handle(self, handle: Any) -> None:
        raise NotImplementedError

    def _current_handle(self) -> Any:
        raise NotImplementedError

    def _disconnected_error(self) -> Exception:
        raise NotImplementedError

    def _queued_error(self, owner: str, cause: BaseException) -> Exception:
        raise NotImplementedError

    def _stats_extra(self) -> dict[str, Any]:
        return {}

    def _reopened_detail(self) -> str:
        return "reopened"

    # ------------------------------------------------------------------ transactions
    @property
    def is_connected(self) -> bool:
        return self._connected

    def transaction(self, fn: Callable[[H], T], *, owner: str | None = None,
                    timeout: float | None = None, urgent: bool = False,
                    what: What = "transaction") -> T:
        """Run ``fn(handle)`` with exclusive use of the resource and return its result.

        ``timeout`` bounds the wait for the resource (default 2 s); the I/O inside is bounded
        by the handle's own timeouts. ``urgent`` puts it ahead of routine traffic.
        """
        if not self._connected:
            raise self._disconnected_error()
        return self.gate.run(self._runners[0], fn, owner or default_owner(), what,
                             timeout, urgent, self._stats)

    async def atransaction(self, fn: Callable[[H], T], *, owner: str | None = None,
                           timeout: float | None = None, urgent: bool = False,
                           what: What = "transaction") -> T:
        """Same as :meth:`transaction` for coroutines: ``fn`` runs on the gate's worker thread,
        or in the loop's thread when the gate is free and this kind of transaction has been
        quick (:mod:`.loopinline`)."""
        if not self._connected:
            raise self._disconnected_error()
        owner = owner or default_owner()
        quick = self._quick
        if quick.allows(what):  # (a task holding a lease: the gate declines)
            start = _now()
            try:
                result = self.gate.run_on_loop(self._runners[0], fn, owner, what, self._stats)
            except BaseException:
                quick.record(what, _now() - start, failed=True)
                raise
            if result is not NOT_TAKEN:
                quick.record(what, _now() - start)
                return result  # type: ignore[return-value]
        return await self.gate.arun(self._runners[0], quick.timed(fn, what), owner, what,
                                    timeout, urgent, self._stats)

    def write(self, data: Any, *, owner: str | None = None, timeout: float | None = None,
              urgent: bool = False) -> None:
        """Send a command that has no reply."""
        self.transaction(lambda h: h.write(data), owner=owner,  # type: ignore[attr-defined]
                         timeout=timeout, urgent=urgent, what=("write", data))

    async def awrite(self, data: Any, *, owner: str | None = None,
                     timeout: float | None = None, urgent: bool = False) -> None:
        await self.atransaction(lambda h: h.write(data),  # type: ignore[attr-defined]
                                owner=owner, timeout=timeout, urgent=urgent,
                                what=("write", data))

    def lease(self, *, owner: str | None = None, timeout: float | None = None,
              urgent: bool = False) -> Lease:
        """Several transactions on this resource without interleaving (``with`` or
        ``async with``)."""
        return Lease([self], owner=owner,
                     timeout=self.default_timeout if timeout is None else timeout, urgent=urgent)

    def stats(self) -> dict[str, Any]:
        """Counters and latencies (wait = queueing, io = the transaction itself)."""
        snap = self._stats.snapshot()
        snap.update(self._stats_extra())
        snap.update(connected=self._connected, queue_depth=self.gate.queue_depth,
                    max_queue_depth=self.gate.max_queue_depth,
                    holder=self.gate.holder_description())
        return snap

    # ------------------------------------------------------------------ disconnects
    def _down_for(self) -> str:
        return (f"for {time.monotonic() - self._disconnected_at:.1f} s, cause: "
                f"{self._last_error}")

    def _notify(self, event: ResourceEvent) -> None:
        self.emit(event)
        self._manager_events.emit(event)

    def _lost(self, exc: BaseException) -> None:
        """The holder saw the device vanish: fail the queue, close, start reconnecting."""
        with self._state_lock:
            if not self._connected:
                return
            self._connected = False
            self._disconnected_at = time.monotonic()
            self._last_error = repr(exc)
            self._stats.disconnects += 1
            old = self._current_handle()
            start = not self._closed
        for runner in self._runners:
            self.gate.fail_queued(lambda entry: self._queued_error(entry.owner, exc),
                                  runner=runner)
        try:
            self._close_handle(old)
        except Exception as close_exc:  # the device may already be gone
            log.debug("closing lost %s %s: %r", self.what, self.label, close_exc)
        if start:
            self._start_reconnecting(repr(exc))

    def _begin_absent(self, exc: BaseException) -> None:
        """Begin disconnected: the device could not be opened (``exc``) when the resource was
        made, and the reconnect thread opens it once it is back, as after a loss."""
        with self._state_lock:
            self._connected = False
            self._disconnected_at = time.monotonic()
            self._last_error = repr(exc)
            self._stats.disconnects += 1
        self._start_reconnecting(repr(exc))

    def _start_reconnecting(self, cause: str) -> None:
        self._reconnector = threading.Thread(target=self._reconnect_main, args=(cause,),
                                             daemon=True, name=f"daqhub-reconnect {self.label}")
        self._reconnector.start()

    def _reconnect_main(self, cause: str) -> None:
        self._notify(ResourceEvent("disconnected", self.label, time.time(), cause,
                                   what=self.what))
        delay, longest = self._reconnect_s
        attempt = 0
        while not self._stop.wait(delay):
            attempt += 1
            try:
                handle = self._open_handle()
            except self.open_errors as exc:
                self._last_error = f"{cause}; reopen attempt {attempt} failed: {exc}"
                delay = min(delay * 2, longest)
                continue
            with self._state_lock:
                if self._stop.is_set():
                    self._close_handle(handle)
                    return
                self._install(handle)
                self._stats.reconnects += 1
                self._connected = True
            self._notify(ResourceEvent("reconnected", self.label, time.time(),
                                       self._reopened_detail(), attempt, what=self.what))
            return

    def mark_closed(self) -> None:
        """From now on every transaction fails with the resource's "closed" error."""
        with self._state_lock:
            self._closed = True
            self._connected = False

    def stop_reconnecting(self, timeout: float) -> bool:
        """Mark closed and stop the reconnect thread (bounded wait); False if it still runs."""
        deadline = time.monotonic() + timeout
        with self._state_lock:
            self._closed = True
            self._stop.set()
            reconnector = self._reconnector
        if reconnector is None or reconnector is threading.current_thread():
            return True
        reconnector.join(max(0.0, deadline - time.monotonic()))
        return not reconnector.is_alive()
