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
    """``daqhub sim serve MODEL --pty|--tcp PORT``: a simulated device for other programs."""
    return [CliCommand("sim", "serve a simulated instrument on a pty or TCP port "
                              "(daqhub sim serve --help)", _sim_command)]
