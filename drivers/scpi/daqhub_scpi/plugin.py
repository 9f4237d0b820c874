"""daqhub plugin entry point of daqhub-scpi: registers the SCPI instrument types."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jsonschema

from daqhub.hookspecs import hookimpl
from daqhub.specs import ConfigProblem, InstrumentType

from . import v2, v4
from .profiles import CUSTOM, DMM, PSU, channels_for, config_problems
from .schemas import CUSTOM_SCHEMA, DMM_SCHEMA, PSU_SCHEMA, SCHEMAS

_PROFILES: tuple[tuple[str, str, Mapping[str, Any], tuple[str, ...], Callable[..., Any],
                       Callable[..., Any]], ...] = (
    (DMM, "SCPI digital multimeter over VISA (MEAS:VOLT:DC? and friends)", DMM_SCHEMA,
     ("Readable",), v2.DmmV2, v4.DmmV4),
    (PSU, "SCPI programmable DC power supply over VISA (VOLT, CURR, OUTP, MEAS)", PSU_SCHEMA,
     ("Readable", "PowerSupply"), v2.PsuV2, v4.PsuV4),
    (CUSTOM, "any SCPI instrument over VISA, its readings and setup listed in the lab file",
     CUSTOM_SCHEMA, ("Readable",), v2.CustomV2, v4.CustomV4),
)


@hookimpl
def daqhub_instrument_types() -> Sequence[InstrumentType]:
    out = []
    for name, description, schema, capabilities, v2_class, v4_class in _PROFILES:
        for flavor, factory in (("v2", v2_class), ("v4", v4_class)):
            out.append(InstrumentType(
                name=name, flavor=flavor, transport="visa",  # type: ignore[arg-type]
                factory=factory, channels=channels_for(name), description=description,
                config_schema=schema, capabilities=capabilities))
    return out


@hookimpl
def daqhub_validate_config(config: Mapping[str, Any]) -> Sequence[ConfigProblem]:
    """Problems in SCPI blocks that a JSON schema cannot express (e.g. regex groups)."""
    names = {p[0] for p in _PROFILES}
    problems: list[ConfigProblem] = []
    for flavor in ("v2", "v4"):
        section = config.get(flavor)
        items = section.get("instruments", []) if isinstance(section, Mapping) else []
        if not isinstance(items, list):
            continue
        for i, block in enumerate(items):
            if not isinstance(block, Mapping) or block.get("type") not in names:
                continue
            if not jsonschema.Draft202012Validator(SCHEMAS[block["type"]]).is_valid(block):
                continue  # the core reports schema problems, with their line numbers
            label = f"[[{flavor}.instruments]] #{i + 1} ({block.get('id', '?')!s}, " \
                    f"{block['type']})"
            problems.extend(ConfigProblem(f"{label}: {p}", (flavor, "instruments", i))
                            for p in config_problems(block["type"], block))
    return problems
