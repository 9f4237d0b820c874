"""What each SCPI profile reads and sends, derived from an instrument's config block.

A profile is data, not code: the readings (channel name, query, unit, parser),
the commands sent when the instrument connects, and what its settings snapshot
holds besides the identity. ``scpi.dmm`` and ``scpi.psu`` build theirs from fixed
tables; ``scpi.custom`` takes them from the lab file, so a lab adds a SCPI
instrument without writing a driver. Channel declarations are computed from the
same readings, so storage and the driver cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daqhub.measurement import ChannelSpec

from .parsing import ReplyParser
from .protocol import ScpiSettings

DMM = "scpi.dmm"
PSU = "scpi.psu"
CUSTOM = "scpi.custom"


@dataclass(frozen=True)
class Reading:
    """One channel: the query that reads it and how its reply becomes a value."""

    name: str
    query: str
    unit: str
    parser: ReplyParser

    def channel(self) -> ChannelSpec:
        return ChannelSpec(self.name, "scalar", self.unit, dtype=self.parser.dtype,
                           description=f"reply to {self.query} ({self.parser.spec})")


_FLOAT = ReplyParser("float")
#: ``function`` values of ``scpi.dmm`` -> the reading (channel) each adds.
DMM_FUNCTIONS: dict[str, Reading] = {
    "VOLT:DC": Reading("voltage", "MEAS:VOLT:DC?", "V", _FLOAT),
    "CURR:DC": Reading("current", "MEAS:CURR:DC?", "A", _FLOAT),
    "RES": Reading("resistance", "MEAS:RES?", "Ohm", _FLOAT),
}
DEFAULT_DMM_FUNCTION = "VOLT:DC"
PSU_READINGS = (Reading("voltage", "MEAS:VOLT?", "V", _FLOAT),
                Reading("current", "MEAS:CURR?", "A", _FLOAT))
#: What a ``scpi.psu`` settings snapshot asks: the setpoints ``set_voltage``,
#: ``set_current_limit`` and ``set_output`` change, as the supply holds them (also when set
#: from its front panel or by ``write``), not as this driver last sent them.
PSU_SETPOINTS = (Reading("voltage_setpoint", "VOLT?", "V", _FLOAT),
                 Reading("current_limit", "CURR?", "A", _FLOAT),
                 Reading("output", "OUTP?", "", ReplyParser("bool")))


def custom_readings(config: Mapping[str, Any]) -> list[Reading]:
    """The ``readings`` of a ``scpi.custom`` block, whose form the schema checks; ValueError
    names the entry for what it cannot: a name used twice, a parse spec or regex that fails."""
    out: list[Reading] = []
    for i, item in enumerate(config["readings"]):
        where = f"readings[{i}] ({item['name']!r})"
        if any(r.name == item["name"] for r in out):
            raise ValueError(f"{where}: the name is used twice (each reading is a channel)")
        try:
            parser = ReplyParser.from_spec(str(item.get("parse", "float")), item.get("regex"))
            reading = Reading(item["name"], item["query"], str(item.get("unit", "")), parser)
            reading.channel()  # checks the name is a valid channel name
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        out.append(reading)
    return out


def dmm_functions(config: Mapping[str, Any]) -> list[str]:
    """A ``scpi.dmm`` block's ``function``, one or several (the schema checks them), as a list."""
    names = config.get("function", DEFAULT_DMM_FUNCTION)
    return [str(names)] if isinstance(names, str) else [str(n) for n in names]


def readings_for(type_name: str, config: Mapping[str, Any]) -> list[Reading]:
    if type_name == DMM:
        return [DMM_FUNCTIONS[n] for n in dmm_functions(config)]
    return list(PSU_READINGS) if type_name == PSU else custom_readings(config)


def configured_settings(type_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """What the settings snapshot takes from the lab file, without asking the instrument: a
    DMM's functions (each ``MEAS:...?`` of its poll sets the function it measures)."""
    return {"function": dmm_functions(config)} if type_name == DMM else {}


def setting_readings(type_name: str) -> tuple[Reading, ...]:
    """What the settings snapshot asks the instrument (:data:`PSU_SETPOINTS`), if anything."""
    return PSU_SETPOINTS if type_name == PSU else ()


def init_commands(type_name: str, config: Mapping[str, Any]) -> list[str]:
    """Sent in order on connect (and after ``reset``): the lab's ``init`` list for custom."""
    return [str(c) for c in config.get("init", [])] if type_name == CUSTOM else []


def channels_for(type_name: str) -> Any:
    """The ``InstrumentType.channels`` function of a profile (channels follow the config)."""

    def channels(config: Mapping[str, Any]) -> list[ChannelSpec]:
        return [r.channel() for r in readings_for(type_name, config)]

    channels.__name__ = f"channels_of_{type_name.replace('.', '_')}"
    return channels


def config_problems(type_name: str, config: Mapping[str, Any]) -> list[str]:
    """What the JSON schema cannot see: regex groups, duplicate names, terminations."""
    problems: list[str] = []
    try:
        readings_for(type_name, config)
    except ValueError as exc:
        problems.append(str(exc))
    problems.extend(ScpiSettings(str(config.get("read_termination", "\n"))).problems())
    return problems
