"""Command line: serve a simulated device on a pseudo-terminal and/or a TCP port.

``python -m daqhub_sims serve elliptec --devices 0:ELL14,1:ELL9 --pty --tcp 7000``
prints one line per transport on stdout, the path or URL a client opens (``/dev/pts/N``,
``socket://127.0.0.1:7000``), then serves until SIGINT or SIGTERM. Human-oriented messages go
to stderr (each scheduled fault as it fires, too), so ``head -1`` of stdout is always an
openable address.

``python -m daqhub_sims models`` lists every model's ``sim://`` options with their defaults
(``--markdown``: the table ``docs/simulators.md`` carries).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from daqhub_sims import model_reference, registry
from daqhub_sims.bridge import Bridge
from daqhub_sims.endpoint import Endpoint
from daqhub_sims.fault_schedule import DEFAULT_GARBAGE, FaultPlan, FaultSchedule
from daqhub_sims.pty_server import PtyServer
from daqhub_sims.tcp_server import TcpServer, tcp_port

#: How often the serving loop checks that its server threads are still alive.
_HEALTH_CHECK_S = 0.5


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daqhub sim serve",
        description="Serve a simulated serial device until Ctrl-C (or SIGTERM). Prints the "
                    "address a client opens on stdout; `daqhub sim models` lists each "
                    "model's options (-o KEY=VALUE).",
        epilog="Faults let a lab rehearse failures without writing Python: e.g. "
               "`daqhub sim serve esp300 --tcp 7000 --latency 0.05 --garbage-every 10 "
               "--disconnect-every 60 --disconnect-for 5`. Each fault is logged on stderr "
               "when it fires; periods count from the start of serving.",
    )
    parser.add_argument("model", help=f"device model: {', '.join(registry.models())}")
    parser.add_argument("--devices", help="the layout of a model with a bus (elliptec), e.g. "
                                          "0:ELL14,1:ELL9; the same as -o devices=...")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="device option (repeatable), e.g. -o speed_scale=10")
    parser.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal")
    parser.add_argument("--link", help="with --pty: keep a symlink here to the current pty (a "
                                       "new path or an old symlink; removed at exit)")
    parser.add_argument("--tcp", type=tcp_port, metavar="PORT",
                        help="serve on TCP (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address (default 127.0.0.1)")
    parser.add_argument("--baud", action="store_true", help="emulate the device's wire speed")
    faults = parser.add_argument_group(
        "faults", "scheduled failures; each is off unless its period is given")
    faults.add_argument("--latency", type=float, default=0.0, metavar="S",
                        help="seconds added before every reply (default 0)")
    faults.add_argument("--garbage-every", type=float, metavar="S",
                        help="every S seconds, put garbage bytes on the line just before the "
                             "next reply (a noisy cable, a device's power-up babble)")
    faults.add_argument("--garbage", type=_escaped_bytes, default=DEFAULT_GARBAGE,
                        metavar="BYTES", help="the garbage, with Python escapes "
                        f"(default {_escaped_text(DEFAULT_GARBAGE)})")
    faults.add_argument("--truncate-every", type=float, metavar="S",
                        help="every S seconds, cut the next reply short: its terminator never "
                             "arrives, so the client's read times out")
    faults.add_argument("--truncate-to", type=int, default=2, metavar="N",
                        help="bytes of the cut reply that still arrive (default 2)")
    faults.add_argument("--disconnect-every", type=float, metavar="S",
                        help="every S seconds, pull the USB adapter: open handles fail and "
                             "clients must reopen (TCP clients are dropped)")
    faults.add_argument("--disconnect-for", type=float, default=1.0, metavar="S",
                        help="seconds the adapter stays pulled (default 1)")
    return parser


def _escaped_bytes(text: str) -> bytes:
    """``--garbage`` value: text with Python escapes, e.g. ``\\xff\\x00ERR``."""
    try:
        value = text.encode("latin-1").decode("unicode_escape").encode("latin-1")
    except (UnicodeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"not bytes with Python escapes: {exc}") from None
    if not value:
        raise argparse.ArgumentTypeError("garbage must be at least one byte")
    return value


def _escaped_text(data: bytes) -> str:
    return repr(data)[2:-1]


def serve(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    """Run the ``serve`` command with the arguments that follow ``serve``; the exit status.

    ``stop`` ends serving early, for callers that run this outside the main thread, where
    signal handlers cannot be installed.
    """
    parser = _serve_parser()
    args = parser.parse_args(argv)
    if not args.pty and args.tcp is None:
        parser.error("choose at least one transport: --pty and/or --tcp PORT")
    if args.link and not args.pty:
        parser.error("--link needs --pty")
    options: dict[str, str] = {}
    for item in [*args.option, *([f"devices={args.devices}"] if args.devices else [])]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--option expects KEY=VALUE, got {item!r}")
        if key in options:  # the last would win without a word
            parser.error(f"option {key!r} given twice")
        options[key] = value
    try:
        device = registry.create(args.model, options)
        plan = FaultPlan(
            garbage_every=args.garbage_every, garbage=args.garbage,
            truncate_every=args.truncate_every, truncate_to=args.truncate_to,
            disconnect_every=args.disconnect_every, disconnect_for=args.disconnect_for,
        )
        endpoint = Endpoint(device, f"sim://{args.model}")
        endpoint.faults.latency = args.latency
    except (ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    endpoint.faults.baud_emulation = args.baud

    stop = stop or threading.Event()
    restore = _install_signal_handlers(stop)
    servers: list[Bridge] = []
    try:
        if args.pty:
            pty = PtyServer(endpoint, link=args.link)
            servers.append(pty)
            try:
                pty.start()
            except ValueError as exc:  # a --link it must not replace
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(pty.path, flush=True)
            if args.link:
                print(f"{args.link} -> {pty.path}", file=sys.stderr)
        if args.tcp is not None:
            tcp = TcpServer(endpoint, args.host, args.tcp)
            servers.append(tcp)
            tcp.start()
            print(tcp.url, flush=True)
        print(f"serving {args.model}; Ctrl-C to stop", file=sys.stderr, flush=True)
        schedule = FaultSchedule(endpoint.faults, plan, time.monotonic())
        while not stop.wait(_next_wait(schedule)):
            for line in schedule.run_due(time.monotonic()):
                print(f"fault: {line}", file=sys.stderr, flush=True)
            for server in servers:
                if server.error is not None:
                    print(f"error: server thread died: {server.error!r}", file=sys.stderr)
                    return 1
        return 0
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            server.close()
        restore()


def _next_wait(schedule: FaultSchedule) -> float:
    """Seconds until the serve loop has something to do: a fault, or its health check."""
    due = schedule.due_in(time.monotonic())
    return _HEALTH_CHECK_S if due is None else min(due, _HEALTH_CHECK_S)


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM end serving cleanly; returns what puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def models(argv: Sequence[str] | None = None) -> int:
    """The ``models`` command: every model's ``sim://`` options with their defaults."""
    parser = argparse.ArgumentParser(
        prog="daqhub sim models",
        description="List the simulated models and the sim:// options each takes, with "
                    "defaults (sim://MODEL?OPTION=VALUE&...; -o OPTION=VALUE for serve).")
    parser.add_argument("model", nargs="*", help="only these models")
    parser.add_argument("--markdown", action="store_true",
                        help="print the generated section of docs/simulators.md instead")
    args = parser.parse_args(argv)
    try:
        for name in args.model:
            registry.model_factory(name)
        print(model_reference.markdown() if args.markdown else model_reference.text(args.model))
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: daqhub sim {serve MODEL [options] | models [MODEL...] [--markdown]}"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        print("  serve   serve a simulated device on a pty and/or TCP, optionally with "
              "scheduled faults (serve -h)")
        print("  models  list the simulated models and their sim:// options with defaults")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        return serve(rest)
    if command == "models":
        return models(rest)
    print(f"unknown command {command!r}\n{usage}", file=sys.stderr)
    return 2
