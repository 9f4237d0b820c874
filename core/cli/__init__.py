"""The ``daqhub`` command.

Exit codes (documented in ``daqhub --help``):

* 0  success
* 1  the run or command failed (e.g. an instrument failed, a file could not be read)
* 2  bad usage or an invalid lab file (every problem is listed)
* 3  plugin problems in ``--strict`` mode
* 130 interrupted (Ctrl-C) before a clean shutdown could finish
* 141 the reader of the output went away (``| head``); not ``daqhub run``, whose
  acquisition goes on to its end and reports on stderr (see :mod:`daqhub.cli.run`)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from .. import __version__, firstparty
from ..host import SLOW_IMPORT_S, PluginError, PluginHost, dist_key
from ..interrupt import interrupted
from .args import path_named, seconds

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_PLUGINS = 0, 1, 2, 3
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool whose reader went away
#: daqhub's own commands (build_parser's): a plugin may not take these names
BUILTIN_COMMANDS = ("plugins", "validate", "schema", "run", "view", "ports", "inspect",
                    "migrate", "new")

RUN_EXIT_CODES = (
    "Exit codes: 0 every enabled instrument connected, had samples stored (none refused) "
    "and stopped, and every routine completed or was stopped by the shutdown; 1 anything "
    "else (an instrument that never connected, failed, stored no data, had samples refused "
    "or had to be forced; a routine "
    "that failed; a lab that could not start; something leaked; samples or session records "
    "storage could not write; a worker process that died in the shutdown); 2 invalid lab "
    "file; "
    "130 interrupted before the run started, or forced by a second Ctrl-C. A closed output "
    "(| head) changes none of this: the run goes on to its end and reports on stderr.")

EPILOG = """\
exit codes: 0 success; 1 failure; 2 bad usage or invalid lab file; 3 plugin problems
with --strict; 130 interrupted; 141 the output pipe was closed (e.g. | head), except
for `daqhub run`: its run goes on to its end, says so on stderr and reports there.
For `daqhub run`, 0 means every enabled instrument connected, had samples stored and
stopped, and every routine completed or was stopped; anything else is 1 (details:
daqhub run --help).
environment: DAQHUB_TRACE_HOOKS=1 prints every plugin import and hook call to stderr.
installed plugins may add commands: `daqhub plugins` lists them.
"""

LIVE_VIEW_LEGEND = """\
live view columns:
  instrument  the id from the lab file      fl       flavor: v2 (thread) or v4 (actor)
  type        instrument type               state    running, error, reconnecting,
  polls/s     successful reads per second            restarting, failed, stopped
              (over the last 64 reads)      samples  values read, all channels together
  last value  the latest value and unit     err      errors so far (the last one below)
  rs/rc       restarts (v4 actor restarted after an error) / reconnects (port reopened)
  below: queues (depth/capacity), cpu per subsystem, memory, routines (step i of n, time
  left), last errors, alarms
plain lines (--plain or no terminal): [elapsed s] id=state:samples!errors ... | bridge
  queue depth | cpu total % | alarms count
