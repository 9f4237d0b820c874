"""Simulated instruments for daqhub, reachable through real pyserial paths."""

from __future__ import annotations

URL_HANDLER_PACKAGE = "daqhub_sims.urlhandler"


def install() -> None:
    """Let ``serial.serial_for_url`` open ``sim://`` URLs in this process (idempotent)."""
    import serial

    if URL_HANDLER_PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(URL_HANDLER_PACKAGE)
