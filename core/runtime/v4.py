"""The V4 runtime: supervised asyncio actors on one event loop in its own thread.

Each v4 instrument is an actor with a bounded mailbox. Its runner alternates
between poll ticks and messages, one at a time, so an actor never runs two of
its own methods at once (bar the ``stop`` that ``DualRuntimeManager.halt`` sends a
toolkit driver's actor beside the command in flight). Control messages (``stop``,
``abort`` ...) sit in a separate lane served before routine ones, so a stop never
waits behind a queue of position requests (it does wait for the command in flight).

Supervision, alike for both flavors: what goes wrong with the device or its link
is not a crash. A read that raises a device error (:data:`DEVICE_ERRORS`: a
garbled or truncated reply, a reply timeout) or overruns ``read_timeout_s`` (it
is cancelled) counts as an error and polling goes on; three in a row, or a lost
connection, close the actor and start it again when its resource is back
(state ``reconnecting``, woken at once by the resource's reconnect, else retried
with backoff), like a v2 worker. Only a crash (any other exception) restarts the
actor with exponential backoff; after ``max_restarts`` restarts within
``window_s`` it is marked failed and reported while the others keep running. A command
(any other public method) that raises or overruns ``call_timeout_s`` fails only that
command: its caller gets the exception, health records it, and the actor is not restarted
(a wrong argument from a script must not cost an instrument its state). A read that
raises a ``DataError`` (values it cannot give as their channels are declared) is a read
made, its values refused samples (``InstrumentHealth.read_refused``), not a failed one: a
:class:`~daqhub.measurement.RefusedValues` (a toolkit poll's value its channel cannot hold)
names those and keeps the rest, which are published, as in a v2 worker.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import math
import threading
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from ..command_limits import NoResult, result_within
from ..host import is_plugin_fault
from ..instrument import (
    CommandRejected,
    UnknownCommandError,
    V4Actor,
    is_command,
    public_methods,
)
from ..measurement import ChannelSpec, DataError, value_for_error
from ..schema import declared_channel, describe, with_source
from ..specs import InstrumentContext, InstrumentType
from .broadcast import SubscriptionClosed
from .health import (
    DEVICE_ERRORS,
    EventSink,
    InstrumentHealth,
    as_error,
    failure_text,
    reconnect_reason,
    refused_text,
    si_text,
)
from .loopselect import LoopPasses
from .restarts import RestartPolicy, Restarts
from .v2 import POLL_GRAIN_S, RETRY_FIRST_S, RETRY_MAX_S, poll_grain


class BatchSink(Protocol):
    """Where actors publish their unified batches (the bridge's ``apublish`` in a run), each
    with the ``(instrument id, channel)`` its schema declares."""

    def apublish(self, batch: pa.RecordBatch, channel: tuple[str, str]) -> Awaitable[None]: ...


class _Nowhere:
    """The sink of a runtime not yet told where to publish: a batch raises, loudly."""

    async def apublish(self, batch: pa.RecordBatch, channel: tuple[str, str]) -> None:
        raise SubscriptionClosed("the V4 runtime was not told where to publish (publish_to)")


CONTROL_METHODS = frozenset({"stop", "abort", "halt", "emergency_stop"})
CATCH_UP_S = 2 * POLL_GRAIN_S  # a poll later than this starts its grid again
T = TypeVar("T")


class MailboxFull(CommandRejected):
    pass


class ActorFailed(CommandRejected):
    pass


class DeviceLost(ConnectionError):
    """Reads keep failing: the runner closes the actor and reopens it (not a crash)."""


@dataclass
class _Message:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: concurrent.futures.Future[Any] | None


class Mailbox:
    """Two lanes (control first), bounded, awaited by exactly one runner."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.control: collections.deque[_Message] = collections.deque()
        self.normal: collections.deque[_Message] = collections.deque()
        self.arrived = asyncio.Event()

    def check_room(self, msg: _Message) -> None:
        """Refuse a message the mailbox has no room for (safe from any thread: a read)."""
        if msg.method not in CONTROL_METHODS and len(self.normal) >= self.capacity:
            raise MailboxFull(f"mailbox full ({self.capacity} messages); {msg.method} not sent")

    def put(self, msg: _Message) -> None:
        self.check_room(msg)
        lane = self.control if msg.method in CONTROL_METHODS else self.normal
        lane.append(msg)
        self.arrived.set()

    def take(self) -> _Message | None:
        """The next message, control first; the runner clears ``arrived`` itself before it
        waits on it."""
        if self.control:
            return self.control.popleft()
        if self.normal:
            return self.normal.popleft()
        return None

    def depth(self) -> int:
        return len(self.control) + len(self.normal)

    def drain(self) -> list[_Message]:
        out = [*self.control, *self.normal]
        self.control.clear()
        self.normal.clear()
        return out


class _NoPasses:
    """What a runner not on a :class:`V4Runtime` loop sees: no pass ever counted."""

    passes = 0


class ActorRunner:
    """Supervises one actor: start, poll, serve messages, restart, fail."""

    #: the passes of the loop it runs on (a runner on another loop sees none, and yields
    #: before every poll)
    loop_passes: LoopPasses | _NoPasses = _NoPasses()

    def __init__(self, itype: InstrumentType, ctx: InstrumentContext, poll_hz: float,
                 publisher: BatchSink, events: EventSink,
                 policy: RestartPolicy, mailbox_capacity: int = 100) -> None:
        self.itype = itype
        self.ctx = ctx
        self.id = ctx.instrument_id
        self.period = 1.0 / poll_hz
        self.publisher = publisher
        self.events = events
        self.policy = policy
        self.health = InstrumentHealth(self.id, itype.name, "v4")
        # Made here, not when the task first runs: a command sent right after start() is
        # queued until the actor is up instead of finding no mailbox (a race seen in CI).
        self.mailbox = Mailbox(mailbox_capacity)
        self.task: asyncio.Task[None] | None = None
        #: the actor while it is up, for a ``stop`` sent beside the command in flight
        #: (:meth:`~daqhub.runtime.dual.DualRuntimeManager.halt`)
        self.actor: V4Actor | None = None
        self.stopping = False
        self.busy_in = ""
        self.restarts = Restarts(policy)
        self.wake = asyncio.Event()  # set by a reconnect of its resource, or a stop
        self.blocked_since = 0.0    # set by the watchdog: this actor blocks the loop since
        self._retry = RETRY_FIRST_S
        self._deadline = 0.0        # loop time the running call must end by (0: none runs)
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf   # loop time the deadline timer fires (inf: none is armed)
        self._overran = False       # the deadline timer cancelled the running call

    async def run(self) -> None:
        while not self.stopping:
            actor: V4Actor | None = None
            try:
                actor = self.itype.factory(self.ctx)
                if not isinstance(actor, V4Actor):
                    raise TypeError(f"factory of {self.itype.name} (v4) returned "
                                    f"{type(actor).__name__}, not a V4Actor")
                self.busy_in = "start"
                await self._within("start", actor.start(), self.policy.start_timeout_s)
                if self.health.state == "reconnecting":
                    self.health.reconnects += 1
                    self.events(self.id, "reconnected", "")
                self.health.set_state("running", "started")
                self.restarts.started()
                self.actor = actor
                await self._serve(actor)
            except asyncio.CancelledError:
                raise  # this task's own cancellation: every call into the actor is guarded
                # (_within, _bounded), so an actor's stray CancelledError arrives as a crash
            except DEVICE_ERRORS as exc:  # the device or its link, not the actor: reconnect
                what = "connect" if self.busy_in == "start" else self.busy_in or "actor"
                message = str(exc) if isinstance(exc, DeviceLost) else \
                    f"{what} failed: {exc or type(exc).__name__}"
                if not isinstance(exc, DeviceLost):
                    self.health.error(message)
                if self.stopping:
                    break
                if self.health.state != "reconnecting":
                    self.health.set_state("reconnecting", message)
                    self.events(self.id, "disconnected", message)
                await self._close(actor)
                actor = None
                try:  # until the resource is back, or the backoff (reset by a good read) ends
                    async with asyncio.timeout(self._retry):
                        await self.wake.wait()
                except TimeoutError:
                    pass
                self.wake.clear()
                self._retry = min(self._retry * 2, RETRY_MAX_S)
            except BaseException as exc:  # a crash (restarts.py): sys.exit() in a driver too
                if not self._from_actor(exc):
                    raise
                stopping = self.stopping
                backoff = self.restarts.crash(self.health, self.events,
                                              self.busy_in or "actor", exc, stopping)
                if stopping:
                    break
                if backoff is None:
                    self._fail_messages(f"actor {self.id} failed: {failure_text(exc)}")
                    return
                await asyncio.sleep(backoff)
            finally:
                await self._close(actor)
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer, self._armed_at = None, math.inf
        self._fail_messages(f"{self.id} is shutting down")
        self.health.set_state("stopped", "shut down")

    async def _close(self, actor: V4Actor | None) -> None:
        self.actor = None
        if actor is None or _running_task() is not self.task:
            return  # (not in its task: the runner's coroutine is closed after its loop died)
        self.busy_in = "close"
        try:
            await self._within("close", actor.close(), self.policy.start_timeout_s)
        except BaseException as exc:  # a broken actor's close must not mask why
            if not self._from_actor(exc):
                raise
            self.health.close_failed(exc, self.stopping)
        self.busy_in = ""

    def _from_actor(self, exc: BaseException) -> bool:
        """Whether ``exc``, which reached the runner, is its actor's to count (a crash, a
        failed command or close): any ``Exception``, and a ``SystemExit``, ``KeyboardInterrupt``
        or ``GeneratorExit`` the actor raised, which asyncio lets through a task and which
        ended the whole loop, every v4 instrument with it, in silence.

        Not the runner's own cancellation (a stray one is a StrayCancel where it is raised),
        a real Ctrl-C (only ever on the main thread, where a loop of a test may run; never
        the V4 runtime's), or a GeneratorExit thrown into the runner's coroutine to close
        it: a task's step never closes its own coroutine, so the actor raised one only
        while its task runs.
        """
        if isinstance(exc, asyncio.CancelledError):
            return False
        if isinstance(exc, GeneratorExit):
            return _running_task() is self.task
        return is_plugin_fault(exc)

    async def _within(self, what: str, work: Awaitable[T], timeout: float) -> T:
        """The actor's ``start()`` or ``close()``, a TimeoutError past ``timeout``; a
        CancelledError it raises itself is its crash (:func:`stray_cancel`).

        ``asyncio.timeout``, not ``wait_for``: the call runs in this runner's task (3.11's
        ``wait_for`` makes one), so a stray CancelledError is told from this task's own
        cancellation by the task's ``cancelling()`` count.
        """
        try:
            async with asyncio.timeout(timeout):
                return await work
        except asyncio.CancelledError as exc:
            if being_cancelled():
                raise
            raise stray_cancel(self.id, what, exc) from None

    async def _bounded(self, what: str, work: Awaitable[T], timeout: float) -> T:
        """A read or command of the actor, cancelled when it overruns ``timeout`` (a
        TimeoutError).

        The deadline is the actor's, not the call's: one timer per actor that re-arms itself
        at the running call's deadline (:meth:`_check_deadline`), instead of a timer handle
        made and cancelled on every poll, or the task ``asyncio.wait_for`` makes per command
        (a third of a scan step's round trip).
        """
        self.busy_in = what
        self.blocked_since = 0.0
        loop = asyncio.get_running_loop()
        self._deadline = deadline = loop.time() + timeout
        if deadline < self._armed_at:  # none armed, or a shorter bound than the armed one
            if self._deadline_timer is not None:
                self._deadline_timer.cancel()
            self._deadline_timer = loop.call_at(deadline, self._check_deadline)
            self._armed_at = deadline
        try:
            return await work
        except asyncio.CancelledError as exc:
            if self._overran:
                self._overran = False
                if self.task is not None and self.task.uncancel() == 0:  # ours alone
                    raise TimeoutError(f"{self.id}.{what} did not finish within {timeout:g} s "
                                       "and was cancelled") from None
            if being_cancelled():
                raise
            raise stray_cancel(self.id, what, exc) from None
        finally:
            self._deadline = 0.0
            if self._overran:  # the call swallowed our cancellation and returned
                self._overran = False
                if self.task is not None:
                    self.task.uncancel()
            self.busy_in = ""
            if self.blocked_since:  # noticed by the watchdog while this call ran
                self.health.error(f"{what} blocked the event loop for "
                                  f"{time.monotonic() - self.blocked_since:.1f} s (a blocking "
                                  "call in an async method)")
                self.blocked_since = 0.0

    def _check_deadline(self) -> None:
        """The actor's deadline timer: cancel a call that overran, else re-arm for this one."""
        self._deadline_timer, self._armed_at = None, math.inf
        if not self._deadline or self.task is None:
            return  # nothing running: the next call arms the timer again
        loop = self.task.get_loop()
        if loop.time() < self._deadline:
            self._deadline_timer = loop.call_at(self._deadline, self._check_deadline)
            self._armed_at = self._deadline
            return
        self._overran = True
        self.task.cancel()

    async def _serve(self, actor: V4Actor) -> None:
        """Poll and serve messages until stopped.

        Every poll is preceded by a suspension (the wait for its time, a bare yield, or the
        previous read's own: the loop made a pass while it ran, :class:`LoopPasses`), so an
        actor whose ``read()`` never awaits cannot keep the loop from the other actors,
        thread-safe callbacks and the watchdog's heartbeat. A poll due within the grain
        runs now: ``POLL_GRAIN_S``, as the loop's timers wake in whole milliseconds and
        waiting for less would cap a fast actor near 1 kHz, or more while its waits end late
        (:func:`~daqhub.runtime.v2.poll_grain`). Polls stay on their grid of periods, each
        at most that much early; a poll late by up to ``CATCH_UP_S`` (a timer that woke a
        millisecond late) keeps the grid, so the missed polls are made at once and the rate
        is the one asked; later than that (a slow read, a loop too busy), the grid starts
        again from now.
        """
        next_poll = time.monotonic()
        grain = POLL_GRAIN_S  # how early a poll may start: poll_grain says why it grows
        failed_reads = 0
        yielded = False
        mailbox = self.mailbox
        loop_passes = self.loop_passes
        read_timeout = self.policy.read_timeout_s
        known = KnownSchemas({(self.id, c.name): c for c in self.ctx.channels})
        while not self.stopping:
            msg = mailbox.take() if mailbox.control or mailbox.normal else None
            if msg is not None:
                await self._handle(actor, msg)
                continue
            now = time.monotonic()
            if next_poll - now > grain:
                mailbox.arrived.clear()  # both lanes are empty: wait for a message or the time
                try:
                    async with asyncio.timeout(next_poll - now):  # no task, unlike wait_for
                        await mailbox.arrived.wait()
                except TimeoutError:
                    grain = poll_grain(time.monotonic() - next_poll)
                yielded = True
                continue
            if not yielded:
                yielded = True
                await asyncio.sleep(0)
                continue
            next_poll += self.period
            if next_poll < now - CATCH_UP_S:
                next_poll = now + self.period
            yielded = False
            passes = loop_passes.passes
            try:
                batches = await self._bounded("read", actor.read(), read_timeout)
            except DataError as exc:  # values refused, the device fine: not a failed read
                batches = self.health.read_refused(exc)
            except DEVICE_ERRORS as exc:
                failed_reads += 1
                message = f"read failed: {failure_text(exc)}"
                self.health.error(message)
                why = reconnect_reason(exc, failed_reads)
                if why:  # reopen when its resource is back
                    raise DeviceLost(why) from exc
                self.health.set_state("error", message)
                continue
            # the read let the loop run: the next poll needs no yield of its own (one loop
            # pass per poll, not two)
            yielded = loop_passes.passes != passes
            self._retry = RETRY_FIRST_S
            if failed_reads:
                failed_reads = 0
                self.health.set_state("running", "reads succeed again")
            rows, last = 0, None
            if not isinstance(batches, list | tuple):
                batches = _nothing_or_refused(actor, batches)
            for at, b in enumerate(batches):
                if not isinstance(b, pa.RecordBatch):
                    raise _refused_read(actor, b, f" as item {at} of {len(batches)}")
                if b.num_rows == 0:
                    continue
                rows += b.num_rows
                try:
                    unified, channel = known.route(b.schema)
                except RefusedChannel as exc:
                    self.health.refused(b.num_rows,
                                        refused_text(b.num_rows, exc.channel, str(exc)))
                    continue
                last = b
                try:
                    await self.publisher.apublish(b if unified else with_source(b, "v4"), channel)
                except SubscriptionClosed as exc:
                    self.health.error(str(exc))
                    return
            # None: nothing, or nothing accepted (the live view keeps its sample); else the
            # live-view text is made when someone looks
            self.health.polled(rows, None if last is None else _last_sample, last)

    async def _handle(self, actor: V4Actor, msg: _Message) -> None:
        fut = msg.future
        if fut is not None and not fut.set_running_or_notify_cancel():
            return
        if not is_command(actor, msg.method):
            err = UnknownCommandError(f"{self.id} has no command {msg.method!r}; it has: "
                              f"{', '.join(public_methods(actor))}")
            if fut:
                fut.set_exception(err)
            return
        self.busy_in = msg.method
        try:
            try:
                result = getattr(actor, msg.method)(*msg.args, **msg.kwargs)
            except asyncio.CancelledError as exc:  # a plain method's stray one: that command's
                raise stray_cancel(self.id, msg.method, exc) from None
            if asyncio.iscoroutine(result):
                result = await self._bounded(msg.method, result, self.policy.call_timeout_s)
        except BaseException as exc:
            if not self._from_actor(exc):  # the runner's end (a forced shutdown): its caller
                if fut:                      # hears it now, not at the end of its limit
                    fut.set_exception(ActorFailed(f"{self.id} was stopped; {msg.method} did "
                                                  "not finish"))
                raise
            self.health.command_failed(msg.method, exc)
            if fut:
                fut.set_exception(as_error(exc))
            return  # a failed command is the caller's to handle, not a reason to restart
        finally:
            self.busy_in = ""
        if fut:
            fut.set_result(result)

    def _fail_messages(self, why: str) -> None:
        for msg in self.mailbox.drain():
            if msg.future and msg.future.set_running_or_notify_cancel():
                msg.future.set_exception(ActorFailed(f"{why}; {msg.method} not run"))


class StrayCancel(RuntimeError):
    """An actor raised CancelledError while nothing cancelled its runner: a bug of the actor.

    Let through, it ended the runner's task in silence (the live view said ``running`` for
    ever, the report "did not stop" or "never connected" with no cause), so it is a crash of
    the actor in a read or ``start()`` (restarted, or failed, per its policy) and a failure of
    only that command in a command, as any other exception is.
    """


def _running_task() -> asyncio.Task[Any] | None:
    """The task whose step runs now on this thread's loop (None: none, or no loop runs)."""
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None


def being_cancelled() -> bool:
    """Whether the running task is being cancelled (by the runtime's shutdown, a deadline or
    a timeout), as opposed to a CancelledError that an awaited call raised on its own."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def stray_cancel(instrument_id: str, what: str, exc: BaseException) -> StrayCancel:
    """The crash an actor's own CancelledError stands for, keeping where it was raised (the
    last frame of its traceback is the actor's line, which the health line names)."""
    return StrayCancel(f"{instrument_id}.{what} raised CancelledError, but nothing cancelled "
                       "it (an actor must not raise CancelledError itself)"
                       ).with_traceback(exc.__traceback__)


class RefusedChannel(DataError):
    """A batch's channel refused by :meth:`KnownSchemas.route`; ``channel`` is the name its
    schema gives (None: it has no daqhub metadata), for the refusal's text
    (:func:`~daqhub.runtime.health.refused_text`, the bridge's wording too)."""

    def __init__(self, why: str, channel: str | None) -> None:
        super().__init__(why)
        self.channel = channel


class KnownSchemas:
    """What a runner needs of each schema its actor sends, worked out once per schema.

    An actor sends the same few schemas over and over; comparing one with a schema seen
    before (``Schema.equals``, metadata included: 45 ns) is ten times cheaper than reading
    its metadata and field names again on every poll. A schema of a channel the instrument
    did not declare (or declared otherwise, or of another instrument) is refused, as the
    bridge refuses a v2 driver's: its batches would reach consumers that cannot store them.
    """

    __slots__ = ("declared", "seen")

    def __init__(self, declared: Mapping[tuple[str, str], ChannelSpec]) -> None:
        self.declared = declared
        #: (schema, has its ``source`` column, (instrument id, channel) or its refusal, made
        #: and never raised), newest first
        self.seen: list[tuple[pa.Schema, bool, tuple[str, str] | RefusedChannel]] = []

    def route(self, schema: pa.Schema) -> tuple[bool, tuple[str, str]]:
        """Whether the schema has its source column, and its channel; a
        :class:`RefusedChannel` when the channel is refused."""
        for entry in self.seen:
            if schema.equals(entry[0], check_metadata=True):
                break
        else:
            channel: tuple[str, str] | RefusedChannel
            try:
                channel = declared_channel(schema, self.declared)
            except DataError as exc:
                try:
                    name: str | None = describe(schema)[1].name
                except DataError:  # no daqhub metadata: it names no channel
                    name = None
                channel = RefusedChannel(str(exc), name)
            entry = (schema, schema.get_field_index("source") >= 0, channel)
            self.seen = [entry, *self.seen[:MAX_SCHEMAS - 1]]
        found = entry[2]
        if isinstance(found, RefusedChannel):  # a new one: the kept one gathers no traceback
            raise RefusedChannel(str(found), found.channel)
        return entry[1], found


MAX_SCHEMAS = 16  # schemas a runner remembers (an actor with more channels re-reads some)


def _refused_read(actor: V4Actor, value: object, where: str = "") -> TypeError:
    """The crash of an actor whose ``read()`` returned ``value`` (``where``: as which item),
    naming its read and what it must return: found out later, it was an AttributeError of
    pyarrow's blamed on the runner's own line."""
    described = " ".join(value_for_error(value).split())  # a batch's repr has many lines
    return TypeError(f"{type(actor).__name__}.read() returned {described}{where}: a v4 read() "
                     "returns a list of pyarrow.RecordBatch (one per channel with new samples)")


def _nothing_or_refused(actor: V4Actor, batches: object) -> tuple[()]:
    """A read's result that is not a list or tuple: None is nothing read, anything else its
    actor's crash (:func:`_refused_read`)."""
    if batches is None:
        return ()
    raise _refused_read(actor, batches)


def _last_sample(batch: pa.RecordBatch) -> tuple[str, int]:
    """The live view's text and time of a batch's last sample."""
    last = batch.num_rows - 1
    return (_short(batch.column("value")[last], describe(batch.schema)[1].unit),
            batch.column("timestamp_ns")[last].as_py())


def _refuse_if_gone(runner: ActorRunner, msg: _Message) -> None:
    if runner.stopping or runner.health.state in ("failed", "stopped"):
        state = "shutting down" if runner.stopping else runner.health.state
        raise ActorFailed(f"{runner.id} is {state}; {msg.method} not sent")


def _short(value: pa.Scalar, unit: str) -> str:
    v = value.as_py()
    if isinstance(v, float):
        return si_text(v, unit)
    if isinstance(v, list):
        return f"[{len(v)} values] {unit}".strip()
    return f"{v} {unit}".strip()


class V4Runtime:
    """The event loop thread and every actor runner on it."""

    def __init__(self, publisher: BatchSink | None, events: EventSink,
                 policy: RestartPolicy | None = None) -> None:
        self.publisher: BatchSink = publisher or _Nowhere()
        self.events = events
        self.policy = policy or RestartPolicy()
        self.runners: dict[str, ActorRunner] = {}
        self.passes = LoopPasses()
        self.loop = asyncio.SelectorEventLoop(self.passes)
        self.thread = threading.Thread(target=self._main, name="daqhub-v4-loop", daemon=True)
        self._started = threading.Event()
        #: done once the loop has stopped and closed: what runs on it has ended or never will
        self._ended = concurrent.futures.Future[None]()

    def add(self, itype: InstrumentType, ctx: InstrumentContext, poll_hz: float,
            policy: RestartPolicy | None = None) -> ActorRunner:
        r = ActorRunner(itype, ctx, poll_hz, self.publisher, self.events, policy or self.policy)
        r.loop_passes = self.passes
        self.runners[r.id] = r
        return r

    def publish_to(self, publisher: BatchSink) -> None:
        """Where every actor publishes from now on (set before :meth:`start`)."""
        self.publisher = publisher
        for r in self.runners.values():
            r.publisher = publisher

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._started.set()
        try:
            self.loop.run_forever()
        except BaseException as exc:  # asyncio lets a SystemExit or KeyboardInterrupt out of
            self._loop_died(exc)       # a callback or a task of no runner's (none of theirs)
        finally:
            try:
                self.loop.close()
            finally:  # a close that raised leaves no wait for the loop's end to time out
                self._ended.set_result(None)

    def _loop_died(self, exc: BaseException) -> None:
        """Every actor stopped with the loop: each still up is ``failed``, with the cause,
        and its queued commands fail now. It said ``running`` for the rest of the run, and
        its commands waited their whole limits; the watchdog raises the alarm."""
        why = f"the v4 event loop thread ended: {failure_text(exc)}"
        for r in self.runners.values():
            if r.task is None or r.task.done():
                continue
            r.health.error(why)
            r.health.set_state("failed", why)
            r.events(r.id, "failed", why)
            r._fail_messages(why)

    def start(self, timeout: float = 5.0) -> None:
        self.thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"the V4 event loop thread did not start within {timeout} s")
        for r in self.runners.values():
            self.loop.call_soon_threadsafe(self._spawn, r)

    def _spawn(self, r: ActorRunner) -> None:
        r.task = self.loop.create_task(r.run(), name=f"daqhub-v4:{r.id}")

    def tell(self, instrument_id: str, method: str, *args: Any, **kwargs: Any) -> None:
        """Send without waiting for the result (errors are counted in health)."""
        self._post(instrument_id, _Message(method, args, kwargs, None))

    def ask_future(self, instrument_id: str, method: str, *args: Any,
                   **kwargs: Any) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._post(instrument_id, _Message(method, args, kwargs, fut))
        return fut

    def ask(self, instrument_id: str, method: str, *args: Any, timeout: float = 30.0,
            **kwargs: Any) -> Any:
        """Call an actor method from any thread and wait for its result."""
        fut = self.ask_future(instrument_id, method, *args, **kwargs)
        try:
            return result_within(fut, timeout)
        except NoResult:
            fut.cancel()
            runner = self.runners[instrument_id]
            raise TimeoutError(f"{instrument_id}.{method}: no result within {timeout:g} s "
                               f"({runner.health.behind(runner.busy_in)})") from None

    def _post(self, instrument_id: str, msg: _Message) -> None:
        runner = self.runners[instrument_id]
        _refuse_if_gone(runner, msg)
        if threading.current_thread() is self.thread:
            runner.mailbox.put(msg)
            return
        if msg.future is not None:
            # An ask: its future carries whatever happens, a full mailbox included, so do
            # not wait for the loop to take the message (half the time of a scan step).
            # A full mailbox is still refused here at once; the loop checks again.
            runner.mailbox.check_room(msg)

            def post_or_fail() -> None:
                try:
                    _refuse_if_gone(runner, msg)  # it may have stopped since
                    runner.mailbox.put(msg)
                except CommandRejected as exc:  # gone, or its mailbox full
                    if msg.future is not None and not msg.future.done():
                        msg.future.set_exception(exc)

            self.loop.call_soon_threadsafe(post_or_fail)
            return
        done = concurrent.futures.Future[None]()  # a tell: only here can a failure be seen

        def post() -> None:
            try:
                runner.mailbox.put(msg)
                done.set_result(None)
            except Exception as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(post)
        try:
            done.result(5.0)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"{instrument_id}.{msg.method}: the V4 event loop did not take "
                               f"the message within 5 s (the loop is blocked; busy in "
                               f"{runner.busy_in or 'nothing known'!r})") from None

    def wake(self, ids: list[str]) -> None:
        """The named actors' resource is back: end their reconnect waits now."""
        def wake_all() -> None:
            for i in ids:
                self.runners[i].wake.set()
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(wake_all)

    def signal_stop(self) -> None:
        def stop_all() -> None:
            for r in self.runners.values():
                r.stopping = True
                r.mailbox.arrived.set()
                r.wake.set()
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(stop_all)

    def wait(self, timeout: float) -> list[str]:
        """Wait for every actor to finish; ids of those still running after ``timeout``.

        Waited for ``timeout`` and no longer, on this thread too: a blocked loop never runs
        the wait, and a second more past the shutdown's budget was waited for it."""
        if not self.loop.is_running():
            return []
        return self._await_tasks(list(self.runners), timeout, cancel=False)

    def force(self, ids: list[str], timeout: float = 2.0) -> list[str]:
        """Cancel the named actors' tasks; ids still not finished after ``timeout`` (no
        longer, as :meth:`wait`)."""
        if not self.loop.is_running():
            return []
        return self._await_tasks(ids, timeout, cancel=True)

    def _await_tasks(self, ids: list[str], timeout: float, *, cancel: bool) -> list[str]:
        """Wait up to ``timeout`` for the named actors' tasks to end (cancelled first, when
        ``cancel``); ids of those still running. The loop's end ends the wait too.

        The loop gets a plain callback, which makes nothing until the loop runs it: the
        coroutine this used to hand over (``run_coroutine_threadsafe``) was left never
        awaited, a RuntimeWarning, when the loop stopped after the caller saw it running,
        and that caller waited its whole ``timeout`` for it.
        """
        finished = concurrent.futures.Future[None]()

        def watch() -> None:  # on the loop
            pending = {t for i in ids if (t := self.runners[i].task) is not None
                       and not t.done()}
            if cancel:
                for t in pending:
                    t.cancel()

            def ended(task: asyncio.Task[None]) -> None:
                pending.discard(task)
                if not pending and not finished.done():
                    finished.set_result(None)

            for t in pending:
                t.add_done_callback(ended)
            if not pending:
                finished.set_result(None)

        try:
            self.loop.call_soon_threadsafe(watch)
        except RuntimeError:  # closed since the caller saw it running: nothing runs on it
            return self._running(ids)
        concurrent.futures.wait([finished, self._ended], timeout,
                                return_when=concurrent.futures.FIRST_COMPLETED)
        return self._running(ids)

    def _running(self, ids: list[str]) -> list[str]:
        """Those of ``ids`` whose actor's task has not finished."""
        return [i for i in ids if (t := self.runners[i].task) is not None and not t.done()]

    def stop_loop(self) -> None:
        """Ask the loop to stop (:meth:`close` waits for its thread)."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)

    def close(self, timeout: float = 2.0) -> bool:
        """Stop the loop and join its thread; False if it did not end in time."""
        self.stop_loop()
        if self.thread.is_alive():
            self.thread.join(timeout)
        return not self.thread.is_alive()
