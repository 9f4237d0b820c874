"""DualRuntimeManager: both flavors on the shared managers, health, phased shutdown.

Start order: shared managers -> unified-stream consumers -> bridge -> V4 -> V2,
so nothing produced is ever published to nobody. An instrument that cannot be
set up (unknown type, a port that will not open) does not stop the others from
being tried: start() raises :class:`StartError` naming every one with its cause.
Shutdown runs in phases, each bounded, and the whole bounded by
``shutdown_timeout``:

0. stop the routines and join them (a step in flight is abandoned, and the
   routine recorded ``stopped``, not failed), so no command races the stop; every
   connected Motion instrument is halted (:meth:`~DualRuntimeManager.halt`), so a command
   that holds the instrument (a routine's ``home``, a script's ``wait_until_done``) ends
   now and the instrument stops in its turn instead of being forced;
1. signal both runtimes to stop;
2. wait for the V4 actors (5 s by default), then for the V2 threads (5 s);
3. force what did not stop: cancel actor tasks, close the hardware under
   hung V2 threads (their blocking I/O then fails and the thread usually ends);
4. release shared resources: close every serial port and VISA session;
5. drain the bridge, then flush and close every consumer (storage, each flavor of it on
   its own: its *lanes*), each close on a helper thread waited for until the budget ends
   (one still closing is named as leaked: the run is not ok; one whose thread is still in
   its ``write()`` is not closed); these last steps of the data get at least
   :data:`SINK_CLOSE_MIN_S` however much of the budget a hung driver took, and the V4
   loop's thread is waited for after them. Then let the ``on_stopped`` listeners finish
   (the session records' last flush): what they could not write is in the report's
   errors. ``budget.json`` is saved last, after the stop notification, so what that
   raised is in it too.

It ends with a report: one outcome per instrument and routine (see
:mod:`.outcome`; only those that are ok are "clean"), what was forced, what
leaked (threads still alive), which resources would not close, and counts per
instrument and channel; ``budget.json`` (one per session) keeps it with the
budget history and every instrument's events. A second ``shutdown()`` returns
the same report.

With ``[daqhub] workers = N`` (N > 1) the instruments run in worker processes instead
(:mod:`.workers`, each an instance of this class for its shard): this one keeps storage,
routines, commands, health and the report, and stops the workers after phase 2.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from ..command_limits import NoResult, result_within
from ..commands import check_arguments
from ..config import InstrumentConfig, LabConfig
from ..driver.declare import urgent_commands
from ..driver.flavors import SessionActor, SessionInstrument
from ..host import PluginHost, PluginProblem
from ..measurement import ChannelSpec, V2Read
from ..resources import PortEvent, SerialPortManager, VisaSessionManager, line_settings
from ..routines import RoutineRunner
from ..schema import META_INSTRUMENT, describe
from ..specs import InstrumentContext, InstrumentType
from ..storage import FlavorSink, FlavorStorage, StorageSession, WriteFailed, replace_whole
from . import gcbaseline
from .bridge import MeasurementBridge
from .broadcast import Broadcast, Subscription, SubscriptionClosed
from .budget import HISTORY_FILE, Budget, BudgetMonitor
from .health import CONNECTED_STATES, InstrumentHealth, as_error, failure_text
from .notify import Notifier
from .outcome import instrument_outcome, routine_outcome
from .rates import RateWatch
from .restarts import RestartPolicy
from .v2 import V2Runtime, V2Worker
from .v4 import ActorRunner, V4Runtime
from .watchdog import LoopWatchdog, check_v2_connects
from .workers import WorkerPool

log = logging.getLogger("daqhub.runtime")
#: alarms kept (``alarms_total`` counts them all) ...
ALARMS_KEPT = 500
#: ... of which the newest keep a blocked loop's stack (kilobytes each: older alarms keep
#: their message, so a lab that keeps blocking its loop holds 20 stacks, not 500)
ALARM_STACKS_KEPT = 20
#: the least a sink's close is waited for at shutdown, even when the budget is spent: its
#: files are only complete once it returns, and a second is what a healthy close takes; the
#: bridge's drain and the sink threads' last writes before it get as much
SINK_CLOSE_MIN_S = 1.0
#: a sink's ``write()`` that has not returned for this long raises an alarm: its batches
#: wait meanwhile, and once its queue is full their producers do (a backend on a network
#: share that stopped answering); a healthy write of an image batch takes milliseconds
SINK_STUCK_S = 2.0
#: the least a service stopped after the runtime (the data service, the dashboard) is given,
#: however much of ``shutdown_timeout`` the runtime's shutdown took: the data service's live
#: streams send what they hold and end (a recorder's copy gets the last rows), which takes a
#: few milliseconds unless a client stopped reading
SERVICE_STOP_MIN_S = 0.5
#: how long a sink thread waits on its queue at a time (it sees a stop between two waits)
QUEUE_WAIT_S = 0.2


def on_daemon_thread(call: Callable[[], Any], name: str) -> concurrent.futures.Future[Any]:
    """``call()`` on a daemon thread of its own; its result or exception in the future.

    For plugin code that may never return (a sink's ``close()``, a driver's ``stop``):
    the caller waits as long as its budget allows and names what is still running. A
    ``SystemExit`` or ``KeyboardInterrupt`` it raises is its failure too (:func:`.as_error`):
    it ended the thread with the future never done, so a close that had failed at once was
    waited for to the end of the budget and named as still running.

    The future runs from the start, so it cannot be cancelled (``cancel()`` is False): the
    thread cannot be interrupted, so the call goes on, and its outcome is still the
    future's for its done-callbacks to say. A caller that gave up on it (the shutdown's
    halt, after its second) cancelled it, and the thread's ``set_exception`` then raised
    ``InvalidStateError``: a traceback on stderr at every close of a lab with a module that
    did not answer its stop, and the stop's failure said nowhere."""
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
    fut.set_running_or_notify_cancel()

    def run() -> None:
        try:
            fut.set_result(call())
        except BaseException as exc:  # off the main thread, whatever it raises is its own
            fut.set_exception(as_error(exc))
    threading.Thread(target=run, name=name, daemon=True).start()
    return fut

def runs_at_once(inst: SessionInstrument | SessionActor, method: str) -> bool:
    """Whether a toolkit driver's command runs beside the one in flight: ``stop`` (the
    Motion capability's halt) and its table's urgent commands without arguments."""
    session_class: type = type(inst.session)
    return callable(getattr(inst, method, None)) and (
        method == "stop" or method in urgent_commands(session_class))


