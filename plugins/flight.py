"""Built-in plugin: the data service's command-line clients, ``daqhub tail`` and ``daqhub record``.

Registered through the ``daqhub`` entry-point group like any third-party plugin (its
``daqhub_cli_commands`` hook), on top of :mod:`daqhub.flight_client`; the server side is
started by ``daqhub run --serve`` (:mod:`daqhub.flight_service`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from daqhub.firstparty import flight_missing
from daqhub.hookspecs import hookimpl
from daqhub.serve_config import DEFAULT_TOKEN_ENV
from daqhub.specs import CliCommand

EXIT_OK, EXIT_LINK, EXIT_USAGE = 0, 1, 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the run's data service, e.g. grpc://lab-pc:8815 "
                                    "(grpc+tls:// with TLS)")
    parser.add_argument("--token-env", default=DEFAULT_TOKEN_ENV, metavar="VAR",
                        help=f"environment variable holding the token (default "
                             f"{DEFAULT_TOKEN_ENV})")
    parser.add_argument("--tls-root-certs", metavar="PEM",
                        help="certificate(s) to trust for grpc+tls:// (a self-signed server)")


def _connect(args: argparse.Namespace) -> Any:
    from daqhub.flight_client import connect

    return connect(args.url, token=os.environ.get(args.token_env) or "",
                   tls_root_certs=args.tls_root_certs)


def _flight(command: str) -> tuple[Any, Any] | None:
    """pyarrow and its Flight, loaded with the command that needs them (gRPC is not loaded
    with every command); None, said in one line, when this pyarrow has no Flight: the
    command's failure read as a traceback blamed on the plugin."""
    import pyarrow as pa

    try:
        import pyarrow.flight as flight
    except ImportError as exc:
        if (why := flight_missing(exc)) is None:
            raise
        print(f"daqhub {command}: {why}", file=sys.stderr)
        return None
    return pa, flight


def _failure(exc: BaseException) -> str:
    from daqhub.flight_client import clear_message

    return clear_message(exc)


def line_of(row: Any) -> str:
    """One printed line per sample: time, instrument/channel, value, metadata."""
    from daqhub.runtime.health import describe_value

    t = datetime.fromtimestamp(row.timestamp_ns / 1e9, UTC).strftime("%H:%M:%S.%f")[:-3]
    meta = f"  {row.metadata}" if row.metadata else ""
    return f"{t}  {row.instrument_id}/{row.channel}  {describe_value(row.data)}{meta}"


def tail_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="daqhub tail", description="Print a running lab's live values (from "
        "'daqhub run --serve'). Ends when the run stops (exit 0) or the link breaks (exit 1).")
    _common(parser)
    parser.add_argument("pattern", nargs="?", default="*",
                        help="INSTRUMENT/CHANNEL pattern, e.g. 'stage/*' (default: all)")
    args = parser.parse_args(argv)
    if (loaded := _flight("tail")) is None:
        return EXIT_USAGE
    pa, flight = loaded

    from daqhub.flight_client import LinkLostError
    from daqhub.plugins.converters import batch_to_rows

    try:
        conn = _connect(args)
        live = conn.subscribe(args.pattern)
    except (LookupError, flight.FlightError, pa.ArrowException, OSError) as exc:
        print(f"daqhub tail: {_failure(exc)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, LookupError) else EXIT_LINK
    try:
        for item in live:
            if item.lost_before:
                print(f"... {item.key}: {item.lost_before} row(s) lost (too slow)", flush=True)
            for row in batch_to_rows(item.batch):
                print(line_of(row), flush=True)
    except LinkLostError as exc:
        print(f"daqhub tail: {exc}", file=sys.stderr)
        return EXIT_LINK
    finally:
        live.close()
    print("daqhub tail: the run has stopped", file=sys.stderr)
    return EXIT_OK


def record_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="daqhub record", description="Copy the session a lab is running (from 'daqhub "
        "run --serve') into OUTPUT_DIR while it runs, in the same files and layout; resumes "
        "after a broken link and reports rows it could not get. Exit 0: complete copy; 1: "
        "gaps, the link never came back, or a session that ended while the link was down "
        "whose files the service no longer offers; 2: bad arguments or storage; 130: "
        "stopped (Ctrl-C, SIGTERM) before the session ended: what was copied stays, closed "
        "and readable, and the copy is reported incomplete.")
    _common(parser)
    parser.add_argument("--output-dir", required=True, metavar="DIR",
                        help="where the copy's v2/ and v4/ session directories go")
    parser.add_argument("--give-up", type=float, default=60.0, metavar="S",
                        help="stop when the service stays unreachable this long (default 60)")
    args = parser.parse_args(argv)
    if (loaded := _flight("record")) is None:
        return EXIT_USAGE
    pa, flight = loaded

    from daqhub.flight_record import EXIT_USAGE as RECORD_USAGE
    from daqhub.flight_record import Recorder, report
    from daqhub.host import PluginHost
    from daqhub.storage import StorageError

    host = PluginHost()
    host.load_entry_points()
    stop = threading.Event()
    old = signal.signal(signal.SIGINT, lambda *_: stop.set())
    old_term = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # the stop is the recorder's to see (its waits are bounded): pyarrow's own handling takes
    # a signal that comes during one of its calls on this thread; it ended the copy with
    # "Operation cancelled", exit 1, no report, and now and then lost the signal (1 stop in
    # 10 in the tests): the recorder never stopped
    pa.enable_signal_handlers(False)
    try:
        recorder = Recorder(_connect(args), args.output_dir, host, sys.stdout,
                            give_up_s=args.give_up)
        result = recorder.run(stop)
    except StorageError as exc:
        print(f"daqhub record: {exc}", file=sys.stderr)
        return RECORD_USAGE
    except (flight.FlightError, pa.ArrowException) as exc:
        print(f"daqhub record: {_failure(exc)}", file=sys.stderr)
        return EXIT_LINK
    finally:
        pa.enable_signal_handlers(True)  # pyarrow's default
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)
    report(result, sys.stdout)
    return result.exit_code


@hookimpl
def daqhub_cli_commands() -> list[CliCommand]:
    return [CliCommand("tail", "print a running lab's live values (daqhub run --serve)",
                       tail_main),
            CliCommand("record", "copy a running lab's session over the network, as it runs",
                       record_main)]
