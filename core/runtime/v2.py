"""The V2 runtime: one thread per v2 instrument, polling at its rate.

Each thread owns its instrument object outright (v2 drivers are plain blocking
classes, not thread-safe), so commands from scripts are queued to that thread
and run between two polls. Measurements go to the DataDistributor.

A driver call that hangs cannot be killed in Python; at shutdown such a thread
is *forced*: the runtime stops waiting for it, the core closes the hardware
under it (which usually wakes it with an I/O error) and the report says so.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

from ..command_limits import NoResult, result_within
from ..instrument import (
    CommandRejected,
    UnknownCommandError,
    V2Instrument,
    is_command,
    public_methods,
)
from ..measurement import DataError, Measurement, V2Read, last_sample, read_size
from ..specs import InstrumentContext, InstrumentType
from .broadcast import Broadcast, SubscriptionClosed
from .health import (
    DEVICE_ERRORS,
    EventSink,
    InstrumentHealth,
    as_error,
    describe_value,
    failure_text,
    reconnect_reason,
)
from .restarts import RestartPolicy, Restarts

DataDistributor = Broadcast  # V2 producers publish lists of Measurements

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
#: A poll due within this runs at once instead of sleeping for it, in both flavors (the v4
#: runner uses it too: epoll's timers wake in whole milliseconds). A shorter sleep costs more
#: than it is worth in a busy process: it hands the GIL over and wakes a thread waiting for
#: it, and getting it back behind a thread that computes takes up to a switch interval
#: (5 ms), so the poll came late, not on time.
#: Two 1830-C meters polled flat out over ``sim://`` made 1.5 context switches per poll that
#: way, 0.2 without. Polls stay on their grid, so the rate is never above the one asked;
#: each poll starts at most the grain early (see :func:`poll_grain`).
POLL_GRAIN_S = 0.001


def poll_grain(woke_late_s: float) -> float:
    """The grain after a wait for a poll's time that ended ``woke_late_s`` past it: that
    lateness, from :data:`POLL_GRAIN_S` up to a switch interval.

    In a process whose threads compute, a thread that sleeps gets the GIL back only after
    the others let go of it, up to a switch interval later. Sleeping for less than that
    buys nothing (the poll comes late anyway) and costs a GIL hand-over each time, and with
    it the other core's cache of the interpreter's state. Measured with two v2 and two v4
    1830-C meters flat out in one process (``bench/dual_overhead.py``): the v2 threads slept
    ~1 ms about 130 times a second each and got 22 % of their rate while the v4 ones got 83 %;
    with the grain following the lateness, 49 % and 58 %, and the CPU per measurement
    together over alone fell from 1.08-1.13 to 1.00-1.03. When the process is not busy a
    wake-up is on time and the grain is back at 1 ms after the next wait.
    """
    return min(max(woke_late_s, POLL_GRAIN_S), sys.getswitchinterval())


class V2Worker:
    """The thread that runs one v2 instrument."""

    def __init__(self, itype: InstrumentType, ctx: InstrumentContext, poll_hz: float,
                 distributor: Broadcast[V2Read], events: EventSink,
                 max_commands: int = 100, policy: RestartPolicy | None = None) -> None:
        self.itype = itype
        self.ctx = ctx
        self.id = ctx.instrument_id
        self.period = 1.0 / poll_hz
        self.distributor = distributor
        self.events = events
        self.health = InstrumentHealth(self.id, itype.name, "v2")
        self.commands: queue.Queue[tuple[str, tuple[Any, ...], dict[str, Any], Future[Any]]] = \
            queue.Queue(maxsize=max_commands)
        self.stop_event = threading.Event()
        self.wake_event = threading.Event()  # set by a reconnect of its resource, or a stop
        self._retry = RETRY_FIRST_S
        self.instrument: V2Instrument | None = None
        self.thread = threading.Thread(target=self._main, name=f"daqhub-v2:{self.id}",
                                       daemon=True)
        self.busy_in = ""  # what the thread is doing now, for the shutdown report
        self.restarts = Restarts(policy or RestartPolicy())
        #: when its driver's connect() began (0: not in one). A thread cannot be interrupted,
        #: so one past the start limit is named instead (``watchdog.check_v2_connects``);
        #: ``connect_named`` is the ``connect_since`` of the attempt named already
        self.connect_since = 0.0
        self.connect_named = 0.0

    def start(self) -> None:
        self.thread.start()

    def submit(self, method: str, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue a command (a public method of the driver) for the instrument's thread."""
        fut: Future[Any] = Future()
        if self.health.state == "failed":
            raise CommandRejected(f"{self.id} failed ({self.health.last_error_seen}); {method} "
                                  "not sent")
        if self.stop_event.is_set():
            raise CommandRejected(f"{self.id} is shutting down; {method} not sent")
        try:
            self.commands.put_nowait((method, args, kwargs, fut))
        except queue.Full:
            raise CommandRejected(f"{self.id}: command queue full ({self.commands.maxsize}); "
                                  f"{method} not sent") from None
        return fut

    # --- the thread -------------------------------------------------------------------

    def _main(self) -> None:
        """The thread: :meth:`_supervise`, and if that ever ends by an exception (daqhub's
        own code: what the driver raises is counted where it calls it), the instrument
        failed, with the cause, and its queued commands fail now. A thread that ended so
        said ``running`` with 0 errors for the rest of the run, and its commands waited
        their whole limits."""
        try:
            self._supervise()
        except BaseException as exc:  # off the main thread, a KeyboardInterrupt too is code's
            why = f"its thread ended: {failure_text(exc)}"
            if not self.stop_event.is_set():
                self.health.error(why)
                self.health.set_state("failed", why)
                self.events(self.id, "failed", why)
            self._reject_pending(why)

    def _supervise(self) -> None:
        while not self.stop_event.is_set():
            try:
                inst = self._connect()
            except DEVICE_ERRORS as exc:  # the device or its link: reconnect, for ever
                self._failed_attempt(f"connect failed: {failure_text(exc)}")
                self._back_off()
                continue
            except BaseException as exc:  # a bug: a crash (restarts.py); sys.exit() too
                if self._crashed("connect", exc):
                    continue
                return
            if self.health.state in ("reconnecting", "error"):
                self.health.reconnects += 1
                self.events(self.id, "reconnected", "")
            self.health.set_state("running", "connected")
            self.restarts.started()
            crash: BaseException | None = None
            try:
                self._loop(inst)
            except BaseException as exc:  # what _loop lets through is a bug in the driver
                crash = exc
            finally:
                self.busy_in = "close"
                try:
                    inst.close()
                except BaseException as exc:  # a broken device's close must not hide why
                    self.health.close_failed(exc, self.stop_event.is_set())
                self.busy_in = ""
            if crash is not None:
                if self._crashed("read", crash):
                    continue
                return
            if not self.stop_event.is_set():
                self._back_off()
        self._reject_pending("shutting down")
        self.health.set_state("stopped", "shut down")

    def _connect(self) -> V2Instrument:
        """A new driver, connected. ``connect_since`` covers the factory and ``connect()``
        alone: set during the backoff that follows a failed attempt, it made the watchdog
        say "connect() has not returned after 10 s" of a connect that had failed in 0.2 s,
        every 10 s, pointing at the runtime's own wait."""
        self.busy_in = "connect"
        self.connect_since = time.monotonic()  # a factory opening a vendor library too
        try:
            inst = self.itype.factory(self.ctx)
            if not isinstance(inst, V2Instrument):
                raise TypeError(f"factory of {self.itype.name} (v2) returned "
                                f"{type(inst).__name__}, not a V2Instrument")
            self.instrument = inst
            inst.connect()
        finally:
            self.connect_since = 0.0
            self.busy_in = ""
        return inst

    def _crashed(self, what: str, exc: BaseException) -> bool:
        """Count a crash; True after its backoff (start again), False when it failed."""
        stopping = self.stop_event.is_set()
        backoff = self.restarts.crash(self.health, self.events, what, exc, stopping)
        if stopping:
            self._reject_pending("shutting down")
            self.health.set_state("stopped", "shut down")
            return False
        if backoff is None:
            self._reject_pending(f"failed: {failure_text(exc)}")
            return False
        self.busy_in = "restart backoff"
        self.stop_event.wait(backoff)
        self.busy_in = ""
        return True

    def _back_off(self) -> None:
        """Wait before reopening: until the resource is back (a reconnect wakes every
        instrument on it) or the backoff, which only a successful read resets, runs out."""
        self.busy_in = "reconnect backoff"
        self.wake_event.wait(self._retry)
        self.wake_event.clear()
        self.busy_in = ""
        self._retry = min(self._retry * 2, RETRY_MAX_S)

    def _failed_attempt(self, message: str) -> None:
        self.health.error(message)
        self._disconnected(message)

    def _disconnected(self, why: str) -> None:
        """``reconnecting`` (said once per outage, with ``why``)."""
        if self.health.state != "reconnecting":
            self.health.set_state("reconnecting", why)
            self.events(self.id, "disconnected", why)

    def _loop(self, inst: V2Instrument) -> None:
        next_poll = time.monotonic()
        consecutive_errors = 0
        commands = self.commands
        grain = POLL_GRAIN_S
        while not self.stop_event.is_set():
            if commands.qsize():  # between two polls, even when the polls run late
                self._run_command(inst, *commands.get_nowait())
                continue
            wait = next_poll - time.monotonic()
            if wait > grain:
                timeout = min(wait, 0.5)
                try:
                    cmd = commands.get(timeout=timeout)
                except queue.Empty:
                    grain = poll_grain(time.monotonic() - next_poll + wait - timeout)
                    continue
                self._run_command(inst, *cmd)
                continue
            # start to start on a fixed grid: a poll delayed by a command keeps the grid, so
            # the rate stays the configured one; missed slots are skipped, not made up in a burst
            next_poll += self.period * max(1, math.ceil((time.monotonic() - next_poll)
                                                        / self.period))
            try:
                self.busy_in = "read"
                try:
                    batch = inst.read()
                except DataError as exc:  # values refused, the device fine: not a failed read
                    batch = self.health.read_refused(exc)
                self.busy_in = ""
                self.health.polled()
            except DEVICE_ERRORS as exc:  # anything else is a crash: _main restarts it
                self.busy_in = ""
                consecutive_errors += 1
                message = f"read failed: {failure_text(exc)}"
                self.health.error(message)
                why = reconnect_reason(exc, consecutive_errors)
                if why:
                    self._disconnected(why)
                    return  # close and reconnect through _main
                self.health.set_state("error", message)
                continue
            self._retry = RETRY_FIRST_S
            if consecutive_errors:
                consecutive_errors = 0
                self.health.set_state("running", "reads succeed again")
            n = read_size(batch) if batch is not None else 0  # not samples: the driver's crash
            last = last_sample(batch) if n else None
            if last is not None:
                self.health.produced(n, _described, last)
                try:
                    self.distributor.publish((self.id, batch))
                except SubscriptionClosed as exc:
                    self.health.error(str(exc))
                    return

    def _run_command(self, inst: V2Instrument, method: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], fut: Future[Any]) -> None:
        if not fut.set_running_or_notify_cancel():
            return
        if not is_command(inst, method):
            fut.set_exception(UnknownCommandError(
                f"{self.id} has no command {method!r}; it has: {', '.join(public_methods(inst))}"))
            return
        self.busy_in = method
        try:
            fut.set_result(getattr(inst, method)(*args, **kwargs))
        except BaseException as exc:  # sys.exit() in a command ended the thread, its caller
            # waiting its whole limit: it fails that command alone, as any exception does
            self.health.command_failed(method, exc)
            fut.set_exception(as_error(exc))
        finally:
            self.busy_in = ""

    def _reject_pending(self, why: str) -> None:
        while True:
            try:
                _, _, _, fut = self.commands.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(CommandRejected(f"{self.id}: {why}; command not run"))