"""


def _host(args: argparse.Namespace) -> PluginHost:
    """The host loaded by main(); in --strict mode any plugin problem so far is fatal."""
    host: PluginHost = args.host
    if args.strict:
        _strict(host)
    return host


def _strict(host: PluginHost) -> None:
    """--strict: every collecting step runs first (a hook's problems are known only once it
    has been called), so that the PluginError lists every plugin problem; later ones raise
    too."""
    host.instrument_types(), host.storage_backends(), host.converters()
    host.serial_url_packages(), host.cli_commands()
    host.strict = True
    if host.problems:
        raise PluginError(host.problems)


def cmd_plugins(args: argparse.Namespace) -> int:
    host = _host(args)
    if args.type:
        return _type_reference(host, args.type, args.json)
    info = host.describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"daqhub {info['daqhub']} - installed plugins", show_lines=False)
    for col in ("distribution", "version", "import", "instrument type", "flavors",
                "capabilities"):
        table.add_column(col, overflow="fold")
    extras: list[str] = []
    for d in info["distributions"]:
        took = f"{d['import_s'] * 1000:.0f} ms"
        if d["import_s"] > SLOW_IMPORT_S:
            extras.append(f"warning: importing {d['name']} takes {d['import_s']:.1f} s, which "
                          f"every daqhub command that loads plugins waits for")
        flavors: dict[str, list[str]] = {}
        caps: dict[str, list[str]] = {}
        for t in d["instrument_types"]:
            flavors.setdefault(t["name"], []).append(t["flavor"])
            caps[t["name"]] = t["capabilities"]
        rows = sorted(flavors.items()) or [("-", [])]
        for i, (name, fl) in enumerate(rows):
            table.add_row(d["name"] if i == 0 else "", d["version"] if i == 0 else "",
                          took if i == 0 else "", name, ", ".join(sorted(fl)),
                          ", ".join(caps.get(name, [])))
        if d["storage_backends"]:
            extras.append(f"storage backends from {d['name']}: "
                          + ", ".join(b["name"] for b in d["storage_backends"]))
        if d["converters"]:
            extras.append(f"converters from {d['name']}: "
                          + ", ".join(c["name"] for c in d["converters"]))
        for name in d["hooks"]:
            if name == "daqhub_cli_commands":
                extras.append(f"commands from {d['name']}: "
                              + ", ".join(host.cli_commands_of(d["name"])))
    console.print(table)
    for line in extras:
        console.print(line, markup=False, highlight=False)
    if info["problems"]:
        console.print("[bold red]plugin problems[/] (these plugins, or parts of them, are not "
                      "used):")
        for p in info["problems"]:
            console.print(f"  - {p['distribution']} {p['version']} ({p['plugin']}): "
                          f"{p['error']}", markup=False, highlight=False)
        return EXIT_OK
    return EXIT_OK


def _type_reference(host: PluginHost, name: str, as_json: bool) -> int:
    from ..typeref import markdown, reference

    try:
        ref = reference(host, name)
    except LookupError as exc:
        print(f"daqhub plugins: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(ref, indent=2) if as_json else markdown(ref))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from ..config import ConfigError, lab_pc_problems, load, runnable
    from .args import print_problems

    host = _host(args)
    try:
        lab = runnable(load(args.lab, host, offline=args.offline))
        if not args.offline and (missing := lab_pc_problems(lab, host)):
            raise ConfigError(missing)
    except ConfigError as exc:
        print_problems(f"{args.lab}: {len(exc.problems)} problem(s)", exc.problems)
        return EXIT_USAGE
    n = len(lab.instruments())
    print(f"{args.lab}: valid ({n} instrument{'s' if n != 1 else ''}: "
          + ", ".join(f"{i.id} [{i.type}, {i.flavor}]" for i in lab.instruments()) + ")")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from ..config import lab_schema

    print(json.dumps(lab_schema(_host(args)), indent=2))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from .run import run

    return run(args, _host(args))


def cmd_view(args: argparse.Namespace) -> int:
    from ..web.view import main as view_main

    _host(args)  # --strict
    return view_main(args)


def cmd_ports(args: argparse.Namespace) -> int:
    from .ports import list_ports

    _host(args)  # --strict
    return list_ports(args.backend, args.json, args.device)


def _inspect_main(argv: list[str]) -> int:
    from .inspect import main as inspect_main

    return inspect_main(argv)


def cmd_migrate(args: argparse.Namespace) -> int:
    from .migrate import main as migrate_main

    return migrate_main(args, _host(args))


def cmd_new(args: argparse.Namespace) -> int:
    from .wizard import main as wizard_main

    return wizard_main(args, _host(args))


def build_parser(host: PluginHost | None = None) -> argparse.ArgumentParser:
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
    p.add_argument("type", nargs="?", help="one instrument type: its channels, lab-file keys "
                                           "and commands with their arguments")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("validate", help="check a lab file and list every problem",
                       description="Validate a lab TOML file against the installed plugins. "
                                   "Prints every problem as file:line: message (suggestion); "
                                   "exit 0 when valid, 2 otherwise.")
    p.add_argument("lab", type=path_named("lab file"), help="lab file (TOML)")
    p.add_argument("--offline", action="store_true",
                   help="check the file away from the lab PC: no checks that serial devices "
                        "exist, output directories can be written, or the live data "
                        "service's token and TLS files are there, nor of what this PC needs "
                        "to run it (the VISA library and the kinds of resource its backend "
                        "can open, the web extra for [daqhub.web], pyarrow's Flight for "
                        "[daqhub.serve])")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON schema of a lab file",
                       description="Print the JSON schema of a lab file, including the blocks "
                                   "that installed instrument types and storage backends add.")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser(
        "run", help="run a lab (no file: the built-in simulated demo lab)",
        description="Validate the lab file (all problems, then exit 2), start every instrument "
                    "of both flavors, show a live view, and write the session's HDF5/Arrow "
                    "files. Ctrl-C, SIGTERM or a closed terminal (SIGHUP) shuts down through the "
                    "phased shutdown; a second "
                    "Ctrl-C forces. Ends with the shutdown report, counts per instrument and "
                    "the session files. " + RUN_EXIT_CODES,
        epilog=LIVE_VIEW_LEGEND, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lab", nargs="?", type=path_named("lab file"),
                   help="lab file (TOML); omitted: the demo lab")
    p.add_argument("--duration", type=seconds, default=0.0, metavar="S",
                   help="stop after S seconds, S > 0 (default: run until Ctrl-C)")
    p.add_argument("--output-dir", metavar="DIR", type=path_named("output directory"),
                   help="store here instead of where the lab file says: each flavor's "
                        "sessions go to DIR/v2 and DIR/v4, whatever [daqhub], [v2] or [v4] "
                        "output_dir give")
    p.add_argument("--plain", action="store_true",
                   help="periodic plain lines instead of the live table (default without a TTY)")
    p.add_argument("--interval", type=seconds, default=2.0, metavar="S",
                   help="seconds between plain status lines, > 0 (default 2)")
    p.add_argument("--no-storage", action="store_true", help="do not write session files")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="session metadata stored with the data (repeatable), e.g. "
                        "--meta operator=Ada --meta sample=P3")
    p.add_argument("--web", metavar="[HOST:]PORT",
                   help="serve a live dashboard in the browser (127.0.0.1 unless HOST is "
                        "given; any other address needs the printed token)")
    p.add_argument("--serve", metavar="HOST:PORT",
                   help="serve live data and sessions over Arrow Flight (token: $DAQHUB_TOKEN)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("view", help="a live dashboard of a run on another machine",
                       description="Follow a run served by 'daqhub run --serve' (Arrow Flight) "
                                   "and show its live dashboard in the browser, as 'daqhub run "
                                   "--web' does for a local run. The remote run never waits "
                                   "for this viewer.")
    p.add_argument("url", help="the run's data service, e.g. grpc://lab-pc:8815")
    p.add_argument("--web", metavar="[HOST:]PORT",
                   help="where the dashboard listens (default 127.0.0.1:8640; any other "
                        "address needs the printed token)")
    p.add_argument("--token", help="the data service's token (default $DAQHUB_TOKEN)")
    p.add_argument("--commands", action="store_true",
                   help="let the page send commands (token-guarded; the service must "
                        "allow actions)")
    p.add_argument("--duration", type=seconds, default=0.0, metavar="S",
                   help="stop after S seconds, S > 0 (default: until Ctrl-C)")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("ports", help="list serial ports and VISA resources",
                       description="List serial ports (with USB vendor/product/serial where "
                                   "known, and who holds each: a daqhub process with its pid, "
                                   "command and start, or another program) and the VISA "
                                   "resources each backend sees. Exit 1 when a device asked "
                                   "about does not exist.")
    p.add_argument("device", nargs="*", help="also show these devices (e.g. a pty)")
    p.add_argument("--backend", action="append", default=None, metavar="B",
                   help="VISA backend to ask (@py, @ivi, file.yaml@sim, or "
                        "package:path.yaml@sim as lab files write it); repeatable; "
                        "default: @py and @ivi")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ports)

    p = sub.add_parser("inspect", help="summarise (and plot) a session or data file",
                       description="Summarise a session directory or an HDF5/Arrow file; "
                                   "--plot out.png draws the channels over time.",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser("migrate", help="convert a v2-only lab file to v4 where possible",
                       description="Move every instrument whose type has a v4 flavor from "
                                   "[[v2.instruments]] to [[v4.instruments]] (enabling [v4] "
                                   "if it was disabled), keep the others, and list what could "
                                   "not be converted and why. Comments and layout are kept; a "
                                   "changed storage backend is named. Written to another "
                                   "directory, the paths the lab gives relative to its file "
                                   "are rewritten to name the same places. The lab is "
                                   "validated first (its problems, or instruments written as "
                                   "an inline array: exit 2) and the result as "
                                   "it will be read, from where it is written, before it is "
                                   "written (exit 1 if it does not validate); the file is "
                                   "replaced whole or not at all.")
    p.add_argument("lab", type=path_named("lab file"), help="the v2 lab file")
    p.add_argument("-o", "--output", metavar="FILE", type=path_named("output file"),
                   help="where to write the new lab (default: print it)")
    p.add_argument("--force", action="store_true", help="overwrite an existing FILE")
    p.add_argument("--offline", action="store_true",
                   help="as validate --offline: no checks that serial devices exist or "
                        "output directories can be written (away from the lab PC)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("new", help="build a lab file interactively",
                       description="Ask for instruments one by one (type, connection, "
                                   "options) from the installed plugins, validating each "
                                   "answer; works with piped answers. Text with escapes is "
                                   "typed in double quotes, as JSON (\"\\r\\n\").")
    p.add_argument("-o", "--output", metavar="FILE", default="lab.toml",
                   type=path_named("output file"),
                   help="file to write (default lab.toml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_new)

    for name, command in sorted((host.cli_commands() if host else {}).items()):
        if name in sub.choices:  # reserved (the host reported it): daqhub's own stays
            continue
        p = sub.add_parser(name, help=command.help, description=command.help, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=lambda a, c=command: c.main(a.rest))
    return parser


def _plugin_problems(exc: PluginError) -> int:
    print(f"daqhub: {len(exc.problems)} plugin problem(s) (strict mode):", file=sys.stderr)
    for p in exc.problems:
        print(f"  - {p}", file=sys.stderr)
    return EXIT_PLUGINS


def main(argv: Sequence[str] | None = None) -> int:
    """The command; Ctrl-C before a command installs its own handling exits 130 quietly."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        interrupted()
    except BrokenPipeError:
        # the reader closed the pipe (``daqhub inspect ... | head``): stop quietly like other
        # Unix tools
        discard(sys.stdout)
        return EXIT_PIPE


