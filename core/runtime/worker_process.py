"""The child side of ``[daqhub] workers = N``: one shard of the lab in its own process.

A worker is a fresh interpreter (``python -m daqhub.runtime.worker_process FD``:
not a fork, since the parent has threads and a forked copy of their locks could
be held forever; not ``multiprocessing``'s spawn either, which would run the
user's script again in the child) in its own process group, so a terminal's
Ctrl-C reaches only the parent, which alone runs the phased shutdown. It gets
its lab as the first message on the socket named by FD and builds everything
again from it: the plugin host from the installed entry points, then an ordinary
:class:`~.dual.DualRuntimeManager` for its shard's instruments, without
storage or routines. The shared managers live here, so every instrument on one
port or VISA resource is in this process, which holds the device-ownership lock
records (``core/resources/filelock.py``); a record names the run that started it (the
process a user can stop), with this worker as detail.

A restarted worker (one whose shard had started before, in an earlier process) opens its
ports and VISA sessions with the managers' ``open_absent``: one it cannot open (ser2net
down, an adapter unplugged when the worker died) is that device's disconnect, reopened in
the background while its instruments reconnect and the shard's other instruments run, as
when a port drops in a running process; a first start that cannot open one fails, naming
it, as in process.

Everything goes to the parent over one socket: unified batches as Arrow IPC
streams, and pickled messages: ``started`` (per-instrument causes, empty when
all started), ``health`` (every instrument's counters, each state change as it
happens), ``notify`` (plugin notifications, delivered by the parent's plugins),
``alarm``, ``result`` (of a command) and, last, ``stopped`` (what the shard's
shutdown forced, leaked or could not close). The parent sends ``call`` and
``stop``. A worker ignores SIGINT, SIGTERM and SIGHUP (the parent decides when to stop;
a closed terminal sends SIGHUP to the workers too)
and shuts down by itself when the parent's end of the socket closes (the parent
died).
"""

from __future__ import annotations

import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..config import LabConfig
from .broadcast import Subscription, SubscriptionClosed
from .health import InstrumentHealth

if TYPE_CHECKING:
    from ..host import PluginHost

BATCH = b"B"
MESSAGE = b"M"
#: how often counters and alarms go to the parent
HEALTH_INTERVAL_S = 0.25
#: how long the stream collects before it goes to the parent (the bridge window's length)
WINDOW_S = 0.05
#: plugin notifications the parent sends itself, for the whole lab
PARENT_ONLY_HOOKS = frozenset({"daqhub_session_started", "daqhub_session_stopped"})


