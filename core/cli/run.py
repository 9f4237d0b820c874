"""``daqhub run``: validate a lab, run it with a live view, shut down cleanly, report.

Signals: the first Ctrl-C (SIGINT), SIGTERM or SIGHUP (the terminal was closed, an SSH
session lost) starts the phased shutdown; a second one during shutdown forces the process
out at once (HDF5 and Arrow files stay readable up to their last flush). The same signal
again within ``ECHO_S`` is the first one delivered twice, not a second: GNU ``timeout -s INT``
signals the process and then its process group, and half the time daqhub saw
both and forced its way out of a run it was stopping cleanly. The handler is in place from the
start of ``run()`` to its end, so an interrupt at any moment ends in an exit
code, never a traceback. Before the run has started, the first signal while the main thread
waits in plugin code (a storage backend's ``open()`` on a share that does not answer, a hook
that does not return) ends that wait at once, naming what it was (exit 130): one SIGINT
was acknowledged, then ignored for as long as the plugin took, for ever if it hung.

Exit codes: see ``RUN_EXIT_CODES`` in :mod:`daqhub.cli` (``daqhub run --help``).

A closed output (``daqhub run | head``) does not end the run: the acquisition is the point
of the command, and a reader that has seen enough lines says nothing about the data. From
the first broken pipe on, stdout is written no more (:class:`ClosableOutput`), stderr says
so once with where the files are, and the report goes to stderr; the exit code is the
run's, as without the pipe. A closed terminal is the same (its writes fail with EIO after
the SIGHUP): the shutdown runs to its end with nobody to read it, files and budget.json
closed as after Ctrl-C.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TextIO, cast

from .. import firstparty
from .. import host as host_module
from ..config import ConfigError, LabConfig, load, output_override, parse, runnable_problems
from ..host import PluginHost, current_call
from ..interrupt import finished
from ..records import SessionRecords, parse_meta
from ..runtime.dual import DualRuntimeManager, StartError
from ..runtime.report import print_report
from ..serve_config import ServeConfigError, serve_config
from ..web.runweb import RunDashboard, WebError
from . import discard

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_FORCED = 0, 1, 2, 130


def demo_lab_text() -> str:
    return (resources.files("daqhub") / "demo_lab.toml").read_text()


def load_lab(path: str | None, host: PluginHost, output_dir: str | None,
             serve: str | None = None, web: str | None = None) -> LabConfig:
    """The lab file, or the built-in demo lab; ``output_dir`` overrides the file's, and
    ``serve`` (``--serve``) and ``web`` (``--web``) its service addresses, so the file's are
    not judged: run does not use them."""
    override = output_override(output_dir)
    overridden = {key for key, given in ((("serve", "address"), serve), (("web", "listen"), web))
                  if given is not None}
    if path is None:
        return parse(demo_lab_text(), "<demo lab>", host, Path.cwd(), override,
                     overridden=overridden)
    return load(path, host, override, overridden=overridden)


#: the live table's columns, left to right
COLUMNS = ("instrument", "fl", "type", "state", "polls/s", "last value", "samples", "err",
           "rs/rc")
#: what a narrow terminal gives up, first to last, until the table fits: a column left out
#: whole, or shortened (a type to :data:`TYPE_MIN` with an ellipsis at its end, the ids from
#: their middle, never so far that two read alike). Instrument, state and last value stay.
GIVE_UP = (("drop", "fl"), ("shorten", "type"), ("drop", "type"), ("drop", "rs/rc"),
           ("shorten", "instrument"), ("drop", "polls/s"), ("drop", "samples"),
           ("drop", "err"))
#: a terminal narrower than this gets plain status lines (as --plain), not the table
MIN_TABLE_WIDTH = 40
#: the narrowest a shortened type is
TYPE_MIN = 8
#: what a column costs besides its cells: a space of padding and one of border
COLUMN_GAP = 2


def shorten(text: str, width: int) -> str:
    """``text`` in ``width`` characters, cut from the middle: ids tend to differ at their
    end (``powermeter_north``, ``powermeter_south``), so the end stays whole."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def distinct_width(texts: list[str], least: int) -> int:
    """The narrowest width from ``least`` on at which :func:`shorten` keeps ``texts`` apart."""
    longest = max(map(len, texts), default=0)
    for width in range(least, longest):
        if len({shorten(t, width) for t in texts}) == len(set(texts)):
            return width
    return max(longest, least)


