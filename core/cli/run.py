"""``daqhub run``: validate a lab, run it with a live view, shut down cleanly, report.

Signals: the first Ctrl-C (SIGINT) or SIGTERM starts the phased shutdown; a
second one during shutdown forces the process out at once (HDF5 and Arrow
files stay readable up to their last flush). The same signal again within
``ECHO_S`` is the first one delivered twice, not a second: GNU ``timeout -s INT``
signals the process and then its process group, and half the time daqhub saw
both and forced its way out of a run it was stopping cleanly. The handler is in place from the
start of ``run()`` to its end, so an interrupt at any moment ends in an exit
code, never a traceback.

Exit codes: see ``RUN_EXIT_CODES`` in :mod:`daqhub.cli` (``daqhub run --help``).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from ..config import ConfigError, LabConfig, load, output_override, parse, runnable_problems
from ..host import PluginHost
from ..interrupt import finished
from ..records import SessionRecords, parse_meta
from ..runtime.dual import DualRuntimeManager, StartError
from ..runtime.report import print_report
from ..serve_config import ServeConfigError, serve_config
from ..web.runweb import RunDashboard, WebError

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_FORCED = 0, 1, 2, 130


def demo_lab_text() -> str:
    return (resources.files("daqhub") / "demo_lab.toml").read_text()


def load_lab(path: str | None, host: PluginHost, output_dir: str | None) -> LabConfig:
    """The lab file, or the built-in demo lab; ``output_dir`` overrides the file's."""
    override = output_override(output_dir)
    if path is None:
        return parse(demo_lab_text(), "<demo lab>", host, Path.cwd(), override)
    return load(path, host, override)


class LiveView:
    """The rich table while running, or plain periodic lines (no TTY, or --plain)."""

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

            self._live = Live(self._table(), console=Console(file=self.out),
                              refresh_per_second=4, transient=False)
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
        """Abbreviated to fit 80 columns; ``daqhub run --help`` explains every column."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        h = self.rt.health()
        of = f" of {self.duration_s:.0f} s" if self.duration_s else ""
        t = Table(title=f"daqhub - session {self.rt.session_id or '(no storage)'} - "
                        f"{elapsed:.0f} s{of}", expand=False, box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
        widths = {"fl": 2, "state": 7, "polls/s": 4, "samples": 6, "err": 3, "rs/rc": 5,
                  "last value": 9, "type": 8}
        for col in ("instrument", "fl", "type", "state", "polls/s", "last value", "samples",
                    "err", "rs/rc"):
            # the type column takes what the terminal's width leaves (rich shrinks it last)
            t.add_column(col, no_wrap=True, overflow="ellipsis", min_width=widths.get(col),
                         max_width=12 if col == "instrument" else None,
                         justify="right" if col in ("polls/s", "samples", "err", "rs/rc")
                         else "left")
        styles = {"running": "green", "failed": "bold red", "reconnecting": "yellow",
                  "restarting": "yellow", "error": "yellow"}
        for i in h["instruments"]:
            t.add_row(i["id"], i["flavor"], i["type"],
                      Text(i["state"], style=styles.get(i["state"], "")), f"{i['rate_hz']:.1f}",
                      i["last_value"][:28], str(i["measurements"]), str(i["errors"]),
                      f"{i['restarts']}/{i['reconnects']}")
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
    in the middle of a write of the main thread (re-entering it raises)."""
    os.write(2, text.encode())


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


def run(args: Any, host: PluginHost, out: TextIO = sys.stdout) -> int:
    stop = threading.Event()
    interrupts = Interrupts()
    running = False

    def on_signal(signum: int, frame: Any) -> None:
        before = interrupts.count
        if interrupts.arrived(signum, time.monotonic()) == before:
            return
        if interrupts.count == 1 and running:
            _say(f"\n{signal.Signals(signum).name}: shutting down (again to force)\n")
            stop.set()
        elif interrupts.count == 1:
            _say(f"\n{signal.Signals(signum).name}: stopping before the run started\n")
            stop.set()
        else:
            _say("\nforced exit; files are readable up to their last flush\n")
            os._exit(EXIT_FORCED)

    def mark_running() -> None:
        nonlocal running
        running = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = _run(args, host, out, stop, mark_running)
        finished(code)  # the report is out: a Ctrl-C from here on keeps this code
        return code
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run(args: Any, host: PluginHost, out: TextIO, stop: threading.Event,
         mark_running: Callable[[], None]) -> int:
    try:
        lab = load_lab(args.lab, host, args.output_dir)
    except ConfigError as exc:
        print(f"{args.lab or '<demo lab>'}: {len(exc.problems)} problem(s); not started",
              file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return EXIT_USAGE
    for problem in runnable_problems(lab):
        print(problem, file=sys.stderr)
        return EXIT_USAGE
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
    records = SessionRecords(rt, meta)
    try:  # the live data service (--serve, [daqhub.serve]) listens before anything runs
        serving = serve_config(lab.serve, getattr(args, "serve", None), lab.path)
        if serving is not None:
            from ..flight_service import start_service

            service = start_service(rt, serving)
    except ServeConfigError as exc:
        print(f"daqhub: cannot serve live data: {exc}; not started", file=sys.stderr)
        return EXIT_USAGE
    mark_running()
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
            while not stop.wait(min(args.interval if plain else 0.25,
                                    args.duration - (time.monotonic() - t0) if args.duration
                                    else math.inf)):
                elapsed = time.monotonic() - t0
                if args.duration and elapsed >= args.duration:
                    break
                view.update(elapsed)
            view.update(time.monotonic() - t0)
        print("daqhub: shutting down ...", file=out, flush=True)
        report = rt.shutdown()
    finally:
        report = rt.shutdown()
        if dashboard is not None:
            dashboard.stop()
        if serving is not None and not service.stop():
            print("daqhub: the data service did not stop within 5 s (a client stopped "
                  "reading)", file=sys.stderr)
    if plain:
        view.print_state_changes()
    print_report(rt, report, out)
    return EXIT_OK if report.ok else EXIT_FAIL
