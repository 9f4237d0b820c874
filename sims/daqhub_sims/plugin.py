"""The daqhub plugin of daqhub-sims: ``sim://`` serial URLs (and their check in ``daqhub
validate``) and the ``sim``, ``check`` and ``new-plugin`` commands."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daqhub.driver import lab_blocks
from daqhub.hookspecs import hookimpl
from daqhub.specs import CliCommand, ConfigProblem
from daqhub_sims import URL_HANDLER_PACKAGE


@hookimpl
def daqhub_serial_url_packages() -> list[str]:
    """Packages the core appends to ``serial.protocol_handler_packages``."""
    return [URL_HANDLER_PACKAGE]


def _sim_command(argv: list[str]) -> int:
    from daqhub_sims.cli import main

    return main(argv)


def _check_command(argv: list[str]) -> int:
    from daqhub_sims.checks import main

    return main(argv)


def _new_plugin_command(argv: list[str]) -> int:
    from daqhub_sims.newplugin import main

    return main(argv)


@hookimpl
def daqhub_cli_commands() -> list[CliCommand]:
    """``daqhub sim serve MODEL --pty|--tcp PORT``: a simulated device for other programs;
    ``daqhub sim models``: the models and their ``sim://`` options; ``daqhub check``: the
    conformance kit; ``daqhub new-plugin NAME``: a driver distribution."""
    return [CliCommand("sim", "simulated instruments: serve one on a pty or TCP port, with "
                              "scheduled faults (sim serve --help); list models and their "
                              "options (sim models)", _sim_command),
            CliCommand("check", "run the conformance kit on installed driver plugins against "
                                "their simulators (daqhub check --help)", _check_command),
            CliCommand("new-plugin", "write a new driver distribution: driver in both flavors, "
                                     "simulator, tests (daqhub new-plugin --help)",
                       _new_plugin_command)]


@hookimpl
def daqhub_validate_config(config: Mapping[str, Any]) -> list[ConfigProblem]:
    """A ``sim://`` port names a simulated device that exists, with options it takes: found
    by ``daqhub validate`` instead of when the run opens the port."""
    from daqhub_sims.model_options import option_problem
    from daqhub_sims.registry import (
        LINE_OPTIONS,
        UnknownModelError,
        declared_options,
        model_factory,
        parse_url,
    )

    problems: list[ConfigProblem] = []
    for path, block in lab_blocks(config, None, disabled=True):
        port = block.get("port")
        if not isinstance(port, str) or not port.strip().lower().startswith("sim://"):
            continue
        where = (*path, "port")
        try:
            url = parse_url(port.strip())
            factory = model_factory(url.model)
        except (ValueError, UnknownModelError) as exc:
            problems.append(ConfigProblem(str(exc), where))
            continue
        problem = option_problem(f"sim://{url.model}", declared_options(factory),
                                 url.device_options, LINE_OPTIONS)
        if problem:
            problems.append(ConfigProblem(problem, where))
    return problems + _coupling_problems(config)


def _coupling_problems(config: Mapping[str, Any]) -> list[ConfigProblem]:
    """A meter's ``polariser=LINE:ADDR`` reaches the Elliptec line through this process's
    registry (:mod:`daqhub_sims.optics`): the lab must open that line (or this process have
    it already, a script's own), and run in one process, else every reading fails."""
    from daqhub_sims.optics import line_url, polariser_line
    from daqhub_sims.registry import endpoints, parse_url

    lines: set[str] = set()
    couplings: list[tuple[tuple[Any, ...], str, str]] = []
    for path, block in lab_blocks(config, None):
        try:
            url = parse_url(str(block.get("port", "")).strip())
            spec = url.device_options.get("polariser")
            line = polariser_line(spec)[0] if spec else None
        except ValueError:
            continue  # not a sim:// port, or reported above
        if url.model == "elliptec" and url.line_options.get("name"):
            lines.add(url.line_options["name"])
        if line is not None:
            couplings.append(((*path, "port"), spec or "", line))
    daq = config.get("daqhub")
    workers = daq.get("workers", 1) if isinstance(daq, Mapping) else 1
    problems = []
    for where, spec, line in couplings:
        if isinstance(workers, int) and workers > 1:
            problems.append(ConfigProblem(
                f"polariser={spec} couples this simulated meter to the Elliptec line {line!r}, "
                f"which it can reach only in its own process; with [daqhub] workers = "
                f"{workers} the meter and the bus, on different ports, may run in different "
                f"worker processes, and every reading would fail: set workers = 1", where))
        elif line not in lines and line_url(line) not in endpoints():
            problems.append(ConfigProblem(
                f"polariser={spec} names the Elliptec line {line!r}, which no enabled "
                f"instrument of this lab opens (sim://elliptec?name={line}&devices=...); "
                f"lines it opens: {', '.join(sorted(lines)) or 'none'}", where))
    return problems
