"""The daqhub plugin of daqhub-sims: ``sim://`` serial URLs and the ``sim``, ``check`` and
``new-plugin`` commands."""

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


def _check_command(argv: list[str]) -> int:
    from daqhub_sims.checks import main

    return main(argv)


def _new_plugin_command(argv: list[str]) -> int:
    from daqhub_sims.newplugin import main

    return main(argv)


@hookimpl
def daqhub_cli_commands() -> list[CliCommand]:
    """``daqhub sim serve MODEL --pty|--tcp PORT``: a simulated device for other programs;
    ``daqhub check``: the conformance kit; ``daqhub new-plugin NAME``: a driver distribution."""
    return [CliCommand("sim", "serve a simulated instrument on a pty or TCP port "
                              "(daqhub sim serve --help)", _sim_command),
            CliCommand("check", "run the conformance kit on installed driver plugins against "
                                "their simulators (daqhub check --help)", _check_command),
            CliCommand("new-plugin", "write a new driver distribution: driver in both flavors, "
                                     "simulator, tests (daqhub new-plugin --help)",
                       _new_plugin_command)]
