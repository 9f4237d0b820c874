"""The daqhub plugin of daqhub-sims: ``sim://`` serial URLs and the ``daqhub sim`` command."""

from __future__ import annotations

from daqhub.hookspecs import hookimpl
from daqhub.specs import CliCommand
from daqhub_sims import URL_HANDLER_PACKAGE


@hookimpl
def daqhub_serial_url_packages() -> list[str]:
    """Packages the core appends to ``serial.protocol_handler_packages``."""
    return [URL_HANDLER_PACKAGE]


def _sim_command(argv: list[str]) -> int:
    from daqhub_sims.cli import main

    return main(argv)


@hookimpl
def daqhub_cli_commands() -> list[CliCommand]:
    """``daqhub sim serve MODEL --pty|--tcp PORT``: a simulated device for other programs;
    ``daqhub sim models``: the models and their ``sim://`` options."""
    return [CliCommand("sim", "simulated instruments: serve one on a pty or TCP port, with "
                              "scheduled faults (sim serve --help); list models and their "
                              "options (sim models)", _sim_command)]