def ipc_stream(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def encode_batches(batches: list[pa.RecordBatch]) -> bytes:
    """One message for a window of the stream: each channel's rows as one Arrow IPC stream.

    Joining a channel's batches first makes one encoding, one decoding and one publish
    per channel and window instead of one per poll.
    """
    by_channel: dict[Any, list[pa.RecordBatch]] = {}
    for b in batches:
        by_channel.setdefault(b.schema.metadata and tuple(b.schema.metadata.items()), []
                              ).append(b)
    streams = []
    for group in by_channel.values():
        try:
            streams.append(ipc_stream(pa.concat_batches(group) if len(group) > 1 else group[0]))
        except pa.ArrowInvalid:  # schemas differ after all: one stream each
            streams += [ipc_stream(b) for b in group]
    return BATCH + pickle.dumps(streams, protocol=pickle.HIGHEST_PROTOCOL)


def decode_batches(data: bytes) -> list[pa.RecordBatch]:
    out: list[pa.RecordBatch] = []
    for stream in pickle.loads(memoryview(data)[1:]):
        with pa.ipc.open_stream(stream) as reader:
            out += list(reader)
    return out


def encode(message: tuple[Any, ...]) -> bytes:
    return MESSAGE + pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


ExceptionState = tuple[type[BaseException], tuple[Any, ...], dict[str, Any]]


def portable(exc: BaseException) -> ExceptionState:
    """An exception as its class, args and attributes: an exception whose ``__init__`` takes
    other arguments than ``args`` (``DriverError``) does not survive plain pickling."""
    state = (type(exc), exc.args, dict(getattr(exc, "__dict__", {})))
    try:
        pickle.dumps(state)
        return state
    except Exception:
        return RuntimeError, (f"{type(exc).__name__}: {exc}",), {}


def rebuild(state: ExceptionState) -> BaseException:
    """The exception :func:`portable` took apart, of its own class, as the worker raised it.

    Made without its ``__init__`` (see :func:`portable`), by the ``__new__`` of the base
    that lays it out: ``cls.__new__`` is the first in the MRO, which for
    ``DriverDisconnectedError(DriverError, ConnectionError)`` is RuntimeError's, and
    Python refuses that for an OSError's layout (the TypeError killed the thread reading
    the worker, and with it every later message of that worker, its report included)."""
    cls, args, attributes = state
    for base in cls.__mro__:
        if "__new__" in vars(base):
            try:
                exc: BaseException = base.__new__(cls, *args)  # type: ignore[call-overload]
                break
            except TypeError:
                continue
    else:  # object.__new__ cannot make an exception: not reached for a BaseException
        return RuntimeError(f"{cls.__name__}: {args}")
    exc.args = args
    exc.__dict__.update(attributes)
    return exc


def health_state(h: InstrumentHealth, events_sent: int) -> dict[str, Any]:
    """What the parent's mirror of an instrument's health copies: counters, and the events
    after the first ``events_sent`` (the parent keeps the earlier ones)."""
    new = min(h.events_total - events_sent, len(h.events))
    return {**h.snapshot(), "last_error_seen": h.last_error_seen,
            "close_failure": h.close_failure,
            "events_total": h.events_total, "event_counts": dict(h.event_counts),
            "new_events": list(h.events)[len(h.events) - new:] if new > 0 else []}


def worker_host() -> PluginHost:
    """The plugins a worker process has: those of the installed entry points, loaded afresh
    (a plugin registered by hand in the parent's script is not among them). The parent
    builds one too, to check before it spawns anything that each worker finds its types."""
    from ..host import PluginHost

    host = PluginHost()
    host.load_entry_points()
    return host


class Outbox:
    """The one writer of the socket: batches from the pump, messages from anywhere.

    Messages queue here and a sender thread writes them, so a command result that
    completes on the event loop never waits for the socket.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.broken = False
        self.thread = threading.Thread(target=self._main, name="daqhub-worker-outbox",
                                       daemon=True)
        self.thread.start()

    def send_now(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            with self.lock:
                self.conn.send_bytes(data)
        except (OSError, EOFError, ValueError):
            self.broken = True  # the parent is gone: the main loop sees EOF and stops

    def post(self, message: tuple[Any, ...]) -> None:
        self.queue.put(encode(message))

    def _main(self) -> None:
        while (data := self.queue.get()) is not None:
            self.send_now(data)

    def close(self, timeout: float) -> None:
        self.queue.put(None)
        self.thread.join(timeout)


class BatchPump:
    """The shard's only consumer of its unified stream: everything to the parent, lossless,
    one message per window (:data:`WINDOW_S`) rather than one per batch."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.sub: Subscription[pa.RecordBatch] = Subscription("parent", lossless=True,
                                                              capacity=10_000)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._main, name="daqhub-worker-pump",
                                       daemon=True)

    def _main(self) -> None:
        while True:
            try:
                items = self.sub.get_window(HEALTH_INTERVAL_S, WINDOW_S, self.done)
            except SubscriptionClosed:
                return
            if items:
                self.outbox.send_now(encode_batches(items))
            if self.done.is_set() and self.sub.depth() == 0:
                return

    def stop(self, timeout: float) -> bool:
        """Send what is still queued (the runtime has stopped producing), then end."""
        self.done.set()
        self.thread.join(timeout)
        self.sub.close()
        return not self.thread.is_alive()