def fit_columns(cells: dict[str, list[str]], width: int) -> dict[str, int]:
    """The columns of ``cells`` (column -> its cells, in :data:`COLUMNS` order) shown in
    ``width`` characters, and the width of each.

    The table gives up what :data:`GIVE_UP` lists, in its order, until it fits; what is
    left then widens the shortened ids, then the types. Every other column is as wide as
    its widest cell or header: a value and its unit are never cut. (In a terminal too
    narrow even for instrument, state and last value, rich folds the values.)
    """
    natural = {c: max([len(c), *map(len, texts)]) for c, texts in cells.items()}
    least = {"instrument": distinct_width(cells["instrument"], len("instrument")),
             "type": min(natural["type"], TYPE_MIN)}
    widths = dict(natural)
    for how, column in GIVE_UP:
        if sum(w + COLUMN_GAP for w in widths.values()) <= width:
            break
        if how == "drop":
            del widths[column]
        else:
            widths[column] = least[column]
    spare = width - sum(w + COLUMN_GAP for w in widths.values())
    for column in ("instrument", "type"):
        if column in widths:
            grow = max(0, min(spare, natural[column] - widths[column]))
            widths[column] += grow
            spare -= grow
    return widths


class LiveView:
    """The rich table while running, or plain periodic lines (no TTY, --plain, or a terminal
    narrower than :data:`MIN_TABLE_WIDTH`)."""

    def __init__(self, rt: DualRuntimeManager, plain: bool, out: TextIO,
                 interval_s: float, duration_s: float = 0.0) -> None:
        self.rt = rt
        self.plain = plain
        self.out = out
        self.interval_s = interval_s
        self.duration_s = duration_s
        self.elapsed = 0.0  # of the last update: the final frame shows it, not 0
        self._live: Any = None

    def __enter__(self) -> LiveView:
        if not self.plain:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.out)
            if console.width < MIN_TABLE_WIDTH:
                self.plain = True
                print(f"daqhub: the terminal is {console.width} columns wide and the live "
                      f"table needs {MIN_TABLE_WIDTH}: plain status lines every "
                      f"{self.interval_s:g} s instead", file=self.out, flush=True)
                return self
            self._live = Live(console=console, refresh_per_second=4, transient=False)
            self._live.update(self._table())
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table(self.elapsed))
            self._live.__exit__(None, None, None)

    def update(self, elapsed: float) -> None:
        self.elapsed = elapsed
        if self._live is not None:
            self._live.update(self._table(elapsed))
        else:
            self.print_state_changes()
            h = self.rt.health()
            parts = [f"{i['id']}={i['state']}:{i['measurements']}"
                     + (f"!{i['errors']}" if i["errors"] else "") for i in h["instruments"]]
            cpu = h.get("budget", {}).get("cpu_percent", {})
            print(f"[{elapsed:6.1f}s] " + " ".join(parts)
                  + f" | bridge queue {h['queues'].get('bridge', {}).get('depth', 0)}"
                  + (f" | cpu {sum(cpu.values()):.0f}%" if cpu else "")
                  + (f" | alarms {len(h['alarms'])}" if h["alarms"] else ""),
                  file=self.out, flush=True)

    def print_state_changes(self) -> None:
        """Each instrument's change of state, with its reason, once."""
        changes = self.rt.state_changes
        while changes:
            c = changes.popleft()
            reason = f": {c['reason']}" if c["reason"] else ""
            print(f"{time.strftime('%H:%M:%S', time.localtime(c['time']))} {c['id']}: "
                  f"{c['old']} -> {c['new']}{reason}", file=self.out, flush=True)

    def _table(self, elapsed: float = 0.0) -> Any:
        """Fitted to the terminal's width (:func:`fit_columns`); ``daqhub run --help``
        explains every column."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        h = self.rt.health()
        of = f" of {self.duration_s:.0f} s" if self.duration_s else ""
        t = Table(title=f"daqhub - session {self.rt.session_id or '(no storage)'} - "
                        f"{elapsed:.0f} s{of}", expand=False, box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
        rows = [{"instrument": i["id"], "fl": i["flavor"], "type": i["type"],
                 "state": i["state"], "polls/s": f"{i['rate_hz']:.1f}",
                 "last value": i["last_value"][:28], "samples": str(i["measurements"]),
                 "err": str(i["errors"]), "rs/rc": f"{i['restarts']}/{i['reconnects']}"}
                for i in h["instruments"]]
        widths = fit_columns({c: [r[c] for r in rows] for c in COLUMNS},
                             self._live.console.width)
        for col, width in widths.items():
            t.add_column(col, width=width, no_wrap=col != "last value",
                         overflow="ellipsis" if col == "type" else "fold",
                         justify="right" if col in ("polls/s", "samples", "err", "rs/rc")
                         else "left")
        styles = {"running": "green", "failed": "bold red", "reconnecting": "yellow",
                  "restarting": "yellow", "error": "yellow"}
        for r in rows:
            t.add_row(*(Text(r[c], style=styles.get(r[c], "")) if c == "state" else
                        shorten(r[c], widths[c]) if c == "instrument" else r[c]
                        for c in widths))
        b = h.get("budget", {})
        cpu = ", ".join(f"{k} {v:.0f}%" for k, v in sorted(b.get("cpu_percent", {}).items()))
        queues = ", ".join(f"{k} {v['depth']}/{v['capacity']}" for k, v in h["queues"].items())
        lines = [Text(f"queues: {queues}"),
                 Text(f"cpu: {cpu or '-'}   memory: {b.get('rss_mb', 0):.0f} MB")]
        for r in h.get("routines", []):
            lines.append(Text(f"routine {r['instrument']}: {r['progress']}"
                              + (f" - {r['error']}" if r["error"] else "")))
        errs = [f"{i['id']}: {i['last_error']}" for i in h["instruments"] if i["last_error"]]
        for e in errs[-3:]:
            lines.append(Text(e[:150], style="yellow"))
        for a in h["alarms"][-3:]:
            lines.append(Text(f"alarm: {a['message']}", style="red"))
        return Group(t, *lines)


def _say(text: str) -> None:
    """Write to stderr from a signal handler: os.write, because a buffered stream may be
    in the middle of a write of the main thread (re-entering it raises). A stderr whose
    reader went away (``2>&1 | head``) takes nothing: the handler must not raise."""
    try:
        os.write(2, text.encode())
    except OSError:
        pass


#: a write's errors that say the reader went away: a pipe's reader closed it (EPIPE), a
#: terminal was closed (EIO on a hung-up tty)
READER_GONE = frozenset({errno.EPIPE, errno.EIO})


class ClosableOutput:
    """A stream whose reader may go away (``daqhub run | head``, a closed terminal). The
    first broken pipe (or hung-up terminal) calls ``on_close`` once (from the thread that
    wrote); from then on writes are dropped, so no print anywhere in the run (the view, a
    dashboard's line, the report) ends it."""

    def __init__(self, stream: TextIO, on_close: Callable[[], None] = lambda: None) -> None:
        self.stream = stream
        self.on_close = on_close
        self.closed_by_reader = False
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                self.stream.write(text)
            except OSError as exc:
                self._failed(exc)
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader:
            try:
                self.stream.flush()
            except OSError as exc:
                self._failed(exc)

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return self.stream.encoding

    def as_text_io(self) -> TextIO:
        """This, for what takes a TextIO (print, rich, the report): it writes and flushes
        as one."""
        return cast(TextIO, self)

    def _failed(self, exc: OSError) -> None:
        if exc.errno not in READER_GONE:
            raise exc
        self._reader_went_away()

    def _reader_went_away(self) -> None:
        with self._lock:
            if self.closed_by_reader:
                return
            self.closed_by_reader = True
        discard(self.stream)
        self.on_close()


#: what stops a run cleanly: Ctrl-C, a service manager's stop, a closed terminal
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: a signal repeated sooner than this is one signal delivered twice (no one presses Ctrl-C
#: twice within 50 ms; ``timeout`` sends its two copies microseconds apart)
ECHO_S = 0.05


class Interrupts:
    """How many times the user asked to stop, counting a signal delivered twice once."""

    def __init__(self) -> None:
        self.count = 0
        self._first = (0, 0.0)  # the first signal and when it came

    def arrived(self, signum: int, now: float) -> int:
        """The count after ``signum`` arrived at ``now`` (unchanged for an echo of the first)."""
        if self.count and signum == self._first[0] and now - self._first[1] < ECHO_S:
            return self.count
        self.count += 1
        if self.count == 1:
            self._first = (signum, now)
        return self.count


class StartInterrupted(KeyboardInterrupt):
    """The first stop signal, raised in the main thread while it waits in plugin code before
    the run has started: the start ends there (undoing what it started), and the
    :class:`~daqhub.host.PluginCall` it passes says which plugin code it ended. A
    ``KeyboardInterrupt``, so that code containing a plugin's errors lets it through."""


def in_plugin_code(frame: Any) -> bool:
    """Whether the main thread, interrupted at ``frame``, is in a plugin's call: inside a
    :class:`~daqhub.host.PluginCall`, and not in the host's own bookkeeping around it,
    where raising left the call recorded for good (the watcher then named a hook that had
    returned, and asked for the Ctrl-C that forces the exit)."""
    return current_call() is not None and (
        frame is None or frame.f_code.co_filename != host_module.__file__)


#: the moments of ``daqhub run`` its signals tell apart
PREPARING, STARTING, RUNNING = "preparing", "starting", "running"


def run(args: Any, host: PluginHost, out: TextIO | None = None) -> int:
    """``daqhub run``; ``out`` (default: ``sys.stdout`` as it is now, not as it was when this
    module was imported, a stream a test's capture may have closed since) takes the report."""
    out = sys.stdout if out is None else out
    stop = threading.Event()
    interrupts = Interrupts()
    phase = PREPARING

    def on_signal(signum: int, frame: Any) -> None:
        before = interrupts.count
        if interrupts.arrived(signum, time.monotonic()) == before:
            return
        name = signal.Signals(signum).name
        if interrupts.count == 1 and phase != RUNNING and in_plugin_code(frame):
            _say(f"\n{name}: stopping before the run started\n")
            stop.set()
            raise StartInterrupted  # out of the plugin code, which may never return
        if interrupts.count == 1 and phase != PREPARING:
            _say(f"\n{name}: shutting down (again to force)\n")
            stop.set()
        elif interrupts.count == 1:
            _say(f"\n{name}: stopping before the run started\n")
            stop.set()
        else:
            _say("\nforced exit; files are readable up to their last flush\n")
            os._exit(EXIT_FORCED)

    def mark(now: str) -> None:
        nonlocal phase
        phase = now

    # a signal ignored on purpose stays ignored: `nohup daqhub run` must outlive its terminal
    old = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS
           if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        try:
            code = _run(args, host, out, stop, mark)
        except StartInterrupted:  # said where, as it ended the plugin's call
            code = EXIT_FORCED
        finished(code)  # the report is out: a Ctrl-C from here on keeps this code
        return code
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run(args: Any, host: PluginHost, out: TextIO, stop: threading.Event,
         mark: Callable[[str], None]) -> int:
    try:
        lab = load_lab(args.lab, host, args.output_dir, getattr(args, "serve", None),
                       getattr(args, "web", None))
    except ConfigError as exc:
        print(f"{args.lab or '<demo lab>'}: {len(exc.problems)} problem(s); not started",
              file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return EXIT_USAGE
    for problem in runnable_problems(lab):
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    for failed in host.load_problems():  # a plugin of session hooks only: its absence said
        # nothing, the run exited 0, and the session's versions listed it as present
        print(f"daqhub: a plugin failed to load, the run goes on without it: {failed}",
              file=sys.stderr)
    try:
        meta = parse_meta(getattr(args, "meta", None) or [])
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        dashboard = RunDashboard.prepare(lab, getattr(args, "web", None))
    except WebError as exc:
        print(f"daqhub: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if stop.is_set():
        return EXIT_FORCED
    plain = args.plain or not out.isatty()
    rt = DualRuntimeManager(lab, host, storage=not args.no_storage)
    err = ClosableOutput(sys.stderr)
    closable = ClosableOutput(out, lambda: _output_closed(rt, args, err.as_text_io()))
    out = closable.as_text_io()
    records = SessionRecords(rt, meta)
    try:  # the live data service (--serve, [daqhub.serve]) listens before anything runs
        serving = serve_config(lab.serve, getattr(args, "serve", None), lab.path)
        if serving is not None:
            from ..flight_service import start_service

            service = start_service(rt, serving)
    except ServeConfigError as exc:
        print(f"daqhub: cannot serve live data: {exc}; not started", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:
        if (why := firstparty.flight_missing(exc)) is None:
            raise
        print(f"daqhub: cannot serve live data: {why}; not started", file=sys.stderr)
        return EXIT_USAGE
    mark(STARTING)
    try:
        print(f"daqhub: starting {len(lab.instruments())} instruments "
              f"({'demo lab' if args.lab is None else lab.path})", file=out, flush=True)
        try:
            rt.start()
        except StartError as exc:
            print("daqhub: could not start the lab:", file=sys.stderr)
            for iid, why in exc.causes.items():
                print(f"  {iid}: {why}", file=sys.stderr)
            return EXIT_FAIL
        except Exception as exc:
            print(f"daqhub: could not start the lab: {exc}", file=sys.stderr)
            return EXIT_FAIL
        except StartInterrupted:
            raise
        except BaseException as exc:  # plugin code's sys.exit() (it ended the run with 0,
            # having run nothing), or a KeyboardInterrupt no Ctrl-C raised (on_signal takes those)
            print(f"daqhub: could not start the lab: {type(exc).__name__}: {exc} raised"
                  f"{_raised_at(exc)}; plugin code must not end or interrupt daqhub",
                  file=sys.stderr)
            return EXIT_FAIL
        mark(RUNNING)
        for flavor, d in rt.output_dirs().items():
            print(f"  {flavor} data -> {d}", file=out, flush=True)
        records.start_in_background()  # it waits for every instrument: not in the view's way
        if dashboard is not None:
            dashboard.start(rt, out)
        if serving is not None:
            print(f"  live data -> {service.url}", file=out, flush=True)
        t0 = time.monotonic()
        with LiveView(rt, plain, out, args.interval, args.duration) as view:
            # --duration ends on time whatever --interval is; the last status prints once
            while not stop.wait(min(args.interval if view.plain else 0.25,
                                    args.duration - (time.monotonic() - t0) if args.duration
                                    else math.inf)):
                elapsed = time.monotonic() - t0
                if args.duration and elapsed >= args.duration:
                    break
                view.update(elapsed)
            view.update(time.monotonic() - t0)
        print("daqhub: shutting down ...", file=out, flush=True)
    finally:
        report = rt.shutdown()
        # in what the shutdown left of its budget; its time is in the report's "took"
        if serving is not None and (unstopped := service.stop_after(report)):
            print(f"daqhub: {unstopped}; daqhub ends without waiting for it",
                  file=err.as_text_io())
        if dashboard is not None and (unstopped := dashboard.stop_after(
                report, rt.phases.total_s)):
            print(f"daqhub: {unstopped}; daqhub ends without waiting for it",
                  file=err.as_text_io())
    if view.plain:
        view.print_state_changes()
    print_report(rt, report, err.as_text_io() if closable.closed_by_reader else out)
    return EXIT_OK if report.ok else EXIT_FAIL


def _raised_at(exc: BaseException) -> str:
    """`` at file:line``, where ``exc`` was raised (its traceback's last frame), if known."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _output_closed(rt: DualRuntimeManager, args: Any, err: TextIO) -> None:
    """Said once, on stderr, when stdout's reader goes away: that the run goes on, until
    when, and where its data are."""
    until = (f"its --duration of {args.duration:g} s is up (or Ctrl-C)" if args.duration
             else "Ctrl-C")
    # no directories yet before the lab has started: then the report names the files
    where = ("no session files (--no-storage); " if args.no_storage else
             "".join(f"{flavor} data -> {d}; " for flavor, d in rt.output_dirs().items()))
    print(f"daqhub: the output was closed (its reader went away); the run goes on without "
          f"it until {until}; {where}the report follows here", file=err, flush=True)
