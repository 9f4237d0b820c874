"""The parent side of ``[daqhub] workers = N``: shards of the lab in worker processes.

The parent keeps everything a user sees: storage (one writer), routines, the
Lab API, the live view, the report and ``budget.json``. Each worker (see
:mod:`.worker_process`) runs one :mod:`.shards` shard and streams its unified
batches here, where they join the parent's unified stream as if produced in
process. Each remote instrument has a :class:`RemoteHealth` that mirrors the
worker's own record of it, so reports and exit codes are judged the same way.

A worker that dies (a crash, ``kill -9``) is noticed by its supervisor thread at
once (the pipe closes): its instruments get the error and go ``restarting``,
commands waiting on it fail, and it is spawned again after the lab's restart
backoff (``[daqhub.restart]``: ``backoff_first_s`` doubling up to
``backoff_max_s``); more than ``max_restarts`` within ``window_s`` leaves its
instruments ``failed``, as for a v4 actor. Only deaths count: a port the restarted worker
cannot open (ser2net still down) is its instruments' disconnect (see
:mod:`.worker_process`), not a failed start. Every wait is bounded and its error
names the worker, its process id and its instruments. A running worker reports every
0.25 s: one silent for :data:`SILENT_AFTER_S` has its instruments' rates read 0, for
:data:`SILENT_ALARM_S` is named in an alarm, and for :data:`HUNG_AFTER_S` is killed as
hung and restarted; its instruments' time disconnected counts from the last message heard.

At shutdown the parent sends ``stop`` and waits for the worker's ``stopped`` report or
the end of its socket, whichever comes first, for as long as :class:`StopBudget` gives
(the one rule sharing the lab's ``shutdown_timeout`` between a worker's own shutdown and
the parent's wait for it); the silence that marks a running worker hung does not apply
then, since a worker busy in a driver's slow ``close()`` sends nothing meanwhile. A worker
whose socket ends without the report (it crashed in its shard's shutdown, in a driver's
``close()`` or after) is not restarted but named in the report's errors, with its exit
status and instruments, and the run is not ok: its last samples and its shutdown report
are lost.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import logging
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa

from ..command_limits import NoResult, result_within
from ..config import InstrumentConfig, LabConfig
from ..instrument import CommandOutcomeUnknown
from ..measurement import ChannelSpec
from ..resources.filelock import holder_for_children
from ..specs import InstrumentType
from .health import InstrumentHealth
from .rates import DEFAULT_AFTER_S
from .restarts import RestartPolicy, Restarts
from .shards import Shard, plan
from .v2 import CommandRejected
from .worker_process import (
    BATCH,
    HEALTH_INTERVAL_S,
    decode_batches,
    encode,
    rebuild,
    worker_host,
)

log = logging.getLogger("daqhub.workers")

#: how long a new worker may take to import, load the plugins and start its instruments,
#: on top of the restart policy's ``start_timeout_s``
SPAWN_ALLOWANCE_S = 30.0
#: a running worker reports every 0.25 s: one silent this long is hung, and is killed
HUNG_AFTER_S = 10.0
#: silent this long (four reports missed), a worker's instruments read 0 polls/s: what it
#: said last is no longer so (a hung worker's instruments showed their last rate until it
#: was killed, while the remote viewer, which mirrors the stream, showed them silent)
SILENT_AFTER_S = 4 * HEALTH_INTERVAL_S
#: silent this long, a worker is named in an alarm: the wait a slow rate has before its
#: alarm (the worker's own rate alarms do not come from a worker that sends nothing)
SILENT_ALARM_S = DEFAULT_AFTER_S
#: the longest a message to a worker may wait for room in its socket (a worker that stopped
#: reading is stuck: the sender gets an error rather than hanging with it)
SEND_TIMEOUT_S = 5.0
COUNTERS = ("measurements", "errors", "refused_samples", "restarts", "reconnects",
            "events_total")
#: the parent's part of a shutdown once its workers stopped (draining the bridge, closing
#: storage): this long, or a quarter of a shorter ``shutdown_timeout``
PARENT_PART_S = 2.0
#: what a worker's report may take beyond its shard's own shutdown (its phases' last steps,
#: its last batches and the report through the socket): this long, or a quarter of a shorter
#: budget
EXIT_PART_S = 1.0
#: the least ``shutdown_timeout`` with which worker processes can be counted on to stop
#: cleanly: a shard's quick shutdown (0.2-0.3 s) and its interpreter's exit after the report
#: (0.2 s, 1.2 s with both cores busy; 2026-12 measurements) fit in less only on an idle box
MIN_SHUTDOWN_S = 2.0


@dataclass(frozen=True)
class StopBudget:
    """How a lab's ``shutdown_timeout`` is shared with its workers: the one rule for both
    ends, so the parent never gives up on a worker still inside its own budget.

    Each worker's shard shuts down within ``shard_s`` (its phases, its drivers' ``close()``)
    and the parent waits ``wait_s`` for its report, the shard's budget and a margin; what is
    left of the total is the parent's own part, during which the workers' processes exit
    (:meth:`WorkerPool.reap`). (Sized apart, the worker had the total less 3 s, at least
    1 s, and the parent the total less 2 s: with 2 s it killed every worker at once and no
    driver's ``close()`` ran.)
    """

    total_s: float
    shard_s: float
    wait_s: float

    @classmethod
    def of(cls, total_s: float) -> StopBudget:
        parent = min(PARENT_PART_S, total_s / 4)
        exit_s = min(EXIT_PART_S, total_s / 4)
        return cls(total_s, total_s - parent - exit_s, total_s - parent)

    def too_short(self) -> str:
        """Why workers cannot be counted on to stop cleanly in this budget, or ``""``."""
        if self.total_s >= MIN_SHUTDOWN_S:
            return ""
        return (f"shutdown_timeout = {self.total_s:g} s is too short for worker processes to "
                f"stop cleanly (at least {MIN_SHUTDOWN_S:g} s): raise it, or run with "
                "workers = 1")


@dataclass
class RemoteHealth(InstrumentHealth):
    """The parent's copy of a worker instrument's health.

    A restarted worker counts from zero again, so what earlier processes counted
    (and what the parent itself recorded: the deaths and restarts) is carried.
    """

    rate_mirror: float = 0.0
    #: when the worker's last word on it came (``time.monotonic()``)
    mirrored_at: float = 0.0
    carried: dict[str, int] = field(default_factory=dict, repr=False)
    carried_counts: collections.Counter[str] = field(default_factory=collections.Counter,
                                                     repr=False)

    def rate_hz(self) -> float:
        """The rate the worker last said, while it speaks: 0 once it has been silent for
        :data:`SILENT_AFTER_S`, so the live view shows a hung worker's instruments silent."""
        with self._lock:
            fresh = time.monotonic() - self.mirrored_at <= SILENT_AFTER_S
            return self.rate_mirror if fresh else 0.0

    def mirror(self, s: Mapping[str, Any], reason: str = "") -> None:
        with self._lock:
            for k in COUNTERS:
                setattr(self, k, self.carried.get(k, 0) + int(s[k]))
            self.event_counts = self.carried_counts + collections.Counter(s["event_counts"])
            self.events.extend(s["new_events"])
            self.last_error = s["last_error"]
            self.last_error_seen = s["last_error_seen"] or self.last_error_seen
            self.close_failure = s["close_failure"]
            self.rate_mirror = float(s["rate_hz"])
            self.mirrored_at = time.monotonic()
        self.sample_made(s["last_value"], s["last_timestamp_ns"])
        self.set_state(s["state"], reason)

    def carry(self) -> None:
        """Keep what is counted now: the next worker process starts from zero."""
        with self._lock:
            self.carried = {k: getattr(self, k) for k in COUNTERS}
            self.carried_counts = collections.Counter(self.event_counts)
            self.rate_mirror = 0.0

    def cut_off(self, why: str, since: float) -> None:
        """Its worker died: ``restarting``, and cut off from its hardware since ``since``, the
        last message heard from the worker (a hung worker's instruments were silent for
        :data:`HUNG_AFTER_S` before it was killed: counted from the kill, an 11 s outage was
        reported as 1.8 s disconnected)."""
        self.set_state("restarting", why)
        with self._lock:
            if self._down_since is not None:
                self._down_since = min(self._down_since, since)


def shard_lab(lab: LabConfig, shard: Shard, shutdown_s: float) -> LabConfig:
    """The lab a worker runs: its instruments only, no routines, serving or storage, and its
    shard's part of the shutdown budget (:attr:`StopBudget.shard_s`)."""
    ids = set(shard.ids)
    flavors = {f: dataclasses.replace(fc, instruments=[i for i in fc.instruments if i.id in ids])
               for f, fc in lab.flavors.items()}
    return dataclasses.replace(lab, flavors=flavors, routines=[], serve={}, workers=1,
                               shutdown_timeout=shutdown_s)


class WorkerFailed(CommandRejected):
    """A command could not reach its instrument: the worker process died or is restarting."""


class WorkerLost(CommandOutcomeUnknown):
    """A command was sent to a worker process that ended before it answered: it may have
    run (a ``CommandNotSent`` here made a script that retries repeat a move)."""


class Worker:
    """One worker process, and the thread that reads it and restarts it when it dies."""

    def __init__(self, pool: WorkerPool, shard: Shard) -> None:
        self.pool = pool
        self.shard = shard
        self.lab = shard_lab(pool.lab, shard, pool.budget.shard_s)
        self.process: Any = None
        self.conn: Any = None
        self.state = "starting"
        self.started = threading.Event()
        self.start_causes: dict[str, str] = {}
        self.spawned_at = 0.0
        self.heard_at = 0.0
        #: the silence it was named for in an alarm (one alarm per silence)
        self.silence_alarmed = False
        #: a worker ran its instruments once: from then on a death is restarted
        self.ever_started = False
        #: why the parent killed the worker, for the report of its death
        self.kill_reason = ""
        self.stopped = threading.Event()
        #: nothing more will come: the ``stopped`` report arrived, or the reader thread ended
        #: (the socket's end); what shutdown waits on, so a dead worker does not hold it
        self.finished = threading.Event()
        #: the socket ended during shutdown before the ``stopped`` report: the worker died
        self.cut_off = False
        #: the worker's own shutdown report: its lists, and ``forced_instruments``
        self.stop_report: dict[str, Any] = {}
        self.probe: dict[str, Any] = {}
        self.pending: dict[int, tuple[str, concurrent.futures.Future[Any]]] = {}
        self.send_lock = threading.Lock()
        #: held while commands are registered and while a death fails them: none slips between
        self.pending_lock = threading.Lock()
        self.restarts = Restarts(pool.policy)
        self.thread = threading.Thread(target=self._main, name=f"daqhub-{self.label}",
                                       daemon=True)

    @property
    def label(self) -> str:
        return self.shard.name.replace(" ", "-")

    def describe(self) -> str:
        pid = self.process.pid if self.process is not None else "not running"
        return f"{self.shard.name} (pid {pid}; {', '.join(self.shard.ids)})"

    def healths(self) -> list[RemoteHealth]:
        return [self.pool.health[i] for i in self.shard.ids]

    # --- process ------------------------------------------------------------------------

    def spawn(self) -> None:
        parent_end, child_end = socket.socketpair()
        self.started.clear()
        self.stopped.clear()
        self.finished.clear()
        self.spawned_at = self.heard_at = time.monotonic()
        with child_end:  # closed here at once: the parent's end reads EOF when the child dies
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daqhub.runtime.worker_process", str(child_end.fileno())],
                pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL, process_group=0,
                env=holder_for_children(self.shard.name))  # its device records name the run
        parent_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                              struct.pack("ll", int(SEND_TIMEOUT_S), 0))
        self.conn = Connection(parent_end.detach())
        try:  # once its shard started, a port it cannot open is down, not a failed start
            self.send(("lab", self.lab, "", self.ever_started))
        except OSError:
            pass  # it died at once: its reader sees the end of the socket and reports it
        if not self.thread.is_alive():
            self.thread.start()

    def kill(self, why: str) -> None:
        if not self.kill_reason:
            self.kill_reason = f"{why}, so it was killed"
            log.error("%s %s", self.describe(), self.kill_reason)
        self.process.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def join(self, timeout: float) -> bool:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def send(self, message: tuple[Any, ...]) -> None:
        data = encode(message)
        with self.send_lock:
            self.conn.send_bytes(data)

    def _main(self) -> None:
        while True:
            self._read()
            self.conn.close()
            if self.pool.stopping.is_set():
                self.cut_off = not self.stopped.is_set()  # reported by WorkerPool.stop
                break
            if not self._died() or not self._respawn():
                break
        self._fail_pending("its worker process has stopped",
                           "stopped" if self.stopped.is_set() else self.state)
        self.finished.set()

    def _read(self) -> None:
        """Deliver what the worker sends until it is gone; kill it when it hangs.

        Once the shutdown began, the budget (:meth:`WorkerPool.stop`) bounds the wait
        instead: a worker in its own shutdown sends nothing until its report, for as long as
        its drivers' ``close()`` take (the hung rule killed it there after 10 s, and its
        report of what it forced was lost)."""
        limit = self.pool.policy.start_timeout_s + SPAWN_ALLOWANCE_S
        while True:
            try:
                if not self.conn.poll(0.5):
                    if not self.alive():
                        return
                    silent = time.monotonic() - self.heard_at
                    if self.pool.stopping.is_set():
                        continue  # the shutdown's budget bounds the wait now
                    if not self.started.is_set() and silent > limit:
                        self.kill(f"did not report within {limit:g} s that its instruments "
                                  "started")
                    elif self.started.is_set() and silent > HUNG_AFTER_S:
                        self.kill(f"sent nothing for {silent:.0f} s (hung)")
                    elif self.started.is_set() and silent > SILENT_ALARM_S \
                            and not self.silence_alarmed:
                        self.silence_alarmed = True
                        self.pool.alarm("workers", f"{self.describe()} has sent nothing for "
                                        f"{silent:.0f} s: its instruments read 0 polls/s; it "
                                        f"is killed as hung after {HUNG_AFTER_S:g} s", None)
                    continue
                data = self.conn.recv_bytes()
            except (EOFError, OSError):
                return
            self.heard_at = time.monotonic()
            self.silence_alarmed = False
            try:
                if data[:1] == BATCH:
                    for batch in decode_batches(data):
                        self.pool.publish(batch)
                else:
                    self._handle(pickle.loads(data[1:]))
            except Exception as exc:  # one message: an uncaught error here ended the thread,
                # and the parent heard nothing more of the worker (its report included)
                self.pool.alarm("workers", f"{self.describe()}: a message from it could not "
                                f"be taken in: {type(exc).__name__}: {exc}", None)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "health":
            for iid, state in message[1].items():
                self.pool.health[iid].mirror(state)
            self.probe = message[2]
        elif kind == "state":
            self.pool.health[message[1]].mirror(message[2], message[4])
        elif kind == "result":
            _, request, ok, value = message
            iid_fut = self.pending.pop(request, None)
            if iid_fut is not None and not iid_fut[1].done():
                try:
                    if ok:
                        iid_fut[1].set_result(value)
                    else:
                        iid_fut[1].set_exception(rebuild(value))
                except concurrent.futures.InvalidStateError:
                    pass  # the caller gave up (cancelled) in the meantime
        elif kind == "notify":
            self.pool.notify(message[1], **message[2])
        elif kind == "alarm":
            alarm = dict(message[1])
            self.pool.alarm(alarm.pop("what"), alarm.pop("message"),
                            {k: v for k, v in alarm.items() if k != "time"})
        elif kind == "started":
            self.start_causes = dict(message[1])
            self.state = "running" if not self.start_causes else "failed"
            self.ever_started |= not self.start_causes
            self.started.set()
        elif kind == "stopped":
            self.stop_report = message[1]
            self.stopped.set()
            self.finished.set()

    def register(self, iid: str, method: str, request: int,
                 fut: concurrent.futures.Future[Any]) -> None:
        with self.pending_lock:
            if self.state != "running":
                raise WorkerFailed(f"{iid}.{method}: its worker process is {self.state} "
                                   f"({self.describe()})")
            self.pending[request] = (iid, fut)

    def _fail_pending(self, why: str, state: str) -> None:
        with self.pending_lock:
            self.state = state
            waiting, self.pending = list(self.pending.values()), {}
        for iid, fut in waiting:
            if not fut.done():
                fut.set_exception(WorkerLost(f"{iid}: {why} before it answered, so whether "
                                             f"the command ran is unknown ({self.describe()})"))

    def ended_how(self) -> str:
        """How the process ended, for reports: why the parent killed it, else its exit
        status (``was killed by signal 9``, ``exited with code 1``)."""
        code = self.process.returncode
        if self.kill_reason:
            return self.kill_reason
        if code is None:
            return "closed its socket but is still running"
        return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"

    def _died(self) -> bool:
        """A worker that ended without being told to: report it on each of its instruments."""
        self.join(1.0)
        how = self.ended_how()
        if self.start_causes and not self.kill_reason:
            how += f" after it could not start: {next(iter(self.start_causes.values()))}"
        self.kill_reason = ""
        why = f"{self.describe()} {how}"
        if not self.ever_started:  # the lab's start failed: StartError names it, no restart
            if not self.start_causes:
                self.start_causes = {i: why for i in self.shard.ids}
            self.started.set()
            return False
        self._fail_pending(f"its worker process {how}", "restarting")
        log.error("worker died: %s", why)
        for h in self.healths():
            h.error(why)
            self.pool.on_event(h.id, "worker died", why)  # recorded in h.events there
            h.cut_off(why, self.heard_at)
        return True

    def lost_in_shutdown(self) -> str:
        """The report's error for a worker that died during shutdown before its ``stopped``
        report; each of its instruments gets it as its error and a ``worker died`` event."""
        why = f"{self.describe()} {self.ended_how()} during shutdown, before its shutdown report"
        log.error("worker died: %s", why)
        for h in self.healths():
            h.error(why)
            self.pool.on_event(h.id, "worker died", why)
        stopped = [h.id for h in self.healths() if h.state == "stopped"]
        running = [f"{h.id} (left {h.state})" for h in self.healths() if h.state != "stopped"]
        known = "".join([f"; {', '.join(stopped)} had stopped" if stopped else "",
                         f"; {', '.join(running)} had not stopped" if running else ""])
        return (f"{why}: the samples it had not sent yet are lost, and what its shutdown "
                f"forced, leaked or could not close is unknown{known}")

    def _respawn(self) -> bool:
        """Spawn the worker again after the backoff, unless it died too often."""
        policy = self.pool.policy
        delay = self.restarts.crashed(time.monotonic())  # the rule of restarts.py
        if delay is None:
            return self._give_up(f"{self.shard.name} died {len(self.restarts.times)} times "
                                 f"within {policy.window_s:g} s (max_restarts = "
                                 f"{policy.max_restarts})")
        if self.pool.stopping.wait(delay):
            return False
        for h in self.healths():
            h.restarts += 1
            self.pool.on_event(h.id, "restarted", f"{self.shard.name} spawned again")
            h.carry()  # after every count of the parent's own
        try:
            self.spawn()
        except OSError as exc:  # no process at all (the interpreter went away?): final
            return self._give_up(f"{self.shard.name} could not be started again: {exc}")
        self.state = "starting"
        return True

    def _give_up(self, why: str) -> bool:
        self.state = "failed"
        for h in self.healths():
            self.pool.on_event(h.id, "failed", why)
            h.set_state("failed", why)
        return False


