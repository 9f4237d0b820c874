"""Elliptec status codes (`GS` replies) and what the manual says they mean.

Kept apart from the framing code because error messages are what a technician
reads in a log: the text comes verbatim from the ELLx protocol manual's table
(the protocol reference, "Status / error codes").
"""

from __future__ import annotations

OK = 0x00
COMMUNICATION_TIMEOUT = 0x01
MECHANICAL_TIMEOUT = 0x02
COMMAND_ERROR = 0x03
VALUE_OUT_OF_RANGE = 0x04
MODULE_ISOLATED = 0x05
MODULE_OUT_OF_ISOLATION = 0x06
INITIALISING_ERROR = 0x07
THERMAL_ERROR = 0x08
BUSY = 0x09
SENSOR_ERROR = 0x0A
MOTOR_ERROR = 0x0B
OUT_OF_RANGE = 0x0C
OVER_CURRENT = 0x0D

MESSAGES: dict[int, str] = {
    OK: "OK",
    COMMUNICATION_TIMEOUT: "communication timeout (a command arrived incomplete)",
    MECHANICAL_TIMEOUT: "mechanical timeout (the motor did not reach the target)",
    COMMAND_ERROR: "command error or command not supported by this module",
    VALUE_OUT_OF_RANGE: "value out of range",
    MODULE_ISOLATED: "module isolated",
    MODULE_OUT_OF_ISOLATION: "module out of isolation",
    INITIALISING_ERROR: "initialising error",
    THERMAL_ERROR: "thermal error",
    BUSY: "busy",
    SENSOR_ERROR: "sensor error",
    MOTOR_ERROR: "motor error",
    OUT_OF_RANGE: "out of range (e.g. move beyond travel)",
    OVER_CURRENT: "over-current",
}


def code_text(code: int) -> str:
    """The code as the module sends it (two upper-case hex digits), used as DriverError.code."""
    return f"{code:02X}"


def message(code: int) -> str:
    """The manual's meaning of a status code; codes the manual reserves say so."""
    if code in MESSAGES:
        return MESSAGES[code]
    if code in (0x10, 0x11):
        return "motor error reported during self-test"
    return "reserved status code (not documented in the ELLx manual)"


def is_error(code: int) -> bool:
    """Whether a status reply means the command failed (busy is handled separately)."""
    return code not in (OK, BUSY)
