"""daqhub plugin entry point of daqhub-newport: the ESP300 and 1830-C in both flavors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daqhub.driver import instrument_types, lab_blocks
from daqhub.hookspecs import hookimpl
from daqhub.resources import serial_identity
from daqhub.specs import ConfigProblem, InstrumentType

from .esp300 import Esp300Axis
from .esp300_protocol import ordered_limits
from .meter1830c import METER_SETTINGS, Meter1830c


@hookimpl
def daqhub_instrument_types() -> list[InstrumentType]:
    return instrument_types(Esp300Axis) + instrument_types(Meter1830c)


@hookimpl
def daqhub_validate_config(config: Mapping[str, Any]) -> list[ConfigProblem]:
    """An ESP300's ``limits`` with no travel between them (:func:`ordered_limits`, the rule
    its ``__init__`` and ``set_limits`` refuse them by: ``validate`` called such a lab valid,
    and its instrument never connected), and instruments that clash over one device: the
    same ESP300 axis twice, axes of one ESP300 disagreeing on its handshake, or 1830-C
    blocks on one meter that set it differently.

    Two blocks may read one meter (a v2 and a v4 one while a lab migrates, each with its
    own channel unit: :class:`~.meter1830c.MeterState` is shared per port for that), but
    the meter has one detector and one of each :data:`~.meter1830c.METER_SETTINGS`: blocks
    that give one differently would each set it for both, and one block's readings would
    be taken with the other's wavelength, unflagged. A device is known by what its port
    reaches, not by how the port is spelt: ``socket://localhost:P`` and
    ``socket://127.0.0.1:P``, or a ``/dev/serial/by-id`` link and its device, are one."""
    problems: list[ConfigProblem] = []
    seen: dict[tuple[str, int], tuple[str, str]] = {}  # (device, axis) -> (id, port)
    rtscts: dict[str, tuple[bool, str]] = {}
    for path, block in lab_blocks(config, [Esp300Axis.type_name]):
        port, axis, ident = block.get("port"), block.get("axis"), str(block.get("id"))
        limits = block.get("limits")
        if isinstance(limits, list) and len(limits) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in limits):
            try:
                ordered_limits(*limits)
            except ValueError as exc:
                problems.append(ConfigProblem(f"ESP300 {exc}", (*path, "limits")))
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
    meters: dict[str, list[tuple[str, str, str, Mapping[str, Any]]]] = {}
    for path, block in lab_blocks(config, [Meter1830c.type_name]):
        port, ident = block.get("port"), str(block.get("id"))
        device = _device(port)
        if device is None:
            continue
        table = f"[[{path[0]}.instruments]]"
        earlier = meters.setdefault(device, [])  # (id, its table, port, block) on the device
        for other, other_table, other_port, other_block in earlier:
            differ = [key for key in METER_SETTINGS if key in block and key in other_block
                      and block[key] != other_block[key]]
            if differ:
                problems.append(ConfigProblem(
                    f"instruments {other!r} ({other_table}) and {ident!r} ({table}) read the "
                    f"1830-C on {port}{_spelt(other_port, str(port), device)} but set it "
                    f"differently: "
                    + ", ".join(f"{key} {other_block[key]!r} and {block[key]!r}"
                                for key in differ)
                    + "; the meter has one of each, which each block would set for both "
                      "(one block's readings taken with the other's settings): give them "
                      "the same value, or give it in one block only", (*path, differ[0])))
        earlier.append((ident, table, str(port), block))
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
