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
    """Instruments that would share what only one can own: an axis of an ESP300 (and axes
    of one ESP300 disagreeing on its handshake), or an 1830-C.

    A meter has one detector and one set of settings (wavelength, range, filter,
    attenuator): a second block on it would set them for both, and one block's data would
    be read with the other's calibration, unflagged. A device is known by what its port
    reaches, not by how the port is spelt: ``socket://localhost:P`` and
    ``socket://127.0.0.1:P``, or a ``/dev/serial/by-id`` link and its device, are one."""
    problems: list[ConfigProblem] = []
    seen: dict[tuple[str, int], tuple[str, str]] = {}  # (device, axis) -> (id, port)
    rtscts: dict[str, tuple[bool, str]] = {}
    for path, block in lab_blocks(config, [Esp300Axis.type_name]):
        port, axis, ident = block.get("port"), block.get("axis"), str(block.get("id"))
        device = _device(port)
        if device is None or not isinstance(axis, int):
            continue
        other, other_port = seen.setdefault((device, axis), (ident, str(port)))
        if other != ident:
            problems.append(ConfigProblem(
                f"instruments {other!r} and {ident!r} both drive axis {axis} of the ESP300 "
                f"on {port}{_spelt(other_port, str(port), device)}; give each axis one "
                f"instrument", (*path, "axis")))
        flow = bool(block.get("rtscts", True))
        first = rtscts.setdefault(device, (flow, ident))
        if first[0] != flow:
            problems.append(ConfigProblem(
                f"instruments {first[1]!r} and {ident!r} share the ESP300 on {port} but "
                f"disagree on rtscts; one port has one handshake", (*path, "rtscts")))
    meters: dict[str, tuple[str, str, str]] = {}  # device -> (id, its table, port)
    for path, block in lab_blocks(config, [Meter1830c.type_name]):
        port, ident = block.get("port"), str(block.get("id"))
        device = _device(port)
        if device is None:
            continue
        table = f"[[{path[0]}.instruments]]"
        other, other_table, other_port = meters.setdefault(device, (ident, table, str(port)))
        if other != ident:
            problems.append(ConfigProblem(
                f"instruments {other!r} ({other_table}) and {ident!r} ({table}) both read "
                f"the 1830-C on {port}{_spelt(other_port, str(port), device)}: it has one "
                f"detector and one set of settings (wavelength, range, filter, attenuator), "
                f"which each block would set for both; give the meter one instrument",
                (*path, "port")))
    return problems


def _device(port: Any) -> str | None:
    """The device a block's ``port`` reaches; None when it names none (the core's check
    reports that, with its line)."""
    if not isinstance(port, str):
        return None
    try:
        return serial_identity(port)
    except ValueError:
        return None


def _spelt(first: str, second: str, device: str) -> str:
    """What a message adds when two spellings of a port reach one device."""
    return "" if first == second else f" ({first!r} and {second!r} reach the same device, " \
                                      f"{device})"


def conformance() -> list[dict[str, Any]]:
    """What ``daqhub check`` runs against the simulators (group ``daqhub_sims.conformance``)."""
    garbage = {"garbage": "\xff\xfe#?!\r\n", "replace_reply": True}
    return [{"type": "newport.esp300", "sim": "esp300", "options": {"speed_scale": 20},
             "block": {"axis": 1}, "steps": [["move_absolute", 2.0], ["wait_until_done", 10.0]],
             **garbage},
            {"type": "newport.1830c", "sim": "newport1830c",
             "options": {"noise": 0, "power": 0.001}, "block": {"wavelength_nm": 800},
             "steps": [["set_wavelength", 900]], **garbage}]