class Sink(Protocol):
    """A lossless consumer of the unified stream (a storage session)."""

    def write(self, batch: pa.RecordBatch) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> Any: ...


class StartError(RuntimeError):
    """Instruments that could not be set up, each with its own cause."""

    def __init__(self, causes: Mapping[str, str]) -> None:
        self.causes = dict(causes)
        super().__init__("\n".join(f"{i}: {why}" for i, why in self.causes.items()))


@dataclass
class PhaseTimeouts:
    v4_s: float = 5.0
    v2_s: float = 5.0
    total_s: float = 15.0


@dataclass
class ShutdownReport:
    clean: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)
    #: id -> what the shutdown found it busy in, of each instrument it forced (in a worker too)
    forced_instruments: dict[str, str] = field(default_factory=dict)
    leaked: list[str] = field(default_factory=list)
    unclosed_resources: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # "<id>: <why>" of what is not ok
    instruments: list[dict[str, Any]] = field(default_factory=list)
    routines: list[dict[str, Any]] = field(default_factory=list)
    sink_results: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}

    def stop_in_budget(self, stop: Callable[[float], bool], total_s: float,
                       least: float = SERVICE_STOP_MIN_S) -> tuple[bool, float]:
        """``stop(limit)`` for a service that outlives the runtime's shutdown (the data
        service, the dashboard), ``limit`` what this shutdown left of ``total_s`` (the lab's
        ``shutdown_timeout``), at least ``least``; its time is added to ``duration_s`` (the
        report's "took": the shutdown lasts until the service stopped). Whether it stopped,
        and the limit it had. The one rule for every such service."""
        limit = max(least, total_s - self.duration_s)
        t0 = time.monotonic()
        stopped = stop(limit)
        self.duration_s = round(self.duration_s + time.monotonic() - t0, 3)
        return stopped, limit

    @property
    def ok(self) -> bool:
        return not (self.forced or self.leaked or self.unclosed_resources or self.errors
                    or self.failed)


def make_context(itype: InstrumentType, instrument_id: str, block: Mapping[str, Any],
                 serial: SerialPortManager, visa: VisaSessionManager) -> InstrumentContext:
    """The context a factory gets: channels from the declaration, hardware from the managers."""
    ctx = InstrumentContext(instrument_id, itype.name, block, itype.channels_for(block))
    if itype.transport == "serial":
        ctx.port = serial.port(block["port"], **line_settings(itype.serial_settings, block))
    elif itype.transport == "visa":
        ctx.visa = visa.resource(
            block["resource"], backend=block.get("visa_backend", "@py"),
            **{k: block[k] for k in ("read_termination", "write_termination") if k in block})
    return ctx


def close_sink(sink: Sink, until: float | None) -> Any:
    """``sink.close()``; a storage session's own waits (its flusher, its writers' locks) are
    bounded by ``until`` too, so they end with the shutdown's budget."""
    if isinstance(sink, StorageSession | FlavorSink) and until is not None:
        return sink.close(max(0.0, until - time.monotonic()))
    return sink.close()


def instrument_of(batch: pa.RecordBatch) -> str:
    """The id of the instrument a unified batch is of ("?" if it does not say)."""
    return (batch.schema.metadata or {}).get(META_INSTRUMENT, b"?").decode(errors="replace")


class LaneSubscription(Subscription[pa.RecordBatch]):
    """A lossless subscription to the batches one lane of a sink takes (a storage session's
    flavor), passing over the others: a lane whose writer hangs fills its own queue, then
    holds up the producers of its own batches, never another lane's."""

    def __init__(self, name: str, takes: Callable[[pa.RecordBatch], bool], *, capacity: int,
                 on_alarm: Callable[[str, str], None]) -> None:
        super().__init__(name, lossless=True, capacity=capacity, on_alarm=on_alarm)
        self.takes = takes

    def offer(self, item: pa.RecordBatch, timeout: float, wake: bool = True) -> bool:
        return super().offer(item, timeout, wake) if self.takes(item) else True


