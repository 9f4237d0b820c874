"""daqhub plugin entry point of daqhub-newport: the ESP300 and 1830-C in both flavors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daqhub.driver import instrument_types, lab_blocks
from daqhub.hookspecs import hookimpl
from daqhub.resources import serial_identity
from daqhub.specs import ConfigProblem, InstrumentType

from .esp300 import Esp300Axis
from .meter1830c import Meter1830c


@hookimpl
def daqhub_instrument_types() -> list[InstrumentType]:
    return instrument_types(Esp300Axis) + instrument_types(Meter1830c)


@hookimpl
def daqhub_validate_config(config: Mapping[str, Any]) -> list[ConfigProblem]:
    """Axes of one controller that clash: the same axis twice, or disagreeing handshakes.

    A controller is known by the device its port reaches, not by how the port is spelt:
    ``socket://localhost:P`` and ``socket://127.0.0.1:P``, or a ``/dev/serial/by-id`` link
    and its device, are one ESP300."""
    problems: list[ConfigProblem] = []
    seen: dict[tuple[str, int], tuple[str, str]] = {}  # (device, axis) -> (id, port)
    rtscts: dict[str, tuple[bool, str]] = {}
    for path, block in lab_blocks(config, [Esp300Axis.type_name]):
        port, axis, ident = block.get("port"), block.get("axis"), str(block.get("id"))
        if not isinstance(port, str) or not isinstance(axis, int):
            continue
        try:
            device = serial_identity(port)
        except ValueError:
            continue  # a port that names no device: the core's check reports it
        other, other_port = seen.setdefault((device, axis), (ident, port))
        if other != ident:
            same = "" if other_port == port else f" ({other_port!r} and {port!r} reach " \
                                                  f"the same device, {device})"
            problems.append(ConfigProblem(
                f"instruments {other!r} and {ident!r} both drive axis {axis} of the ESP300 "
                f"on {port}{same}; give each axis one instrument", (*path, "axis")))
        flow = bool(block.get("rtscts", True))
        first = rtscts.setdefault(device, (flow, ident))
        if first[0] != flow:
            problems.append(ConfigProblem(
                f"instruments {first[1]!r} and {ident!r} share the ESP300 on {port} but "
                f"disagree on rtscts; one port has one handshake", (*path, "rtscts")))
    return problems


def conformance() -> list[dict[str, Any]]:
    """What ``daqhub check`` runs against the simulators (group ``daqhub_sims.conformance``)."""
    garbage = {"garbage": "\xff\xfe#?!\r\n", "replace_reply": True}
    return [{"type": "newport.esp300", "sim": "esp300", "options": {"speed_scale": 20},
             "block": {"axis": 1}, "steps": [["move_absolute", 2.0], ["wait_until_done", 10.0]],
             **garbage},
            {"type": "newport.1830c", "sim": "newport1830c",
             "options": {"noise": 0, "power": 0.001}, "block": {"wavelength_nm": 800},
             "steps": [["set_wavelength", 900]], **garbage}]