class WorkerPool:
    """Every worker of a lab; the runtime manager's way to its remote instruments."""

    def __init__(self, lab: LabConfig, url_packages: Sequence[str], *,
                 publish: Callable[[pa.RecordBatch], None],
                 notify: Callable[..., None],
                 on_event: Callable[[str, str, str], None],
                 alarm: Callable[[str, str, Mapping[str, Any] | None], None]) -> None:
        self.lab = lab
        self.url_packages = list(url_packages)
        self.policy = RestartPolicy.from_config(lab.restart)
        self.budget = StopBudget.of(lab.shutdown_timeout)
        self._publish = publish
        self.notify = notify
        self.on_event = on_event
        self.alarm = alarm
        self.health: dict[str, RemoteHealth] = {}
        self.types: dict[str, InstrumentType] = {}
        self.instruments: list[InstrumentConfig] = []
        self.workers: list[Worker] = []
        self.owner: dict[str, Worker] = {}
        self.stopping = threading.Event()
        self._held: list[pa.RecordBatch] | None = []
        self._held_lock = threading.Lock()
        self._requests = itertools.count()

    def add(self, inst: InstrumentConfig, itype: InstrumentType,
            channels: dict[tuple[str, str], ChannelSpec]) -> RemoteHealth:
        """Declare an instrument a worker will run; its channels as the lab declares them."""
        for c in itype.channels_for(inst.block):
            channels[(inst.id, c.name)] = c
        self.instruments.append(inst)
        self.types[inst.id] = itype
        self.health[inst.id] = RemoteHealth(inst.id, itype.name, inst.flavor)
        return self.health[inst.id]

    def unloadable(self) -> dict[str, str]:
        """The instruments whose type a worker process will not find, with why.

        A worker loads its plugins from the installed entry points only (:func:`worker_host`),
        so a type registered by hand in this process (``PluginHost.register`` in a script)
        is not there; said here, before anything is spawned, rather than by each worker as
        "not installed" about a type the script did register.
        """
        host = worker_host()
        return {i.id: f"type {i.type} ({i.flavor}) is registered in this process but not "
                      "installed as a distribution, so a worker process cannot load it; run "
                      "with workers = 1 or install the plugin"
                for i in self.instruments
                if host.instrument_type(i.type, i.flavor, self.lab.providers.get(i.type)) is None}

    def start(self) -> dict[str, str]:
        """Spawn every worker and wait until each started its instruments: the causes of
        those that did not, per instrument (empty when all started)."""
        causes = self.unloadable()
        if causes:
            return causes
        if why := self.budget.too_short():
            self.alarm("workers", why, None)
        shards = plan(self.instruments, self.types, self.lab.workers, self.lab.visa_lock_scope,
                      self.url_packages)
        if len(shards) < self.lab.workers:
            log.info("workers = %d, but the lab has %d resource group(s): %d worker(s) run",
                     self.lab.workers, len(shards), len(shards))
        for shard in shards:
            w = Worker(self, shard)
            self.workers.append(w)
            self.owner.update({i: w for i in shard.ids})
            w.spawn()
        limit = self.policy.start_timeout_s + SPAWN_ALLOWANCE_S + 1.0
        deadline = time.monotonic() + limit
        for w in self.workers:
            if not w.started.wait(max(0.0, deadline - time.monotonic())):
                causes.update({i: f"{w.describe()} did not report within {limit:g} s that "
                                  "its instruments started" for i in w.shard.ids})
            causes.update(w.start_causes)
        return causes

    def publish(self, batch: pa.RecordBatch) -> None:
        with self._held_lock:
            if self._held is not None:
                self._held.append(batch)
                return
        self._publish(batch)

    def attach(self) -> None:
        """The unified stream is ready: what the workers sent so far goes out first."""
        with self._held_lock:
            held, self._held = self._held or [], None
            for batch in held:
                self._publish(batch)

    def submit(self, iid: str, method: str, *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future[Any]:
        w = self.owner[iid]
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        request = next(self._requests)
        w.register(iid, method, request, fut)
        try:
            w.send(("call", request, iid, method, args, kwargs))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            w.pending.pop(request, None)
            raise TypeError(f"{iid}.{method}: its arguments cannot be sent to the worker "
                            f"process: {exc}") from None
        except BlockingIOError:  # half a message may be in the socket: the worker is lost
            w.pending.pop(request, None)
            why = (f"{iid}.{method}: {w.describe()} took no message for {SEND_TIMEOUT_S:g} s "
                   "(it stopped reading its socket); it is killed and started again")
            w.kill(f"took no message for {SEND_TIMEOUT_S:g} s")
            raise WorkerFailed(why) from None
        except (OSError, ValueError) as exc:
            w.pending.pop(request, None)
            raise WorkerFailed(f"{iid}.{method}: the worker process is gone ({exc})") from None
        return fut

    def call(self, iid: str, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any],
             timeout: float) -> Any:
        fut = self.submit(iid, method, *args, **kwargs)
        try:
            return result_within(fut, timeout)
        except NoResult:
            fut.cancel()
            raise TimeoutError(f"{iid}.{method}: no result within {timeout:g} s from "
                               f"{self.owner[iid].describe()}") from None

    def merge_probe(self, probe: dict[str, Any]) -> dict[str, Any]:
        """The parent's probe with every worker's queues, mailboxes and resources in it."""
        for w in self.workers:
            p = w.probe
            for k, v in p.get("queues", {}).items():
                probe["queues"][f"{w.label}:{k}"] = v
            probe["mailboxes"].update(p.get("mailboxes", {}))
            probe["resources"].update(p.get("resources", {}))
        probe["restarts"] += sum(h.restarts for h in self.health.values())
        probe["reconnects"] += sum(h.reconnects for h in self.health.values())
        return probe

    def stop(self, forced: list[str], leaked: list[str], unclosed: list[str],
             errors: list[str], forced_instruments: dict[str, str]) -> None:
        """Stop every worker, waiting the budget's ``wait_s`` for its report; what it could
        not do goes in the lists (with :meth:`StopBudget.too_short`'s advice when the budget
        is why), each instrument a worker forced (or that was in a worker killed for want
        of its report) in ``forced_instruments``. Its process's exit is waited for later,
        by :meth:`reap`."""
        advice = self.budget.too_short()
        self.stopping.set()
        for w in self.workers:
            if w.process is not None and w.alive():
                try:
                    w.send(("stop",))
                except (OSError, ValueError):
                    pass  # already gone: its thread reports it
        deadline = time.monotonic() + self.budget.wait_s

        def left(cap: float) -> float:
            return max(0.0, min(cap, deadline - time.monotonic()))

        for w in self.workers:
            if w.process is None or w.state == "failed":
                continue
            # its report, or the end of its socket: a worker that died ends the wait at once
            killed = not w.finished.wait(left(self.budget.wait_s)) and w.alive()
            if killed:
                forced.append(f"{w.describe()}: no shutdown report within "
                              f"{self.budget.wait_s:g} s (its own shutdown had "
                              f"{self.budget.shard_s:g} s), killed" + (advice and f"; {advice}"))
                w.process.kill()
                forced_instruments.update(
                    (i, f"{w.shard.name} killed: no shutdown report") for i in w.shard.ids)
            w.thread.join(left(1.0) + 0.1)  # it ends with the socket, before the process
            if w.thread.is_alive():
                leaked.append(f"reader thread of {w.shard.name}")
            elif w.cut_off and not killed:
                w.join(left(1.0) + 0.1)  # it died: its exit status, for the report
                errors.append(w.lost_in_shutdown())
            for key, out in (("forced", forced), ("leaked", leaked),
                             ("unclosed_resources", unclosed), ("errors", errors)):
                out += [f"{w.shard.name}: {x}" for x in w.stop_report.get(key, [])]
            forced_instruments.update(w.stop_report.get("forced_instruments", {}))

    def reap(self, timeout: float) -> list[str]:
        """The worker processes still running ``timeout`` after the parent's own part of the
        shutdown: leaked. A worker's interpreter exits after its report (0.2 s, 1.2 s with
        both cores busy, for the modules it imported), so that exit overlaps the parent's
        draining of storage rather than shortening the wait for the reports."""
        advice = self.budget.too_short()
        deadline = time.monotonic() + timeout
        return [f"worker process {w.describe()}"
                + (": still exiting after its shutdown report" if w.stopped.is_set() else "")
                + (advice and f" ({advice})")
                for w in self.workers
                if w.process is not None and not w.join(max(0.0, deadline - time.monotonic())
                                                         + 0.1)]
