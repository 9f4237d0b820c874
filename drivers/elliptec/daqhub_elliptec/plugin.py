"""daqhub plugin entry point of daqhub-elliptec: every ELLx model it knows, in both flavors.

One instrument per module (``address = 0..15``); every module of one bus names
the same ``port`` and shares it through the core's serial manager and one
reply router (:mod:`.router`), whichever flavor each instrument uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daqhub.driver import instrument_types, lab_blocks
from daqhub.hookspecs import hookimpl
from daqhub.measurement import ChannelSpec
from daqhub.resources import serial_identity
from daqhub.specs import CliCommand, ConfigProblem, InstrumentType

from .driver import ElliptecModule
from .frames import SERIAL_SETTINGS, address_of
from .models import BY_NAME, MODELS, Model
from .scancli import command as scan_command

_KIND_TEXT = {"rotary": "rotation mount", "linear": "linear stage", "slider": "slider"}


def _description(model: Model) -> str:
    what = (f"{model.slots}-position slider (slot 0-{model.slots - 1})"
            if model.kind == "slider" else f"{_KIND_TEXT[model.kind]} ({model.unit})")
    return f"Thorlabs {model.name} {what} on an Elliptec bus"


#: type name -> (model, description): one type per model in :data:`.models.MODELS`.
TYPES: dict[str, tuple[str, str]] = {
    f"elliptec.{m.name.lower()}": (m.name, _description(m))
    for m in sorted(MODELS.values(), key=lambda m: m.type_code)
}

_ADDRESS: dict[str, Any] = {
    "anyOf": [{"type": "integer", "minimum": 0, "maximum": 15},
              {"type": "string", "pattern": "^[0-9A-Fa-f]$"}],
    "description": "module address on the bus: 0-15 or one hex character 0-F (factory: 0)",
}
_COMMON: dict[str, Any] = {
    "address": _ADDRESS,
    "home_on_start": {"type": "boolean", "default": False,
                      "description": "home the module when the instrument starts (sliders go "
                                     "to slot 0)"},
    "move_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 600,
                     "default": 10.0,
                     "description": "seconds a move may take before it counts as failed"},
    "reply_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 30,
                      "default": 1.0,
                      "description": "seconds to wait for the reply to a command that is not "
                                     "a move"},
}
_VELOCITY: dict[str, Any] = {
    "type": "integer", "minimum": 1, "maximum": 100,
    "description": "drive power in percent set on start (sv); below ~45 % a loaded stage may "
                   "stall",
}


def config_schema(model: str) -> dict[str, Any]:
    props = dict(_COMMON)
    if BY_NAME[model].kind != "slider":
        props["velocity"] = _VELOCITY
    return {"type": "object", "properties": props, "required": ["address"]}


def channels(model: str) -> list[ChannelSpec]:
    m = BY_NAME[model]
    what = {"rotary": "angle", "linear": "position", "slider": "slot index"}[m.kind]
    return [ChannelSpec("position", "scalar", m.unit, "float64",
                        description=f"{m.name} {what} (last known value while moving)")]


#: One session class per type: the model is all that differs.
SESSIONS: dict[str, type[ElliptecModule]] = {
    name: type(model, (ElliptecModule,), {
        "model_name": model, "type_name": name, "description": description,
        "channels": channels(model), "config_schema": config_schema(model),
        "serial_settings": SERIAL_SETTINGS, "__module__": __name__})
    for name, (model, description) in TYPES.items()
}


@hookimpl
def daqhub_instrument_types() -> list[InstrumentType]:
    return [t for session in SESSIONS.values() for t in instrument_types(session)]


@hookimpl
def daqhub_cli_commands() -> list[CliCommand]:
    """``daqhub scan PORT``: the modules on a bus, as lab-file blocks (:mod:`.scancli`)."""
    return [scan_command()]


@hookimpl
def daqhub_validate_config(config: Mapping[str, Any]) -> list[ConfigProblem]:
    """Two enabled instruments on one address of one bus would take each other's replies."""
    problems: list[ConfigProblem] = []
    seen: dict[tuple[str, str], str] = {}
    for path, block in lab_blocks(config, TYPES):
        port, raw_address = block.get("port"), block.get("address")
        if not isinstance(port, str) or not isinstance(raw_address, int | str):
            continue  # the schema check reports what is missing
        try:
            address = address_of(raw_address)
        except ValueError:
            continue
        other = seen.setdefault((serial_identity(port), address), ident := str(block.get("id")))
        if other != ident:
            problems.append(ConfigProblem(
                f"instruments {other!r} and {ident!r} both use address {address} of the "
                f"Elliptec bus on {port}; give each module its own address (change_address) "
                f"and one instrument", (*path, "address")))
    return problems


def conformance() -> list[dict[str, Any]]:
    """What ``daqhub check`` runs against the simulators (group ``daqhub_sims.conformance``)."""
    garbage = {"garbage": "\xff\xfe#?!\r\n", "replace_reply": True}
    return [{"type": f"elliptec.{model.lower()}", "sim": "elliptec",
             "options": {"devices": f"{address}:{model}", "speed_scale": 20},
             "block": {"address": address}, "steps": [["move_absolute", target],
                                                      ["wait_until_done", 10.0]], **garbage}
            for model, address, target in (("ELL14", 0, 45.0), ("ELL9", 2, 2))]
