"""daqhub plugin entry point of daqhub-newport: the ESP300 and 1830-C in both flavors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from daqhub.hookspecs import hookimpl
from daqhub.specs import ConfigProblem, Flavor, InstrumentType

from . import esp300_config, meter1830c_config
from .esp300_v2 import Esp300AxisV2
from .esp300_v4 import Esp300AxisV4
from .meter1830c_v2 import Meter1830cV2
from .meter1830c_v4 import Meter1830cV4


@hookimpl
def daqhub_instrument_types() -> list[InstrumentType]:
    types: list[InstrumentType] = []
    esp300: tuple[tuple[Flavor, type], ...] = (("v2", Esp300AxisV2), ("v4", Esp300AxisV4))
    meter: tuple[tuple[Flavor, type], ...] = (("v2", Meter1830cV2), ("v4", Meter1830cV4))
    for flavor, factory in esp300:
        types.append(InstrumentType(
            name=esp300_config.TYPE_NAME, flavor=flavor, transport="serial",
            factory=factory, channels=esp300_config.channels,
            description=esp300_config.DESCRIPTION, config_schema=esp300_config.CONFIG_SCHEMA,
            capabilities=("Motion", "Readable"),
            serial_settings=esp300_config.SERIAL_SETTINGS))
    for flavor, factory in meter:
        types.append(InstrumentType(
            name=meter1830c_config.TYPE_NAME, flavor=flavor, transport="serial",
            factory=factory, channels=meter1830c_config.channels,
            description=meter1830c_config.DESCRIPTION,
            config_schema=meter1830c_config.CONFIG_SCHEMA,
            capabilities=("PowerMeter", "Readable"),
            serial_settings=meter1830c_config.SERIAL_SETTINGS))
    return types


@hookimpl
def daqhub_validate_config(config: Mapping[str, Any]) -> list[ConfigProblem]:
    """Axes of one controller that clash: the same axis twice, or disagreeing handshakes."""
    problems: list[ConfigProblem] = []
    seen: dict[tuple[str, int], str] = {}
    rtscts: dict[str, tuple[bool, str]] = {}
    for flavor in ("v2", "v4"):
        section = config.get(flavor)
        instruments: Sequence[Any] = section.get("instruments", []) if isinstance(
            section, Mapping) else []
        for i, block in enumerate(instruments):
            if not isinstance(block, Mapping) or block.get("type") != esp300_config.TYPE_NAME:
                continue
            port, axis, ident = block.get("port"), block.get("axis"), str(block.get("id"))
            if not isinstance(port, str) or not isinstance(axis, int):
                continue
            if block.get("enabled", True) is False:
                continue
            other = seen.setdefault((port.strip(), axis), ident)
            if other != ident:
                problems.append(ConfigProblem(
                    f"instruments {other!r} and {ident!r} both drive axis {axis} of the ESP300 "
                    f"on {port}; give each axis one instrument",
                    (flavor, "instruments", i, "axis")))
            flow = bool(block.get("rtscts", True))
            first = rtscts.setdefault(port.strip(), (flow, ident))
            if first[0] != flow:
                problems.append(ConfigProblem(
                    f"instruments {first[1]!r} and {ident!r} share the ESP300 on {port} but "
                    f"disagree on rtscts; one port has one handshake",
                    (flavor, "instruments", i, "rtscts")))
    return problems