class V2Runtime:
    """All v2 workers of a run."""

    def __init__(self, distributor: Broadcast[V2Read], events: EventSink) -> None:
        self.distributor = distributor
        self.events = events
        self.workers: dict[str, V2Worker] = {}

    def add(self, itype: InstrumentType, ctx: InstrumentContext, poll_hz: float,
            policy: RestartPolicy | None = None) -> V2Worker:
        w = V2Worker(itype, ctx, poll_hz, self.distributor, self.events, policy=policy)
        self.workers[w.id] = w
        return w

    def start(self) -> None:
        for w in self.workers.values():
            w.start()

    def signal_stop(self) -> None:
        for w in self.workers.values():
            w.stop_event.set()
            w.wake_event.set()

    def wait(self, timeout: float) -> list[str]:
        """Join every started worker within ``timeout`` in total; ids of those still running."""
        deadline = time.monotonic() + timeout
        started = [w for w in self.workers.values() if w.thread.ident is not None]
        for w in started:
            w.thread.join(max(0.0, deadline - time.monotonic()))
        return [w.id for w in started if w.thread.is_alive()]

    def call(self, instrument_id: str, method: str, *args: Any, timeout: float = 30.0,
             **kwargs: Any) -> Any:
        worker = self.workers[instrument_id]
        fut = worker.submit(method, *args, **kwargs)
        try:
            return result_within(fut, timeout)
        except NoResult:
            fut.cancel()
            raise TimeoutError(f"{instrument_id}.{method}: no result within {timeout:g} s "
                               f"({worker.health.behind(worker.busy_in)})") from None


def _described(m: Measurement) -> tuple[str, int]:
    """The live view's text and time of a sample."""
    return describe_value(m.data), m.timestamp_ns
