"""The Lab API: run a lab file from a Python script or an asyncio program.

``open_lab`` validates the lab exactly as ``daqhub validate`` does (same
problems, same lines), starts both runtimes, stores the session metadata and
the settings snapshot, and hands back a :class:`Lab`. ``lab["stage"]`` is an
:class:`Instrument` handle: its commands are the driver's public methods,
whatever the flavor. Called from plain code a command blocks and returns the
result; called inside a running event loop it returns an awaitable instead,
so the same handle serves scripts, notebooks and asyncio programs (and the
bluesky devices in :mod:`daqhub.bluesky`) without ever blocking a loop.

Errors are the same in both flavors: the driver's own exception (e.g.
:class:`~daqhub.instrument.DriverError`) as the driver raised it; an unknown
command is an ``AttributeError`` before anything is sent; a command the
runtime could not deliver (shutting down, failed actor, full queue) is a
:class:`CommandNotSent`; one whose worker process died before answering is a
:class:`~daqhub.instrument.CommandOutcomeUnknown` (it may have run); no answer in time
is a ``TimeoutError`` naming the instrument, the command and what it waited behind (what
the instrument was busy with, or that it is reconnecting, since when and why).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import difflib
import enum
import functools
import os
import signal
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO

import pyarrow as pa

from . import tomlwrite
from .command_limits import NoResult, aresult_within, result_within, wait_limit
from .commands import command_names, driver_class
from .config import LabConfig, load, output_override, parse
from .host import PluginHost, default_host
from .records import SessionRecords, failed_settings
from .runtime.broadcast import Subscription, SubscriptionClosed
from .runtime.dual import DualRuntimeManager, ShutdownReport
from .runtime.report import print_report
from .runtime.v2 import CommandRejected
from .runtime.v4 import ActorFailed, MailboxFull
from .schema import column_values, describe
from .serve_config import serve_config

if TYPE_CHECKING:
    from .flight_service import FlightService

#: How much longer than the runtime's shutdown budget a second ``close()`` waits for the first.
CLOSE_MARGIN_S = 30.0

LabSource = str | os.PathLike[str] | Mapping[str, Any]


class Stderr(enum.Enum):
    """The report's default stream: ``sys.stderr`` as it is when the lab closes. Bound when
    ``open_lab`` was defined, it was the stderr of import time, and a script or test that
    redirected stderr afterwards (``contextlib.redirect_stderr``, pytest's capture) had the
    report written past the redirection."""

    AT_CLOSE = "sys.stderr"

    def __repr__(self) -> str:  # as help(open_lab) shows the default
        return "sys.stderr"


#: a report stream: a text stream, None (quiet) or stderr as it is at the close
ReportTo = TextIO | None | Literal[Stderr.AT_CLOSE]


class CommandNotSent(RuntimeError):
    """The runtime could not deliver a command (shutting down, actor failed, queue full)."""


def load_lab_config(lab: LabSource, host: PluginHost, output_dir: str | os.PathLike[str] | None
                    ) -> LabConfig:
    """A lab from a path, TOML text or a dict, validated by the one lab-file validator.

    A dict is written out as TOML first, so its problems carry lines of that text
    (``<dict>:LINE``) like any file's. A ``str`` that names an existing file is that
    file, whatever its name holds (``runs/a=1.toml``); any other ``str`` with a line
    break, an ``=`` or a leading ``[`` is TOML text; the rest are paths (a missing file
    is a ConfigError saying so). A path object is always a path. A path's leading ``~``
    is the user's home.
    """
    override = output_override(output_dir)
    if isinstance(lab, Mapping):
        return parse(tomlwrite.dumps(lab), tomlwrite.DICT_SOURCE, host, Path.cwd(), override)
    path = os.path.expanduser(lab)  # "~/lab.toml", as a lab file's own paths may say
    if isinstance(lab, str) and not os.path.isfile(path) and (  # isfile never raises for text
            "\n" in lab or "=" in lab or lab.lstrip().startswith("[")):
        return parse(lab, "<string>", host, Path.cwd(), override)
    return load(path, host, override)


def open_lab(lab: LabSource, *, output_dir: str | os.PathLike[str] | None = None,
             storage: bool = True, meta: Mapping[str, Any] | None = None,
             host: PluginHost | None = None, report: ReportTo = Stderr.AT_CLOSE) -> Lab:
    """Validate and start a lab; use the result as a context manager.

    ``lab`` is a path, TOML text or a dict. ``meta`` (operator, sample, notes ...)
    is stored with the session. ``report`` receives the shutdown report when the
    lab closes (by default ``sys.stderr`` as it is then; None: keep it quiet;
    :attr:`Lab.report` always has it). A lab never closed is closed as the
    interpreter exits, with a warning on stderr naming it.
    Raises :class:`~daqhub.config.ConfigError` listing every problem of the lab.
    """
    host = host or default_host()
    cfg = load_lab_config(lab, host, output_dir)
    if not cfg.instruments():
        raise ValueError(f"{cfg.path}: the lab has no enabled instruments")
    rt = DualRuntimeManager(cfg, host, storage=storage)
    records = SessionRecords(rt, meta)
    service = None
    serving = serve_config(cfg.serve, None, cfg.path)  # [daqhub.serve], as for daqhub run
    if serving is not None:
        from .flight_service import start_service

        service = start_service(rt, serving)
    latest = _Latest(rt)  # a tap: it sees the samples of the first polls, taken while starting
    try:
        rt.start()
        records.start()
        return Lab(rt, records, latest, report, service)
    except BaseException:
        latest.sub.close()
        stopped = rt.shutdown()
        if service is not None:
            service.stop_after(stopped)
        raise


class _AsyncOpen:
    """``async with open_lab_async(...) as lab`` (or ``lab = await open_lab_async(...)``)."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args, self.kwargs = args, kwargs
        self.lab: Lab | None = None
        self._lock = threading.Lock()
        self._abandoned = False

    async def _open(self) -> Lab:
        """The lab, opened on a thread; a caller cancelled meanwhile (a timeout, Ctrl-C, a
        failing sibling task) has it closed as soon as it is open. The open cannot be
        interrupted, and a lab nobody holds kept its ports, threads and files for good."""
        try:
            lab = await asyncio.to_thread(self._open_unless_abandoned)
        except asyncio.CancelledError:
            with self._lock:
                self._abandoned = True
                opened, self.lab = self.lab, None
            if opened is not None:  # it opened as the caller gave up: close it off the loop
                threading.Thread(target=opened.close, name="daqhub-abandoned-lab").start()
            raise
        assert lab is not None
        return lab

    def _open_unless_abandoned(self) -> Lab | None:
        lab = open_lab(*self.args, **self.kwargs)
        with self._lock:
            if not self._abandoned:
                self.lab = lab
                return lab
        lab.close()
        return None

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> Lab:
        return await self._open()

    async def __aexit__(self, *exc: object) -> None:
        if self.lab is not None:
            await self.lab.aclose()


def open_lab_async(lab: LabSource, **kwargs: Any) -> _AsyncOpen:
    """The asyncio twin of :func:`open_lab`: starting and stopping run off the event loop."""
    return _AsyncOpen((lab,), kwargs)


class Instrument:
    """One instrument of a running lab, whatever its flavor; its commands are attributes."""

    def __init__(self, lab: Lab, instrument_id: str) -> None:
        rt = lab.rt
        #: the running lab this instrument belongs to
        self.lab = lab
        self.id = instrument_id
        self.flavor = rt.health_of(instrument_id).flavor
        self.itype = rt.types[instrument_id]
        self.type = self.itype.name
        self.capabilities = tuple(self.itype.capabilities)
        #: channel name -> declaration (unit, dtype, shape), as the lab declares them
        self.specs = {c.name: c for (i, _), c in rt.channels.items() if i == instrument_id}
        self._commands = command_names(self.itype)
        self._cls = driver_class(self.itype)

    def __repr__(self) -> str:
        return f"<daqhub instrument {self.id} [{self.type}, {self.flavor}]>"

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *(self._commands or [])})

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._commands is not None and name not in self._commands:
            near = difflib.get_close_matches(name, self._commands, n=2)
            hint = f" (did you mean {' or '.join(near)}?)" if near else ""
            raise AttributeError(f"{self.id} ({self.type}) has no command {name!r}{hint}; "
                                 f"its commands: {', '.join(self._commands)}")
        return functools.partial(self.call, name)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``method`` on the instrument: the result, or an awaitable inside an event loop."""
        fut = self.send(method, *args, **kwargs)
        limit = self.wait_limit(method, args, kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.result(fut, method, limit)
        return self._await(fut, method, limit)

    def send(self, method: str, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Queue ``method`` without waiting (see :meth:`result`). The runtime checks its
        arguments first, as a routine's are (``commands.ArgumentsRefused``, a ValueError):
        ``set_output("off")`` was sent as ``OUTP 1`` (a string is true), and a wrong kind of
        value came back as a bare TypeError from deep in a driver."""
        try:
            return self.lab.rt.submit(self.id, method, *args, **kwargs)
        except (CommandRejected, ActorFailed, MailboxFull, TimeoutError) as exc:
            raise CommandNotSent(str(exc)) from None

    def result(self, fut: concurrent.futures.Future[Any], method: str, limit: float) -> Any:
        """Wait for a sent command's result (at most ``limit`` s), in the one error vocabulary."""
        try:
            value = result_within(fut, limit)
        except NoResult:
            fut.cancel()
            raise self._timeout(method, limit) from None
        except (CommandRejected, ActorFailed) as exc:
            raise CommandNotSent(str(exc)) from None
        self.lab.rt.command_done(self.id, method)
        return value

    async def _await(self, fut: concurrent.futures.Future[Any], method: str, limit: float
                     ) -> Any:
        try:
            value = await aresult_within(fut, limit)
        except NoResult:
            raise self._timeout(method, limit) from None
        except (CommandRejected, ActorFailed) as exc:
            raise CommandNotSent(str(exc)) from None
        await asyncio.to_thread(self.lab.rt.command_done, self.id, method)
        return value

    def _timeout(self, method: str, limit: float) -> TimeoutError:
        return TimeoutError(f"{self.id}.{method}: no result within {limit:g} s "
                            f"({self.lab.rt.waits_behind(self.id)})")

    def wait_limit(self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> float:
        """How long to wait (see :mod:`daqhub.command_limits`)."""
        return wait_limit(self._cls, method, args, kwargs)

    def latest(self, wait: float = 0.0) -> dict[str, dict[str, Any]]:
        """The last sample of each channel seen on the stream (see :meth:`Lab.latest`)."""
        return self.lab.latest(self.id, wait)

    def settings(self) -> Any:
        """The instrument's settings now, also stored as a snapshot (an awaitable inside an
        event loop). A failure raises as the ``settings`` command's does (the driver's own
        error, a TimeoutError): it used to come back as ``{"error": ...}``, settings
        named "error". The records keep that form, as a snapshot that could not be taken."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._settings_now()
        return asyncio.to_thread(self._settings_now)

    def _settings_now(self) -> Any:
        try:
            value = self.result(self.send("settings"), "settings",
                                self.wait_limit("settings", (), {}))
        except Exception as exc:
            self.lab.records.store_settings(self.id, "requested", failed_settings(exc))
            raise
        self.lab.records.store_settings(self.id, "requested", value)
        return value


class LiveData:
    """Batches of the unified stream as they come, optionally only some instruments'.

    Closed with its lab (or by :meth:`close`): iterating it then ends, once it has given
    what had arrived. The iteration used to go on for ever after the lab closed, and a
    script whose thread iterated it never exited."""

    def __init__(self, sub: Subscription[pa.RecordBatch], ids: set[str] | None) -> None:
        self.sub = sub
        self.ids = ids

    def get(self, timeout: float = 1.0) -> list[pa.RecordBatch]:
        """The batches of the chosen instruments that arrived, waiting up to ``timeout`` s for
        the first of them (other instruments' batches do not end the wait); [] if none, and
        at once once closed with nothing left."""
        try:
            return self._take(timeout)
        except SubscriptionClosed:
            return []

    def _take(self, timeout: float) -> list[pa.RecordBatch]:
        """:meth:`get`, raising SubscriptionClosed once closed with nothing left."""
        deadline = time.monotonic() + timeout
        while True:
            batches = self.sub.get_many(max(0.0, deadline - time.monotonic()))
            if self.ids is not None:
                batches = [b for b in batches if describe(b.schema)[0] in self.ids]
            if batches or time.monotonic() >= deadline:
                return batches

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batches = self._take(0.5)
            except SubscriptionClosed:
                return
            yield from batches

    def close(self) -> None:
        self.sub.close()

    def __enter__(self) -> LiveData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: how many batches ``Lab.latest``'s tap holds while its thread catches up: a bridge window
#: or a v4 poll of a wide instrument publishes a batch per channel at once (with 100, the
#: oldest channels of each window of a 200-channel instrument were dropped every time, and
#: ``latest(wait=...)`` timed out on them); not many more: a queue of a camera's frames,
#: were its thread to fall behind, would hold that many images
LATEST_BATCHES = 1_000


class _Latest:
    """Keeps the last sample per channel from a lossy subscription, on its own thread.

    Made before the runtime starts, as one of its taps (they see the unified stream from its
    first batch): subscribed after ``open_lab`` had started the runtime and taken the settings
    snapshot, it missed a channel that reports only in its first poll, and
    ``latest(wait=...)`` timed out on a sample that was stored.
    """

    def __init__(self, rt: DualRuntimeManager) -> None:
        self.sub: Subscription[pa.RecordBatch] = Subscription("lab-latest", lossless=False,
                                                              capacity=LATEST_BATCHES)
        rt.taps.append(self.sub)
        self.values: dict[str, dict[str, dict[str, Any]]] = {}
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._main, name="daqhub-lab-latest", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        while True:
            try:
                batches = self.sub.get_many(0.5)
            except SubscriptionClosed:
                return
            for b in batches:
                if b.num_rows == 0:
                    continue
                iid, spec = describe(b.schema)
                values = column_values(b.slice(b.num_rows - 1), spec)
                self.values.setdefault(iid, {})[spec.name] = {
                    "value": values[0], "unit": spec.unit,
                    "timestamp_ns": b.column("timestamp_ns")[b.num_rows - 1].as_py(),
                    "source": b.column("source")[b.num_rows - 1].as_py()}
            if batches:
                with self.changed:
                    self.changed.notify_all()


class Lab:
    """A running lab; closing it (or leaving its ``with`` block) shuts everything down."""

    def __init__(self, rt: DualRuntimeManager, records: SessionRecords, latest: _Latest,
                 report_to: ReportTo = None, service: FlightService | None = None
                 ) -> None:
        self.rt = rt
        self.records = records
        #: the live data service when the lab file has ``[daqhub.serve]`` (its ``url``)
        self.service = service
        self.report_to = report_to
        self.report: ShutdownReport | None = None
        self.instruments: dict[str, Instrument] = {
            iid: Instrument(self, iid) for iid in rt.instrument_ids()}
        #: the stop flag of each scan, grid or measure running now (see :meth:`run_stop`)
        self.run_stops: set[threading.Event] = set()
        #: movers a scan, grid or measure is moving -> its run id (see daqhub.scan.claimed)
        self.movers_held: dict[str, str] = {}
        self.plan_lock = threading.Lock()
        #: set once close() begins: scans refuse to start, the report is printed once
        self.closing = False
        self._close_lock = threading.Lock()
        self._latest = latest
        #: the live data handed out (:meth:`subscribe`), closed with the lab
        self.live: weakref.WeakSet[LiveData] = weakref.WeakSet()
        _close_at_exit(self)

    @property
    def session_id(self) -> str:
        return self.rt.session_id

    @property
    def meta(self) -> dict[str, Any]:
        return self.records.meta

    def output_dirs(self) -> dict[str, Path]:
        """Each flavor's session directory (empty when storage is off)."""
        return self.rt.output_dirs()

    def __getitem__(self, instrument_id: str) -> Instrument:
        try:
            return self.instruments[instrument_id]
        except KeyError:
            near = difflib.get_close_matches(instrument_id, list(self.instruments), n=2)
            hint = f"did you mean {' or '.join(map(repr, near))}? " if near else ""
            raise KeyError(f"no instrument {instrument_id!r} in this lab; {hint}"
                           f"it has: {', '.join(self.instruments)}") from None

    def __contains__(self, instrument_id: object) -> bool:
        return instrument_id in self.instruments

    def latest(self, instrument_id: str, wait: float = 0.0) -> dict[str, dict[str, Any]]:
        """Last sample per channel: ``{channel: {value, unit, timestamp_ns, source}}``.

        A channel that has not produced a sample yet is absent, unless ``wait`` (seconds)
        is given: then this waits until every channel of the instrument has one (right
        after the lab opened, the first poll may not have come yet), and a channel still
        without one when it runs out is a TimeoutError naming it and the instrument's state.
        """
        self[instrument_id]  # an unknown id is a KeyError, not an empty dict
        channels = {name for iid, name in self.rt.channels if iid == instrument_id}
        latest = self._latest

        def have() -> bool:
            return channels <= latest.values.get(instrument_id, {}).keys()
        if wait > 0 and not have():
            with latest.changed:
                if not latest.changed.wait_for(have, wait):
                    missing = sorted(channels - latest.values.get(instrument_id, {}).keys())
                    health = self.rt.health_of(instrument_id)
                    state = health.state if health is not None else "?"
                    raise TimeoutError(f"{instrument_id}: no sample of {', '.join(missing)} "
                                       f"within {wait:g} s (the instrument is {state})")
        return dict(latest.values.get(instrument_id, {}))

    def health(self) -> dict[str, Any]:
        """Instruments' states, queues, resources, routines, budget and alarms."""
        return self.rt.health()

    def subscribe(self, instruments: Sequence[str] | None = None, *, capacity: int = 1000,
                  lossless: bool = False) -> LiveData:
        """Live data: a lossy subscription drops the oldest batches when the reader lags."""
        ids = None
        if instruments is not None:
            ids = {self[i].id for i in instruments}
        name = f"lab-subscriber-{time.monotonic_ns()}"
        live = LiveData(self.rt.subscribe(name, lossless=lossless, capacity=capacity), ids)
        with self.plan_lock:  # (close() closes what it finds here under this lock)
            self.live.add(live)
            if self.closing:  # came too late to be found: nothing more arrives
                live.close()
        return live

    # --- recorded points (the engine is daqhub.scan) ---------------------------------

    def scan(self, movers: str | Mapping[str, Sequence[float]], values: Sequence[float] = (),
             *, read: Sequence[str] = (), settle: float = 0.0, repeat: int = 1,
             move_timeout: float = 60.0) -> pa.Table:
        """Step one mover over ``values`` (or several, given as ``{id: values}``, together).

        At each point: move, wait until the move is done, settle, then take a fresh
        reading of each ``read`` entry (an instrument id: all its channels; or
        ``"id.channel"``), ``repeat`` times. Returns the points table (see
        :mod:`daqhub.scan` for its columns); it is stored in the session too.
        """
        from .scan import plan_scan, run_plan

        return run_plan(self, plan_scan(self, movers, values, read, settle, repeat, "scan",
                                        move_timeout))

    def grid(self, axes: Mapping[str, Sequence[float]], *, read: Sequence[str] = (),
             settle: float = 0.0, repeat: int = 1, move_timeout: float = 60.0) -> pa.Table:
        """Every combination of the movers' values; the last mover varies fastest."""
        from .scan import plan_grid, run_plan

        return run_plan(self, plan_grid(self, axes, read, settle, repeat, move_timeout))

    def measure(self, read: Sequence[str], *, repeat: int = 1, interval: float = 0.0
                ) -> pa.Table:
        """Fresh readings without moving anything: ``repeat`` rows, ``interval`` s apart."""
        from .scan import plan_scan, run_plan

        return run_plan(self, plan_scan(self, {}, (), read, interval, repeat, "measure", 0.0))

    def stop(self) -> None:
        """Stop every scan, grid and measure running now, each after its current step (from
        another thread or a callback); a run started afterwards runs as usual."""
        with self.plan_lock:
            for flag in self.run_stops:
                flag.set()

    @contextlib.contextmanager
    def run_stop(self) -> Iterator[threading.Event]:
        """A stop flag of one run, set by every :meth:`stop` while the run is going.

        Each run has its own: with one flag for the lab, which each run cleared as it began,
        a measure started in another thread wiped a stop meant for a running scan."""
        flag = threading.Event()
        with self.plan_lock:
            self.run_stops.add(flag)
        try:
            yield flag
        finally:
            with self.plan_lock:
                self.run_stops.discard(flag)

    # --- closing ------------------------------------------------------------------------

    def close(self) -> ShutdownReport:
        """Shut down (bounded by the lab's ``shutdown_timeout``); the report, also on reuse.

        Ctrl-C during the shutdown is held back until it has finished, so the
        files are closed properly; it is raised afterwards.
        """
        budget = self.rt.phases.total_s + CLOSE_MARGIN_S
        if not self._close_lock.acquire(timeout=budget):
            raise TimeoutError(f"Lab.close: another thread's close of session "
                               f"{self.session_id} did not end within {budget:g} s")
        try:
            return self._close()
        finally:
            self._close_lock.release()

    def _close(self) -> ShutdownReport:
        if self.report is not None:  # closed already (maybe by another thread meanwhile)
            return self.report
        self.closing = True
        interrupted: list[int] = []
        previous = None
        problem = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, lambda s, f: interrupted.append(s))
        try:
            self.report = self.rt.shutdown()  # with the records' last flush, and its errors
            self._latest.sub.close()
            with self.plan_lock:
                live = list(self.live)
            for data in live:
                data.close()
            if self.service is not None:  # after the last records: recorders fetch them;
                # in what the shutdown left of its budget, its time in the report's "took"
                problem = self.service.stop_after(self.report)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            with _open_labs_lock:  # closed: nothing left for the exit to do (not before: a
                _open_labs.discard(self)  # close under way on a daemon thread was cut short)
        out = sys.stderr if self.report_to is Stderr.AT_CLOSE else self.report_to
        if problem:  # with no report stream too: the process's exit will wait on it
            problem += ("; this process's exit waits for that client to read again or its "
                        "connection to end")
            if out is None:
                warnings.warn(problem, RuntimeWarning, stacklevel=2)
            else:
                print(f"daqhub: {problem}", file=out)
        if out is not None:
            print_report(self.rt, self.report, out)
        if interrupted:
            raise KeyboardInterrupt
        return self.report

    async def aclose(self) -> ShutdownReport:
        return await asyncio.to_thread(self.close)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


#: Labs opened and not closed yet, closed at the interpreter's exit (:func:`_close_open_labs`).
#: Held strongly: a lab the script dropped unclosed still runs, its threads hold the runtime.
_open_labs: set[Lab] = set()
_open_labs_lock = threading.Lock()


#: a forked child (os.fork, not a worker process: those are fresh interpreters) has copies
#: of its parent's labs without their threads; closing them there ran out the budget and
#: printed a false NOT OK report of a session its parent still runs
os.register_at_fork(after_in_child=_open_labs.clear)


def _close_at_exit(lab: Lab) -> None:
    """Have ``lab`` closed at the interpreter's exit unless it is closed before.

    At the start of the exit, before Python waits for the script's non-daemon threads
    (``threading``'s exit hook, as ``concurrent.futures`` uses): a thread iterating the
    lab's live data ends only when the lab closes, and an ``atexit`` function runs only
    after every such thread has ended, so the exit waited for ever. That also comes before
    every ``atexit`` function, h5py's among them."""
    global _exit_hook_registered
    with _open_labs_lock:
        _open_labs.add(lab)
        register, _exit_hook_registered = not _exit_hook_registered, True
    if register:
        threading._register_atexit(_close_open_labs)  # type: ignore[attr-defined]


_exit_hook_registered = False


def _close_open_labs() -> None:
    """Close every lab still open as the interpreter exits, with its report and a warning.

    A script that never closed its lab (no ``with`` block, no ``close()``) exited 0 with no
    report, and its daemon threads stopped where they were: the last seconds of data not
    written, files not closed cleanly, lock files left behind. Each close is bounded by the
    lab's ``shutdown_timeout`` (one after the other); one another thread is closing is
    waited for, not cut short."""
    with _open_labs_lock:
        labs = list(_open_labs)
    for lab in labs:
        print(f"daqhub: session {lab.session_id} was still "
              + ("closing as the script ended; waiting for its close" if lab.closing else
                 "open as the script ended; closing it now (open it in a `with` block, or "
                 "call close())"), file=sys.stderr, flush=True)
        try:
            lab.close()
        except (Exception, KeyboardInterrupt) as exc:  # the other labs are closed all the same
            print(f"daqhub: closing session {lab.session_id} at exit: {type(exc).__name__}: "
                  f"{exc}", file=sys.stderr, flush=True)