class SinkThread:
    """Feeds one lossless unified-stream subscription into a sink on its own thread.

    It counts every sample the sink did not store: a batch's rows when its write is
    refused, or what a :class:`.WriteFailed` says was lost (a writer that fails loses
    what it still held, too), and what the sink's close says it lost. ``unstored`` keeps
    them per instrument, as the WriteFailed's ``by_instrument`` says whose they were (a
    writer's held rows are of every instrument it held rows of: charged to the batch in
    hand, an instrument with 51 samples and none on disk was said to miss 46, and one
    whose rows were lost at close was called clean), so their instruments' outcomes say
    so; what a sink does not attribute is charged to the batch in hand, at most its rows.
    A storage session is fed by one per flavor (its *lanes*), so one
    backend that hangs in ``write()`` holds up only its own flavor's data; a write that has
    not returned for :data:`SINK_STUCK_S` raises an alarm naming the backend (:meth:`check`).
    """

    def __init__(self, name: str, sink: Sink, sub: Subscription[pa.RecordBatch],
                 on_error: Callable[[str, str], None], *, label: str = "", owner: str = "",
                 lane: str | None = None) -> None:
        self.name = name
        self.sink = sink
        self.sub = sub
        self.on_error = on_error
        #: what its errors name: ``v2 storage backend hdf5 (daqhub 0.1)``, else its name
        self.label = label or name
        #: the sink's name among the runtime's sinks (its results in the report), and the
        #: lane of it this thread feeds (None: the whole sink)
        self.owner = owner or name
        self.lane = lane
        self.written = 0
        self.failed_writes = 0  # writes (and a close) the sink refused or failed (reported)
        self.failed_rows = 0  # samples those left out of the sink
        self.unstored: collections.Counter[str] = collections.Counter()
        self.last_failure = ""
        #: batches taken from the queue and not written yet (the first is in the sink's
        #: write()), and since when that write runs (0: none)
        self.held: collections.deque[pa.RecordBatch] = collections.deque()
        self.busy_since = 0.0
        self._stuck_alarmed = False
        #: why its thread ended before it was told to stop ("" while it runs, or stopped)
        self.died = ""
        self._stop = threading.Event()
        self._abandoned = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"daqhub-storage:{name}",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        """:meth:`_feed`; a thread that ended before it was told to stop (daqhub's own
        code raised: what the sink raises is counted where it is called) says so at once,
        and the shutdown counts what it left unwritten (:attr:`died`)."""
        try:
            self._feed()
        except BaseException as exc:  # off the main thread, a KeyboardInterrupt too is code's
            self.died = failure_text(exc)
        else:
            if self._stop.is_set() or self._abandoned.is_set():
                return
            self.died = "its subscription was closed during the run"
        self.on_error(self.name, f"{self.label}: its storage thread ended during the run "
                      f"({self.died}); what came after is not written")

    def _feed(self) -> None:
        while True:
            try:
                batches = self.sub.get_many(QUEUE_WAIT_S)
            except SubscriptionClosed:
                return
            held = self.held
            held.extend(batches)
            while held:
                b = held[0]
                self.busy_since = time.monotonic()
                try:
                    self.sink.write(b)
                except BaseException as exc:  # a storage fault is reported, the run goes on:
                    if self._abandoned.is_set():  # sys.exit() in a backend's write() too
                        return
                    lost = exc if isinstance(exc, WriteFailed) else WriteFailed(
                        str(as_error(exc)), b.num_rows)  # a refused batch: its rows
                    self.count_failure(f"write failed: {lost}", lost, b)
                else:
                    if self._abandoned.is_set():  # counted as not written: its writer is
                        return                     # never closed, so nothing more goes in
                    self.written += b.num_rows
                held.popleft()
            self.busy_since = 0.0
            if self._stop.is_set() and self.sub.depth() == 0:
                return

    def count_failure(self, message: str, failed: WriteFailed,
                      batch: pa.RecordBatch | None = None) -> None:
        """Count the samples ``failed`` says the sink did not store, against the instruments
        it names; what it names no instrument for (a backend that does not say) against
        ``batch``'s, at most its rows. Alarm once per new fault, not per batch."""
        self.failed_writes += 1
        self.failed_rows += failed.lost
        self.unstored.update(failed.by_instrument)
        rest = failed.lost - sum(failed.by_instrument.values())
        if batch is not None and rest > 0:
            self.unstored[instrument_of(batch)] += min(rest, batch.num_rows)
        if message != self.last_failure:
            self.last_failure = message
            self.on_error(self.name, f"{self.label}: {message}")

    def check(self) -> None:
        """Alarm once per episode for a write that has not returned within
        :data:`SINK_STUCK_S` (called by the watchdog: the thread in it cannot say so),
        naming what it waits in: the backend's ``write()``, or whatever holds the writer
        when the sink says (:meth:`waits_for`)."""
        since = self.busy_since
        stuck = bool(since) and time.monotonic() - since > SINK_STUCK_S
        if stuck and not self._stuck_alarmed:
            waited = f"{time.monotonic() - since:.1f} s"
            holder = self.waits_for()
            what = (f"a write has waited {waited} for its writer, held by {holder} (which "
                    "has not returned)" if holder else f"write() has not returned for {waited}")
            self.on_error(self.name, f"{self.label}: {what}; its batches wait "
                          f"({self.sub.depth()} queued), then their producers do")
        self._stuck_alarmed = stuck

    def waits_for(self) -> str:
        """What else holds the sink's writer while this thread's write waits for it (the
        background flush), as a sink that has writers says (``holder()``, which a storage
        lane has: "a write", "the background flush", "a flush in thread ..."); "" when its
        own write holds it, or the sink does not say. A flush stuck in the backend was
        blamed on write(), which only waited for it."""
        holder = getattr(self.sink, "holder", None)
        held_by = holder() if callable(holder) else ""
        return "" if held_by == "a write" else str(held_by or "")

    def abandon(self) -> tuple[int, int]:
        """What it will not write, its thread having outlived the shutdown's wait (it is in
        its sink's ``write()``): the batches it holds and those queued, counted against
        their instruments as not stored; (batches, samples). Its thread, once that write
        returns, writes nothing more (it wrote on, and rows counted not written were then
        also counted written, into a writer nobody closes)."""
        self._abandoned.set()
        self.sub.close()
        left = list(self.held)
        try:
            left += self.sub.get_many(0.0, max_items=self.sub.depth() + 1)
        except SubscriptionClosed:
            pass
        for b in left:
            self.unstored[instrument_of(b)] += b.num_rows
        return len(left), sum(b.num_rows for b in left)

    def close_sink(self, until: float | None = None) -> Any:
        """Close the sink (its waits bounded by ``until``, a monotonic time, where it takes a
        bound: :func:`close_sink`); what its close lost is counted with the writes' losses."""
        try:
            return close_sink(self.sink, until)
        except WriteFailed as exc:
            self.count_failure(f"close failed: {exc}", exc)
            return exc.result

    def signal_stop(self) -> None:
        """Write what is queued, then end (:meth:`stop` waits for it)."""
        self._stop.set()

    def stop(self, timeout: float) -> bool:
        """Write what is queued and end, waited for ``timeout``; False when it is still in a
        write then. One waiting on its queue is ending, not stuck: it is waited for until its
        wait ends (a ``timeout`` of 0, the budget spent, called idle threads leaked)."""
        self._stop.set()
        self.thread.join(timeout)
        if self.thread.is_alive() and not self.busy_since:
            self.thread.join(2 * QUEUE_WAIT_S)  # its wait, and its turn to run
        return not self.thread.is_alive()


