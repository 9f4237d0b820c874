"""The ``daqhub`` command.

Exit codes (documented in ``daqhub --help``):

* 0  success
* 1  the run or command failed (e.g. an instrument failed, a file could not be read)
* 2  bad usage or an invalid lab file (every problem is listed)
* 3  plugin problems in ``--strict`` mode
* 130 interrupted (Ctrl-C) before a clean shutdown could finish
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__
from .host import PluginError, PluginHost

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_PLUGINS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EPILOG = """\
exit codes: 0 success; 1 failure; 2 bad usage or invalid lab file; 3 plugin problems
with --strict; 130 interrupted.
environment: DAQHUB_TRACE_HOOKS=1 prints every plugin hook call to stderr.
"""


def _host(args: argparse.Namespace) -> PluginHost:
    host = PluginHost(strict=getattr(args, "strict", False))
    host.load_entry_points()
    return host


def cmd_plugins(args: argparse.Namespace) -> int:
    host = _host(args)
    info = host.describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"daqhub {info['daqhub']} - installed plugins", show_lines=False)
    for col in ("distribution", "version", "instrument types (flavors)", "storage", "converters"):
        table.add_column(col)
    for d in info["distributions"]:
        flavors: dict[str, list[str]] = {}
        caps: dict[str, list[str]] = {}
        for t in d["instrument_types"]:
            flavors.setdefault(t["name"], []).append(t["flavor"])
            caps[t["name"]] = t["capabilities"]
        types = "\n".join(f"{n} ({', '.join(sorted(f))})"
                          + (f" [{', '.join(caps[n])}]" if caps[n] else "")
                          for n, f in sorted(flavors.items())) or "-"
        table.add_row(d["name"], d["version"], types,
                      ", ".join(b["name"] for b in d["storage_backends"]) or "-",
                      str(len(d["converters"])) if d["converters"] else "-")
    console.print(table)
    if info["problems"]:
        console.print("[bold red]plugin problems[/] (these plugins, or parts of them, are not "
                      "used):")
        for p in info["problems"]:
            console.print(f"  - {p['distribution']} {p['version']} ({p['plugin']}): "
                          f"{p['error']}", markup=False, highlight=False)
        return EXIT_OK
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import ConfigError, load

    host = _host(args)
    try:
        lab = load(args.lab, host)
    except ConfigError as exc:
        print(f"{args.lab}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return EXIT_USAGE
    n = len(lab.instruments())
    print(f"{args.lab}: valid ({n} instrument{'s' if n != 1 else ''}: "
          + ", ".join(f"{i.id} [{i.type}, {i.flavor}]" for i in lab.instruments()) + ")")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from .config import lab_schema

    print(json.dumps(lab_schema(_host(args)), indent=2))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daqhub",
        description="Drive every instrument of a lab from one process through installed "
                    "driver plugins (v2 threads and v4 actors side by side).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"daqhub {__version__}")
    parser.add_argument("--strict", action="store_true",
                        help="treat any plugin problem as a failure (exit 3); for CI")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins, instrument types and backends",
                       description="List installed plugin distributions with their versions, "
                                   "instrument types (with flavors and capabilities), storage "
                                   "backends, converters, and plugins that failed to load.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("validate", help="check a lab file and list every problem",
                       description="Validate a lab TOML file against the installed plugins. "
                                   "Prints every problem as file:line: message (suggestion); "
                                   "exit 0 when valid, 2 otherwise.")
    p.add_argument("lab", help="lab file (TOML)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON schema of a lab file",
                       description="Print the JSON schema of a lab file, including the blocks "
                                   "that installed instrument types and storage backends add.")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except PluginError as exc:
        print(f"daqhub: plugin problem (strict mode): {exc}", file=sys.stderr)
        return EXIT_PLUGINS
    except KeyboardInterrupt:
        print("daqhub: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