class ShardRuntime:
    """A DualRuntimeManager for one shard, talking to the parent through an :class:`Outbox`."""

    def __init__(self, conn: Connection, lab: LabConfig, session_id: str,
                 restarted: bool) -> None:
        from .dual import DualRuntimeManager

        self.conn = conn
        self.outbox = Outbox(conn)
        self.rt = DualRuntimeManager(lab, worker_host(), session_id=session_id)
        self.rt.serial.open_absent = self.rt.visa.open_absent = restarted
        self.pump = BatchPump(self.outbox)
        self.rt.taps.append(self.pump.sub)
        # plugin notifications go to the parent's plugins: one delivery per lab, not per shard
        self.rt.notifier.notify = self._notify  # type: ignore[method-assign]
        self.alarms_sent = 0
        self.events_sent: dict[str, int] = {}
        self.state_lock = threading.RLock()

    def _state(self, h: InstrumentHealth) -> dict[str, Any]:
        with self.state_lock:
            state = health_state(h, self.events_sent.get(h.id, 0))
            self.events_sent[h.id] = state["events_total"]
            return state

    def _notify(self, hook: str, **kwargs: Any) -> None:
        if hook not in PARENT_ONLY_HOOKS:
            self.outbox.post(("notify", hook, kwargs))

    def _healths(self) -> list[InstrumentHealth]:
        return [h for i in self.rt.lab.instruments() if (h := self.rt.health_of(i.id))]

    def _on_state(self, previous: Any) -> Any:
        def changed(h: InstrumentHealth, old: str, new: str, reason: str) -> None:
            if previous is not None:
                previous(h, old, new, reason)
            with self.state_lock:  # events go out in the order they were taken
                self.outbox.post(("state", h.id, self._state(h), new, reason))
        return changed

    def start(self) -> bool:
        from .dual import StartError

        self.pump.thread.start()
        try:
            self.rt.start()
        except StartError as exc:
            self.outbox.post(("started", exc.causes))
            return False
        except Exception as exc:  # anything else stops the whole shard: every id is named
            why = f"worker could not start: {type(exc).__name__}: {exc}"
            self.outbox.post(("started", {i.id: why for i in self.rt.lab.instruments()}))
            return False
        for h in self._healths():
            h.listener = self._on_state(h.listener)
        self.outbox.post(("started", {}))
        return True

    def report_health(self) -> None:
        probe = self.rt.probe()
        with self.state_lock:
            self.outbox.post(("health", {h.id: self._state(h) for h in self._healths()}, probe))
        new = self.rt.alarms_total - self.alarms_sent
        if new > 0:
            for alarm in list(self.rt.alarms)[-new:]:
                self.outbox.post(("alarm", alarm))
            self.alarms_sent = self.rt.alarms_total

    def call(self, request: int, iid: str, method: str, args: tuple[Any, ...],
             kwargs: Mapping[str, Any]) -> None:
        try:
            fut = self.rt.submit(iid, method, *args, **kwargs)
        except Exception as exc:
            self.outbox.post(("result", request, False, portable(exc)))
            return

        def done(f: Any) -> None:
            exc = f.exception()
            if exc is not None:
                self.outbox.post(("result", request, False, portable(exc)))
                return
            try:
                self.outbox.post(("result", request, True, f.result()))
            except Exception as why:  # a result that does not pickle
                self.outbox.post(("result", request, False, portable(RuntimeError(
                    f"{iid}.{method} returned a value that cannot leave the worker process: "
                    f"{why}"))))
        fut.add_done_callback(done)

    def serve(self) -> None:
        """Answer the parent until it says stop or goes away, then shut the shard down."""
        next_health = 0.0
        while True:
            if time.monotonic() >= next_health:
                self.report_health()
                next_health = time.monotonic() + HEALTH_INTERVAL_S
            try:
                if not self.conn.poll(HEALTH_INTERVAL_S):
                    continue
                message = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                break  # the parent died: stop the hardware cleanly all the same
            if message[0] == "stop":
                break
            if message[0] == "call":
                self.call(*message[1:])

    def stop(self) -> None:
        report = self.rt.shutdown()
        if not self.pump.stop(max(1.0, self.rt.lab.shutdown_timeout - report.duration_s)):
            report.errors.append(f"{self.pump.sub.depth()} batch(es) not sent to the daqhub "
                                 "process: it stopped reading")
        self.report_health()  # the final states ("stopped") before the report
        self.outbox.post(("stopped", {k: getattr(report, k) for k in
                                      ("forced", "leaked", "unclosed_resources", "errors",
                                       "forced_instruments")}))
        self.outbox.close(5.0)


def worker_main(fd: int) -> None:
    """Run the shard the parent sends first on socket ``fd`` until the parent stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    conn = Connection(fd)
    kind, lab, session_id, restarted = pickle.loads(conn.recv_bytes()[1:])
    assert kind == "lab" and isinstance(lab, LabConfig)
    shard = ShardRuntime(conn, lab, session_id, restarted)
    if shard.start():
        shard.serve()
    shard.stop()
    conn.close()


if __name__ == "__main__":
    worker_main(int(sys.argv[1]))