class DualRuntimeManager:
    def __init__(self, lab: LabConfig, host: PluginHost, *,
                 sinks: Mapping[str, Sink] | None = None,
                 phases: PhaseTimeouts | None = None,
                 restart_policy: RestartPolicy | None = None,
                 budget: Budget | None = None,
                 serial: SerialPortManager | None = None,
                 visa: VisaSessionManager | None = None,
                 session_id: str = "", sink_capacity: int = 1000,
                 storage: bool = False) -> None:
        self.lab = lab
        self.host = host
        self.session_id = session_id
        self.phases = phases or PhaseTimeouts(total_s=lab.shutdown_timeout)
        self.stop_event = threading.Event()
        # the newest alarms (a blocked loop's carries its stack); alarms_total counts all
        self.alarms: collections.deque[dict[str, Any]] = collections.deque(maxlen=ALARMS_KEPT)
        self.alarms_total = 0
        # reopen attempts at most 0.5 s apart: instruments resume within ~1 s of their port
        self.serial = serial or SerialPortManager(host.serial_url_packages(),
                                                  default_timeout=lab.lock_timeout,
                                                  reconnect_max_s=0.5)
        self.visa = visa or VisaSessionManager(lab.visa_lock_scope,  # type: ignore[arg-type]
                                               default_timeout=lab.lock_timeout)
        self.serial.add_listener(self._port_event)
        self.visa.add_listener(self._port_event)
        self.plugin_failures: list[str] = []  # notification hooks that raised during the run
        host.notify_listeners.append(self._plugin_failed)
        self.distributor: Broadcast[V2Read] = Broadcast(
            "v2", stop=self.stop_event, on_alarm=self._alarm)
        self.v2 = V2Runtime(self.distributor, self._instrument_event)
        self.v4 = V4Runtime(None, self._instrument_event,
                            restart_policy or RestartPolicy.from_config(lab.restart))
        self.notifier = Notifier(host, self._alarm)
        self.rates = RateWatch(self._alarm)
        self.watchdog = LoopWatchdog(
            self.v4.loop, self.v4.thread, self.v4.runners, self._alarm,
            bound_s=lab.loop_watchdog_s,
            checks=[self.notifier.check, self._check_rates, self._check_sinks,
                    lambda: check_v2_connects(self.v2.workers.values(), self._alarm)],
            passes=self.v4.passes)
        self.state_changes: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self.channels: dict[tuple[str, str], ChannelSpec] = {}
        self.types: dict[str, InstrumentType] = {}
        self.instrument_ports: dict[str, str] = {}
        self.bridge: MeasurementBridge | None = None
        self.sink_threads: list[SinkThread] = []
        #: subscriptions that must see the unified stream from its first batch (attached first)
        self.taps: list[Subscription[pa.RecordBatch]] = []
        self.storage_plans: dict[Any, FlavorStorage] = {}
        self._sinks = dict(sinks or {})
        self.sink_capacity = sink_capacity
        self.use_storage = storage
        self.storage: StorageSession | None = None
        self.budget = BudgetMonitor(self._probe, budget or Budget.from_config(lab.budget),
                                    on_alarm=self._alarm)
        self.routine_stop = threading.Event()
        #: called with (instrument id, method) after each command that succeeded
        self.on_command: list[Callable[[str, str], None]] = []
        #: called once everything has stopped, before the report is judged: each does its
        #: last work (the session records' last flush) and returns what failed, as errors
        self.on_stopped: list[Callable[[], list[str]]] = []
        self.routines = [RoutineRunner(r, self.call, self.routine_stop) for r in lab.routines]
        self._report: ShutdownReport | None = None
        #: the worker processes of ``[daqhub] workers = N`` (None: every instrument in process)
        self.pool = WorkerPool(lab, host.serial_url_packages(), publish=self._publish_remote,
                               notify=self.notifier.notify, on_event=self._instrument_event,
                               alarm=self._alarm) if lab.workers > 1 else None
        self._shutdown_lock = threading.Lock()
        self.started = False
        self._gc_held = False  # this runtime counts in gcbaseline's holders
        self._announced = False

    # --- events -----------------------------------------------------------------------

    def _alarm(self, what: str, message: str, extra: Mapping[str, Any] | None = None) -> None:
        self.alarms_total += 1
        self.alarms.append({"time": time.time(), "what": what, "message": message,
                            **(extra or {})})
        if len(self.alarms) > ALARM_STACKS_KEPT:  # an older alarm keeps its message
            older = self.alarms[-ALARM_STACKS_KEPT - 1]
            if "stack" in older:  # replaced, not changed: a reader may be copying it
                self.alarms[-ALARM_STACKS_KEPT - 1] = {k: v for k, v in older.items()
                                                       if k != "stack"}
        log.warning("alarm: %s", message)

    def _plugin_failed(self, problem: PluginProblem) -> None:
        self.plugin_failures.append(f"plugin {problem}")
        self._alarm(f"plugin:{problem.distribution}", f"plugin {problem}")

    def _instrument_event(self, instrument_id: str, event: str, detail: str) -> None:
        log.info("%s: %s %s", instrument_id, event, detail)
        h = self.health_of(instrument_id)
        if h is not None:
            h.event(event, detail)
        self.notifier.notify("daqhub_instrument_event", instrument_id=instrument_id,
                             event=event, detail=detail)

    def _state_changed(self, h: InstrumentHealth, old: str, new: str, reason: str) -> None:
        self.state_changes.append({"time": time.time(), "id": h.id, "old": old, "new": new,
                                   "reason": reason})

    def _check_rates(self) -> None:
        self.rates.check([(w.health, 1 / w.period) for w in self.v2.workers.values()]
                         + [(r.health, 1 / r.period) for r in self.v4.runners.values()])

    def _check_sinks(self) -> None:
        for st in self.sink_threads:
            st.check()

    def _port_event(self, ev: PortEvent) -> None:
        """Tell plugins; on a reconnect, wake every instrument on the resource at once."""
        self.notifier.notify("daqhub_resource_event", resource=ev.port, event=ev.kind,
                             detail=ev.detail)
        on_port = [i for i, port in self.instrument_ports.items() if port == ev.port]
        if ev.kind == "reconnected":
            for iid in on_port:
                if iid in self.v2.workers:
                    self.v2.workers[iid].wake_event.set()
            self.v4.wake([i for i in on_port if i in self.v4.runners])
        for iid in on_port:
            detail = f"{ev.what} {ev.port}: {ev.detail}"
            h = self.health_of(iid)
            if h is not None:
                h.event(f"port {ev.kind}", detail)
            self.notifier.notify("daqhub_instrument_event", instrument_id=iid, event=ev.kind,
                                 detail=detail)

    # --- building ---------------------------------------------------------------------

    def _context(self, inst: InstrumentConfig, itype: InstrumentType) -> InstrumentContext:
        ctx = make_context(itype, inst.id, inst.block, self.serial, self.visa)
        for c in ctx.channels:
            self.channels[(inst.id, c.name)] = c
        if ctx.port is not None:
            self.instrument_ports[inst.id] = ctx.port.name
        elif ctx.visa is not None:
            self.instrument_ports[inst.id] = ctx.visa.label
        return ctx

    def start(self) -> None:
        """Open resources and start everything; on failure, undo what was started."""
        if self.started:
            raise RuntimeError("this runtime was already started")
        self.started = True
        try:
            causes: dict[str, str] = {}
            for inst in self.lab.instruments():  # the enabled ones
                itype = self.host.instrument_type(inst.type, inst.flavor,
                                                  self.lab.providers.get(inst.type))
                if itype is None:
                    causes[inst.id] = f"type {inst.type} ({inst.flavor}) is not installed"
                    continue
                if self.pool is not None:
                    self.types[inst.id] = itype
                    self.pool.add(inst, itype, self.channels).listener = self._state_changed
                    continue
                try:
                    ctx = self._context(inst, itype)
                except Exception as exc:  # each instrument reports its own cause
                    causes[inst.id] = str(exc) or type(exc).__name__
                    continue
                self.types[inst.id] = itype
                policy = dataclasses.replace(self.v4.policy, **inst.block.get("restart", {}))
                if inst.flavor == "v2":
                    worker: Any = self.v2.add(itype, ctx, inst.poll_hz, policy)
                else:
                    worker = self.v4.add(itype, ctx, inst.poll_hz, policy)
                worker.health.listener = self._state_changed
            if self.pool is not None and not causes:
                causes.update(self.pool.start())
            if causes:
                raise StartError(causes)
            self.notifier.start()
            if self.use_storage:
                self._open_storage()
            v2_arrow = self.host.converter("v2", "arrow")
            owner = self.host.converter_owner("v2", "arrow")
            self.bridge = MeasurementBridge(
                self.channels, self.distributor, v2_arrow.convert, on_refused=self._refused,
                on_alarm=self._alarm, converter=f"converter {v2_arrow.name!r} ({owner.release})")
            for tap in self.taps:
                self.bridge.unified.attach(tap)
            for name, sink in self._sinks.items():
                for st in self._feed(name, sink, self.bridge.unified):
                    self.sink_threads.append(st)
                    st.start()
            self.bridge.start()
            self.v4.publish_to(self.bridge)  # v4 batches go straight to the unified stream
            # announced before any instrument runs, so no instrument event precedes it
            self.notifier.notify("daqhub_session_started", session_id=self.session_id,
                                 output_dirs={f: str(d) for f, d in self.output_dirs().items()})
            self._announced = True
            if self.pool is not None:
                self.pool.attach()
            # pyarrow imports pandas (when installed) on its first array, holding the import
            # lock for ~0.3-1 s: here, not in the first poll, where the v4 loop waited for a v2
            # thread's import and its actor was blamed for blocking the loop (storage used to
            # do it first; a lab without storage, or a worker, did not)
            pa.array([0.0])
            gcbaseline.hold()
            self._gc_held = True
            self.v4.start()
            self.v2.start()
            self.watchdog.start()
            self.budget.start()
            for r in self.routines:
                r.start()
        except BaseException:
            self.shutdown()
            raise

    def _open_storage(self) -> None:
        plans: dict[Any, FlavorStorage] = {}
        for flavor, fc in self.lab.flavors.items():
            ids = [i.id for i in fc.instruments if i.id in self.types]
            if not fc.enabled or not ids:
                continue
            plans[flavor] = FlavorStorage(
                backend=fc.storage,
                channels={i: [c for (j, _), c in self.channels.items() if j == i] for i in ids},
                instruments={i.id: dict(i.block) for i in fc.instruments if i.id in ids},
                options=self.lab.storage_options.get(fc.storage, {}),
                directory=fc.output_dir)
        if not plans:
            return
        self.storage_plans = plans
        self.storage = StorageSession.open(self.host, self.lab.output_dir, plans,
                                           lab_config=self.lab.text,
                                           session_id=self.session_id or None)
        self.session_id = self.storage.session_id
        self._sinks["storage"] = self.storage

    def _feed(self, name: str, sink: Sink, stream: Broadcast[pa.RecordBatch]
              ) -> list[SinkThread]:
        """A lossless queue and a thread for each lane of ``sink``: each flavor of a storage
        session, so a backend that hangs holds up its own flavor's batches (then their
        producers) and no other (one thread for both lost both flavors' data); one for any
        other sink."""
        def alarm(sink_name: str, message: str) -> None:
            self._alarm(f"sink:{sink_name}", message)
        if not isinstance(sink, StorageSession):
            sub = stream.subscribe(name, lossless=True, capacity=self.sink_capacity)
            return [SinkThread(name, sink, sub, alarm)]
        threads = []
        for flavor, lane in sink.lanes().items():
            lane_sub = LaneSubscription(f"{name}:{flavor}", lane.takes,
                                        capacity=self.sink_capacity, on_alarm=self._alarm)
            stream.attach(lane_sub)
            threads.append(SinkThread(f"{name}:{flavor}", lane, lane_sub, alarm,
                                      label=lane.label, owner=name, lane=flavor))
        return threads

    def output_dirs(self) -> dict[str, Path]:
        return {str(f): d for f, d in self.storage.directories.items()} if self.storage else {}

    def _publish_remote(self, batch: pa.RecordBatch) -> None:
        """A worker's unified batch (already ordered there): counted, then straight out."""
        assert self.bridge is not None, "worker batches are held until the bridge exists"
        iid, spec = describe(batch.schema)
        self.bridge.counts[self.types[iid].flavor][(iid, spec.name)] += batch.num_rows
        self.bridge.unified.publish(batch)

    def _refused(self, iid: str, n: int, msg: str) -> None:
        h = self.health_of(iid)
        if h is not None:
            h.refused(n, msg)

    # --- using ------------------------------------------------------------------------

    def subscribe(self, name: str, *, lossless: bool, capacity: int = 1000
                  ) -> Subscription[pa.RecordBatch]:
        """A consumer of the unified stream (a live view, a test)."""
        if self.bridge is None:
            raise RuntimeError("start() the runtime before subscribing")
        return self.bridge.unified.subscribe(name, lossless=lossless, capacity=capacity)

    def call(self, instrument_id: str, method: str, *args: Any, timeout: float = 30.0,
             **kwargs: Any) -> Any:
        """Run a command on an instrument of either flavor and wait for its result (a
        ``stop`` or other urgent command at once, as :meth:`submit` sends it). Arguments its
        driver refuses raise :class:`~daqhub.commands.ArgumentsRefused`, nothing sent."""
        check_arguments(instrument_id, self.types.get(instrument_id), method, args, kwargs)
        at_once = self._at_once(instrument_id, method) if not args and not kwargs else None
        if at_once is not None:
            try:
                result = result_within(at_once, timeout)
            except NoResult:
                raise TimeoutError(f"{instrument_id}.{method}: no result within {timeout:g} s "
                                   "(sent at once, beside the command in flight)") from None
        elif instrument_id in self.v2.workers:
            result = self.v2.call(instrument_id, method, *args, timeout=timeout, **kwargs)
        elif instrument_id in self.v4.runners:
            result = self.v4.ask(instrument_id, method, *args, timeout=timeout, **kwargs)
        elif self.pool is not None and instrument_id in self.pool.health:
            result = self.pool.call(instrument_id, method, args, kwargs, timeout)
        else:
            raise KeyError(f"no running instrument {instrument_id!r}")
        self.command_done(instrument_id, method)
        return result

    def submit(self, instrument_id: str, method: str, *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future[Any]:
        """Send a command to an instrument of either flavor; its future holds the result.

        For callers that wait their own way (several instruments at once, or an
        event loop); they call :meth:`command_done` after a command succeeded. ``stop``
        and a toolkit driver's urgent commands are not queued where they can run at once
        (:meth:`_at_once`). Every sender's command passes here or :meth:`call`, so both
        check its arguments (:func:`~daqhub.commands.check_arguments`): arguments its driver
        refuses raise :class:`~daqhub.commands.ArgumentsRefused`, nothing sent.
        """
        check_arguments(instrument_id, self.types.get(instrument_id), method, args, kwargs)
        if not args and not kwargs:
            fut = self._at_once(instrument_id, method)
            if fut is not None:
                return fut
        if instrument_id in self.v2.workers:
            return self.v2.workers[instrument_id].submit(method, *args, **kwargs)
        if instrument_id in self.v4.runners:
            return self.v4.ask_future(instrument_id, method, *args, **kwargs)
        if self.pool is not None and instrument_id in self.pool.health:
            return self.pool.submit(instrument_id, method, *args, **kwargs)
        raise KeyError(f"no running instrument {instrument_id!r}")

    def halt(self, instrument_ids: Sequence[str], timeout: float) -> list[tuple[str, str]]:
        """Send ``stop`` to each instrument at once and wait up to ``timeout`` for them: the
        movers of a failed or interrupted scan, every Motion instrument at shutdown. Best
        effort: what fails is the caller's to say or not (a scan's own error says enough);
        it returns (id, why) of each stop that failed or had no result in time. A stop
        running beside the command in flight goes on past that (a thread cannot be
        interrupted): its failure is then its instrument's error, as any command's.

        Only connected ones (:data:`.CONNECTED_STATES`): a stop to one that is not could not
        run, and was waited for in vain (a scan's Ctrl-C during an outage took its 5 s more).
        """
        deadline = time.monotonic() + timeout
        sent = []
        for iid in instrument_ids:
            health = self.health_of(iid)
            if health is None or health.state not in CONNECTED_STATES:
                continue
            try:
                sent.append((iid, self.submit(iid, "stop")))
            except Exception:  # not running (any more): nothing to stop
                continue
        failed = []
        for iid, fut in sent:
            try:
                result_within(fut, max(0.0, deadline - time.monotonic()))
            except NoResult:
                fut.cancel()  # a queued stop is not run later
                failed.append((iid, f"its stop had no result within {timeout:g} s"))
            except Exception as exc:  # the driver's refusal: the stop was tried
                failed.append((iid, f"its stop failed: {failure_text(exc, command=True)}"))
        return failed

    def _at_once(self, iid: str, method: str) -> concurrent.futures.Future[Any] | None:
        """``stop`` (or an urgent command of the driver's table, such as an ESP300's
        ``abort``) beside the command in flight, or None where it must be queued.

        Queued like any command, ``stop`` waited behind the one in flight: a ``home`` or a
        ``wait_until_done`` holds its v2 thread or v4 actor until the motion ends, so a
        script's, a page's or a halting scan's stop came after the motion, and a shutdown
        forced the instrument. A driver made with the toolkit (:mod:`daqhub.driver`) does its
        I/O through the port's gate, where ``stop`` takes the urgent lane, so a connected
        one's ``stop`` runs at once (on a thread of its own in v2, a task of its own in v4)
        and the command in flight then sees the axis stopped and ends. In a worker process
        the worker's own runtime applies this rule. Other drivers get it queued."""
        worker, runner = self.v2.workers.get(iid), self.v4.runners.get(iid)
        fut: concurrent.futures.Future[Any]
        if worker is not None:
            inst = worker.instrument
            if not (isinstance(inst, SessionInstrument) and runs_at_once(inst, method)
                    and worker.health.state in CONNECTED_STATES):
                return None
            fut = on_daemon_thread(getattr(inst, method), f"daqhub-{method}:{iid}")
        elif runner is not None:
            actor = runner.actor
            if not (isinstance(actor, SessionActor) and runs_at_once(actor, method)
                    and runner.health.state in CONNECTED_STATES):
                return None
            fut = asyncio.run_coroutine_threadsafe(getattr(actor, method)(), self.v4.loop)
        else:
            return None
        health = self.health_of(iid)

        def record(f: concurrent.futures.Future[Any]) -> None:
            exc = None if f.cancelled() else f.exception()
            if exc is not None:  # as a queued command's failure is recorded
                health.command_failed(method, exc)
        fut.add_done_callback(record)
        return fut

    def waits_behind(self, instrument_id: str) -> str:
        """What a command to the instrument that had no result in time waited behind, for
        its ``TimeoutError``: the instrument cut off from its hardware (since when, its last
        error), what its thread or actor is busy in, or the worker process that runs it.
        "busy in 'connect'" was said of a v2 instrument waiting out its reconnect backoff,
        and "busy in 'its poll loop'" of every instrument in a worker process."""
        runner: V2Worker | ActorRunner | None = (self.v2.workers.get(instrument_id)
                                                 or self.v4.runners.get(instrument_id))
        if runner is not None:
            return runner.health.behind(runner.busy_in)
        health = self.health_of(instrument_id)
        if health is not None and (outage := health.outage()):  # a worker's, mirrored
            return f"{instrument_id} is {outage}"
        if self.pool is not None and instrument_id in self.pool.owner:
            return f"run by {self.pool.owner[instrument_id].describe()}"
        return "not running"

    def command_done(self, instrument_id: str, method: str) -> None:
        for listener in self.on_command:
            listener(instrument_id, method)

    def health_of(self, instrument_id: str) -> Any:
        if instrument_id in self.v2.workers:
            return self.v2.workers[instrument_id].health
        if instrument_id in self.v4.runners:
            return self.v4.runners[instrument_id].health
        return self.pool.health.get(instrument_id) if self.pool is not None else None

    def instrument_ids(self) -> list[str]:
        """Every running instrument, of either flavor, in process or in a worker."""
        return [*self.v2.workers, *self.v4.runners, *(self.pool.health if self.pool else ())]

    def probe(self) -> dict[str, Any]:
        """Queues, mailboxes and resources now (what a worker process reports to its parent)."""
        return self._probe()

    def health(self) -> dict[str, Any]:
        instruments = [w.health.snapshot() for w in self.v2.workers.values()]
        instruments += [r.health.snapshot() for r in self.v4.runners.values()]
        instruments += [h.snapshot() for h in (self.pool.health.values() if self.pool else ())]
        return {"instruments": instruments, **self._probe(),
                "routines": [{**vars(r.state), "progress": r.state.progress()}
                             for r in self.routines],
                "budget": self.budget.latest(), "alarms": list(self.alarms),
                "alarms_total": self.alarms_total}

    def _probe(self) -> dict[str, Any]:
        queues: dict[str, Any] = {}
        if self.bridge is not None:
            queues["bridge"] = vars(self.bridge.inbound.stats())
            for sub in self.bridge.unified.subscriptions():
                queues[sub.name] = vars(sub.stats())
        mailboxes = {r.id: r.mailbox.depth() for r in self.v4.runners.values() if r.mailbox}
        resources = {p.name: p.stats() for p in self.serial.ports()}
        resources.update({r.label: r.stats() for r in self.visa.resources()})
        probe = {"queues": queues, "mailboxes": mailboxes, "resources": resources,
                 "bridge": self.bridge.stats() if self.bridge else {},
                 "restarts": sum(r.health.restarts for r in self.v4.runners.values()),
                 "reconnects": sum(w.health.reconnects for w in self.v2.workers.values())
                 + sum(r.health.reconnects for r in self.v4.runners.values())}
        return self.pool.merge_probe(probe) if self.pool is not None else probe

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        if self.bridge is not None:
            for source in ("v2", "v4"):
                for (iid, ch), n in self.bridge.counts[source].items():
                    out.setdefault(iid, {})[ch] = n
        return out

    # --- stopping ---------------------------------------------------------------------

    def shutdown(self) -> ShutdownReport:
        with self._shutdown_lock:
            if self._report is not None:
                return self._report
            try:
                self._report = self._shutdown()
            finally:
                if self._gc_held:
                    self._gc_held = False
                    gcbaseline.release()
            return self._report

    def _shutdown(self) -> ShutdownReport:
        t0 = time.monotonic()
        deadline = t0 + self.phases.total_s
        report = ShutdownReport()

        def left(cap: float) -> float:
            return max(0.0, min(cap, deadline - time.monotonic()))

        # 0. routines first: they would only send commands into a shutdown; every axis is
        # halted, as a command in flight (a routine's home, a script's wait_until_done) may
        # hold its instrument past the budget, which then forces it and leaves it moving
        self.routine_stop.set()
        for iid, why in self.halt([i for i in self.instrument_ids()
                                   if "Motion" in self.types[i].capabilities], left(1.0)):
            self._alarm(f"halt:{iid}", f"{iid}: {why} at shutdown: it may not have stopped")
        for r in self.routines:
            if r.thread.ident is not None:
                r.join(left(1.0))
        # 1. signal both
        self.v4.signal_stop()
        self.v2.signal_stop()
        # 2. wait V4, then V2
        v4_stuck = self.v4.wait(left(self.phases.v4_s))
        v2_stuck = self.v2.wait(left(self.phases.v2_s))
        if self.pool is not None:  # each worker runs these phases for its own shard, within
            # its share of the budget; the pool waits that share (workers.StopBudget)
            self.pool.stop(report.forced, report.leaked, report.unclosed_resources,
                           report.errors, report.forced_instruments)
        # 3. force: unblock producers waiting on full queues, cancel actors, close hardware
        self.stop_event.set()
        forced = {i: f"v4 actor, busy in {self.v4.runners[i].busy_in or 'its poll loop'}"
                  for i in v4_stuck}  # read before forcing, which clears it
        forced.update((i, f"v2 thread, busy in {self.v2.workers[i].busy_in or 'its poll loop'}")
                      for i in v2_stuck)
        report.forced += [f"{i} ({how})" for i, how in forced.items()]
        report.forced_instruments.update(forced)
        if v4_stuck:
            report.leaked += [f"v4 actor {i}" for i in self.v4.force(v4_stuck, left(2.0))]
        self.watchdog.stop(left(1.0))
        # 4. release shared resources (this also wakes V2 threads hung in I/O)
        report.unclosed_resources += self.serial.close_all(left(3.0))
        report.unclosed_resources += self.visa.close_all(left(3.0))
        if v2_stuck:
            self.v2.wait(left(1.0))
            report.leaked += [f"v2 thread {w.id} (in {w.busy_in or '?'})"
                              for w in self.v2.workers.values() if w.thread.is_alive()]
        self.v4.stop_loop()  # its thread is waited for last, when it has long ended unless
        # its loop is blocked: waited for here, with the budget spent it was named leaked
        # though it had nothing left to do but end
        # 5. drain the bridge, then flush and close consumers: the data's last steps get
        # SINK_CLOSE_MIN_S even when the budget is spent (a driver hung until its end left
        # every healthy instrument's file unclosed, its threads named as leaked though idle)
        until = max(deadline, time.monotonic() + SINK_CLOSE_MIN_S)

        def rest(cap: float) -> float:
            return max(0.0, min(cap, until - time.monotonic()))

        if self.bridge is not None:
            if self.bridge.thread.is_alive() and not self.bridge.stop(rest(3.0)):
                report.leaked.append("bridge thread")
            self.bridge.close()
        for st in self.sink_threads:  # all at once: each waits for its own writer only
            st.signal_stop()
        for st in self.sink_threads:
            if not st.stop(rest(5.0)):
                holder = st.waits_for()
                waits = f", waiting for its writer, held by {holder}" if holder else ""
                batches, samples = st.abandon()
                report.leaked.append(f"storage thread {st.name} (in {st.label}'s write()"
                                     f"{waits})")
                report.errors.append(f"{st.label}: {batches} batch(es), {samples} sample(s), "
                                     "not written: the shutdown budget ran out while its "
                                     f"write() had not returned{waits}")
            elif st.died:  # what it held and what was queued for it went nowhere
                batches, samples = st.abandon()
                report.errors.append(f"{st.label}: its storage thread ended during the run "
                                     f"({st.died}): {batches} batch(es), {samples} sample(s) "
                                     "not written")
            st.sub.close()
        self._close_sinks(report, until)
        if not self.v4.close(left(2.0)):  # not past the budget: it is blocked if not ended
            report.leaked.append("v4 event loop thread")
        if self.pool is not None:  # the workers' processes exited meanwhile, or are leaked
            report.leaked += self.pool.reap(left(self.phases.total_s))
        if self.bridge is not None and self.bridge.lost:
            report.errors.append(f"the bridge lost {self.bridge.lost} v2 read(s) to an error "
                                 "of its own (see the alarms)")
        for st in self.sink_threads:
            if st.failed_writes:  # samples that are in no file: the run did not go well
                report.errors.append(f"{st.label}: {st.failed_rows} sample(s) not written "
                                     f"({st.failed_writes} failed write(s)); last: "
                                     f"{st.last_failure}")
        self.budget.stop(left(1.0))
        for r in self.routines:
            if r.thread.ident is not None and not r.join(left(0.5)):
                report.leaked.append(f"routine thread for {r.state.instrument}")
        for finish in self.on_stopped:
            try:
                report.errors += finish()
            except Exception as exc:
                report.errors.append(f"{getattr(finish, '__qualname__', finish)} failed: "
                                     f"{type(exc).__name__}: {exc}")
        report.errors += self.plugin_failures
        known_failures = len(self.plugin_failures)
        report.counts = self.counts()
        self._judge(report)
        report.duration_s = round(time.monotonic() - t0, 3)
        if self._announced:
            self.notifier.notify("daqhub_session_stopped", session_id=self.session_id,
                                 report=report.as_dict())
        for stuck in self.notifier.close(left(1.0) + 0.5):  # a stuck plugin is its own fault:
            self._alarm("plugin", f"plugin {stuck} was still busy at shutdown")  # the run's ok
        # what the stop notification raised counts as what the start one did
        report.errors += self.plugin_failures[known_failures:]
        report.duration_s = round(time.monotonic() - t0, 3)
        # saved last: what made the run fail (a stop hook that raised) and the alarms about
        # plugins still busy were missing from it, the stop notification coming after it
        self._save_budget(report)
        if self._plugin_failed in self.host.notify_listeners:
            self.host.notify_listeners.remove(self._plugin_failed)
        return report

    def _close_sinks(self, report: ShutdownReport, deadline: float) -> None:
        """Close every sink, each lane of it on its own (a storage session's flavors), all
        at once, each on a helper thread waited for until the shutdown's ``deadline`` (at
        least :data:`SINK_CLOSE_MIN_S`).

        A sink's close is a plugin's code (a backend on a network share that stopped
        answering): called here it froze the shutdown for ever. One still closing at the
        deadline is left to its daemon thread and named in ``leaked`` and ``errors``, so the
        run is not ok, and the shutdown goes on. A lane whose thread is still in its
        ``write()`` is not closed (its writer is in use), and says so. What each lane's close
        returns is its own: one flavor's failure does not hide another's files.
        """
        closing: dict[tuple[str, str | None], concurrent.futures.Future[Any]] = {}
        until = max(deadline, time.monotonic() + SINK_CLOSE_MIN_S)
        fed = {st.owner for st in self.sink_threads}
        for name, sink in self._sinks.items():  # never fed: the start failed before
            if name not in fed:
                closing[(name, None)] = on_daemon_thread(
                    functools.partial(close_sink, sink, until), f"daqhub-close:{name}")
        for st in self.sink_threads:
            if st.thread.is_alive():
                report.errors.append(f"{st.label} was not closed: its write() had not "
                                     "returned, so its files may be incomplete")
                continue
            closing[(st.owner, st.lane)] = on_daemon_thread(
                functools.partial(st.close_sink, until), f"daqhub-close:{st.name}")
        for (name, lane), fut in closing.items():
            shown = name if lane is None else f"{name}:{lane}"
            try:
                exc = fut.exception(max(0.0, until - time.monotonic()))
            except concurrent.futures.TimeoutError:
                waited = self.phases.total_s if until == deadline else SINK_CLOSE_MIN_S
                report.leaked.append(f"sink {shown} (still in close() after the shutdown's "
                                     f"{waited:g} s)")
                report.errors.append(f"closing {shown} did not finish within the shutdown "
                                     "budget: what it still held may not be on disk")
                continue
            if exc is not None:
                report.errors.append(f"closing {shown} failed: {exc}")
            elif lane is None:
                report.sink_results[name] = fut.result()
            else:
                report.sink_results.setdefault(name, {})[lane] = fut.result()

    def _judge(self, report: ShutdownReport) -> None:
        """One outcome per instrument and routine; only the ok ones are clean."""
        healths = [h for i in self.lab.instruments() if (h := self.health_of(i.id))]
        forced = report.forced_instruments
        unstored: dict[str, dict[str, int]] = {}  # id -> sink -> its samples not stored
        for st in self.sink_threads:
            for iid, n in st.unstored.items():
                unstored.setdefault(iid, {})[st.label] = n
        remote = self.pool.health if self.pool is not None else {}
        report.instruments = [instrument_outcome(h, report.counts.get(h.id, {}),
                                                 forced.get(h.id, ""), unstored.get(h.id, {}),
                                                 in_process=h.id not in remote)
                              for h in healths]
        report.routines = [routine_outcome(vars(r.state) | {"log": []}) for r in self.routines]
        report.clean = [o["id"] for o in report.instruments if o["ok"]]
        report.failed = [f"{o['id']}: {o['problem']}" for o in report.instruments
                         if not o["ok"]]
        report.failed += [f"routine {o['instrument']}: {o['problem']}" for o in report.routines
                          if not o["ok"]]

    def _save_budget(self, report: ShutdownReport) -> None:
        """One budget.json per session, in the first flavor's session directory, written
        whole or not at all: written in place, a full disk left 20 KiB of it that is not
        JSON, though the report said it could not be saved."""
        dirs = list(self.output_dirs().values())
        if not dirs:
            return
        text = json.dumps(
            {"session_id": self.session_id, "samples": self.budget.history(),
             "alarms": list(self.alarms), "alarms_total": self.alarms_total,
             "instruments": report.instruments,
             "routines": report.routines, "state_changes": list(self.state_changes),
             "shutdown": {k: v for k, v in report.as_dict().items()
                          if k not in ("instruments", "routines")}},
            indent=1, default=str)
        try:
            replace_whole(dirs[0] / HISTORY_FILE, lambda tmp: tmp.write_text(text))
        except OSError as exc:
            report.errors.append(f"could not save {HISTORY_FILE} in {dirs[0]}: {exc}")
