"""The daqhub plugin of daqhub-sims: lets daqhub open ``sim://`` serial URLs."""

from __future__ import annotations

from daqhub.hookspecs import hookimpl

from daqhub_sims import URL_HANDLER_PACKAGE


@hookimpl
def daqhub_serial_url_packages() -> list[str]:
    """Packages the core appends to ``serial.protocol_handler_packages``."""
    return [URL_HANDLER_PACKAGE]