def discard(stream: TextIO) -> None:
    """Send what is still to be written to ``stream``, whose reader went away, to /dev/null:
    the interpreter flushes it at exit, and a second broken pipe there would print a
    traceback and change the exit code."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _exit_code(command: str, result: object) -> int:
    """A plugin command's exit code: None, as a Python ``main`` returns when all went
    well, is 0; anything but an int is the plugin's mistake, said with its name."""
    if result is None:
        return EXIT_OK
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    print(f"daqhub {command}: the command returned {type(result).__name__} {result!r}, not "
          "an exit code (an int); its plugin should return one", file=sys.stderr)
    return EXIT_PLUGINS


def _plugin_command(host: PluginHost, name: str, main: Callable[[list[str]], object],
                    argv: list[str]) -> int:
    """Run a plugin's command; one that raises is the plugin's failure, said in one line
    with the plugin's name (a traceback read as daqhub's own crash)."""
    try:
        return _exit_code(name, main(argv))
    except BrokenPipeError:
        raise  # the reader went away: main() ends quietly
    except Exception as exc:
        owner = next((f"{i.distribution} {i.version}" for i in host.plugins.values()
                      if name in host.cli_commands_of(i.distribution)), "?")
        print(f"daqhub {name}: plugin {owner}'s command {name!r} failed: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAIL


def _first_party_absent(host: PluginHost, command: str) -> str:
    """Why ``daqhub <command>``, a first-party distribution's, is not there: that distribution
    to install, or (installed) its plugin's failure to load; '' for another command. argparse
    said "invalid choice" for both, with nothing to install or to fix."""
    dist = firstparty.COMMANDS.get(command)
    if dist is None:
        return ""
    if hint := firstparty.missing_provider(dist, f"daqhub {command}"):
        return hint
    return "\n".join(f"daqhub {command} is provided by {dist}, installed, whose plugin failed "
                     f"to load: {p}" for p in host.load_problems()
                     if dist_key(p.distribution) == dist)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--version"):  # no plugin import to wait for
        parser = build_parser()
        parser.parse_args(argv)  # --help and --version print and exit here
        parser.print_help()
        return EXIT_USAGE
    host = PluginHost()
    host.reserve_commands(BUILTIN_COMMANDS)
    host.load_entry_points()
    # Commands with their own argument parser get everything after their name untouched
    # (argparse would take their --help as ours).
    rest = argv[1:] if argv[:1] == ["--strict"] else argv
    plugin_commands = host.cli_commands()
    if rest and rest[0] not in plugin_commands and (why := _first_party_absent(host, rest[0])):
        print(why, file=sys.stderr)
        return EXIT_USAGE
    if rest and (rest[0] == "inspect" or rest[0] in plugin_commands):
        if rest is not argv:
            try:
                _strict(host)
            except PluginError as exc:
                return _plugin_problems(exc)
        if rest[0] == "inspect":
            return _inspect_main(rest[1:])
        return _plugin_command(host, rest[0], plugin_commands[rest[0]].main, rest[1:])
    parser = build_parser(host)
    args = parser.parse_args(argv)
    args.host = host
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except PluginError as exc:
        return _plugin_problems(exc)
