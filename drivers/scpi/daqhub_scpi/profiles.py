"""What each SCPI profile reads and sends, derived from an instrument's config block.

A profile is data, not code: the readings (channel name, query, unit, parser) and
the commands sent when the instrument connects. ``scpi.dmm`` and ``scpi.psu``
build theirs from fixed tables; ``scpi.custom`` takes them from the lab file, so
a lab adds a SCPI instrument without writing a driver. Channel declarations are
computed from the same readings, so storage and the driver cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def dmm_functions(config: Mapping[str, Any]) -> list[str]:
    """The ``function`` key as a list (a single name or a list of names)."""
    value = config.get("function", DEFAULT_DMM_FUNCTION)
    if isinstance(value, str):
        names = [value]
    elif isinstance(value, list | tuple):
        names = list(value)
    else:
        raise ValueError(f"function must be a name or a list of names, got {value!r}")
    unknown = [n for n in names if not isinstance(n, str) or n not in DMM_FUNCTIONS]
    if unknown or not names:
        raise ValueError(f"function must be one or more of {', '.join(DMM_FUNCTIONS)}, "
                         f"got {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"function lists a name twice: {value!r}")
    return names


def custom_readings(config: Mapping[str, Any]) -> list[Reading]:
    """The ``readings`` list of a ``scpi.custom`` block; ValueError names the bad entry."""
    items = config.get("readings")
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise ValueError("readings must be a non-empty list of "
                         "{name = ..., query = ..., unit = ..., parse = ...} tables")
    out: list[Reading] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"readings[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be a table")
        name = item.get("name")
        query = item.get("query")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where} has no name")
        where = f"readings[{i}] ({name!r})"
        if name in seen:
            raise ValueError(f"{where}: the name is used twice (each reading is a channel)")
        seen.add(name)
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"{where} has no query")
        try:
            parser = ReplyParser.from_spec(str(item.get("parse", "float")), item.get("regex"))
            reading = Reading(name, query, str(item.get("unit", "")), parser)
            reading.channel()  # checks the name is a valid channel name
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        out.append(reading)
    return out


def custom_init(config: Mapping[str, Any]) -> list[str]:
    items = config.get("init", [])
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise ValueError("init must be a list of SCPI commands")
    return [str(c) for c in items]


def readings_for(type_name: str, config: Mapping[str, Any]) -> list[Reading]:
    if type_name == DMM:
        return [DMM_FUNCTIONS[name] for name in dmm_functions(config)]
    return list(PSU_READINGS) if type_name == PSU else custom_readings(config)


def init_commands(type_name: str, config: Mapping[str, Any]) -> list[str]:
    """Sent in order on connect (and after ``reset``): the lab's ``init`` list for custom."""
    return custom_init(config) if type_name == CUSTOM else []


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
    if type_name == CUSTOM:
        try:
            custom_init(config)
        except ValueError as exc:
            problems.append(str(exc))
    try:
        problems.extend(ScpiSettings.from_config(config).problems())
    except (TypeError, ValueError) as exc:
        problems.append(f"link settings: {exc}")
    return problems
