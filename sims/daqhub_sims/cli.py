"""Command line: serve a simulated device on a pseudo-terminal and/or a TCP port.

``python -m daqhub_sims serve elliptec --devices 0:ELL14,1:ELL9 --pty --tcp 7000``
prints one line per transport on stdout, the path or URL a client opens (``/dev/pts/N``,
``socket://127.0.0.1:7000``), then serves until SIGINT or SIGTERM. Human-oriented messages go
to stderr, so ``head -1`` of stdout is always an openable address.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from daqhub_sims import registry
from daqhub_sims.bridge import Bridge
from daqhub_sims.endpoint import Endpoint
from daqhub_sims.pty_server import PtyServer
from daqhub_sims.tcp_server import TcpServer

#: How often the serving loop checks that its server threads are still alive.
_HEALTH_CHECK_S = 0.5


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m daqhub_sims serve",
        description="Serve a simulated serial device until Ctrl-C (or SIGTERM).",
    )
    parser.add_argument("model", help=f"device model: {', '.join(registry.models())}")
    parser.add_argument("--devices", help="Elliptec bus layout, e.g. 0:ELL14,1:ELL9")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="device option (repeatable), e.g. -o speed_scale=10")
    parser.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal")
    parser.add_argument("--link", help="with --pty: keep a symlink here to the current pty")
    parser.add_argument("--tcp", type=int, metavar="PORT",
                        help="serve on TCP (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address (default 127.0.0.1)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--baud", action="store_true", help="emulate the device's wire speed")
    return parser


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
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--option expects KEY=VALUE, got {item!r}")
        options[key] = value
    if args.devices:
        options["devices"] = args.devices
    try:
        device = registry.create(args.model, options)
    except (ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    endpoint = Endpoint(device, f"sim://{args.model}")
    endpoint.faults.latency = args.latency
    endpoint.faults.baud_emulation = args.baud

    stop = stop or threading.Event()
    restore = _install_signal_handlers(stop)
    servers: list[Bridge] = []
    try:
        if args.pty:
            pty = PtyServer(endpoint, link=args.link)
            servers.append(pty)
            pty.start()
            print(pty.path, flush=True)
            if args.link:
                print(f"{args.link} -> {pty.path}", file=sys.stderr)
        if args.tcp is not None:
            tcp = TcpServer(endpoint, args.host, args.tcp)
            servers.append(tcp)
            tcp.start()
            print(tcp.url, flush=True)
        print(f"serving {args.model}; Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(_HEALTH_CHECK_S):
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m daqhub_sims {serve MODEL [options] | models}"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        print("  serve   serve a simulated device on a pty and/or TCP (serve -h for options)")
        print("  models  list the simulated device models")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        return serve(rest)
    if command == "models":
        for name in registry.models():
            print(name)
        return 0
    print(f"unknown command {command!r}\n{usage}", file=sys.stderr)
    return 2
