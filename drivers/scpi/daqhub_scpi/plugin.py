"""daqhub plugin entry point of daqhub-scpi: registers the SCPI instrument types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema

from daqhub.driver import instrument_types, lab_blocks
from daqhub.hookspecs import hookimpl
from daqhub.specs import ConfigProblem, InstrumentType

from .driver import CustomSession, DmmSession, PsuSession
from .profiles import config_problems
from .schemas import SCHEMAS

_SESSIONS = (DmmSession, PsuSession, CustomSession)


def conformance() -> list[dict[str, Any]]:
    """What ``daqhub check`` runs (group ``daqhub_sims.conformance``): each type on pyvisa-sim,
    and on the TCP simulator, which can also garble a reply."""
    psu = {"type": "scpi.psu", "steps": [["set_voltage", 3.0], ["set_output", True]]}
    tcp = {"garbage": "#~?GARBAGE,@@,!!\n", "rel_tol": 0.05,
           "block": {"read_termination": "\n", "write_termination": "\n"}}
    sim = {"visa": "dmm_psu.yaml", "rel_tol": 0.05}
    return [{"type": "scpi.dmm", "scpi_tcp": "dmm", **tcp}, {**psu, "scpi_tcp": "psu", **tcp},
            {"type": "scpi.dmm", **sim, "block": {"resource": "GPIB0::5::INSTR"}},
            {**psu, **sim, "block": {"resource": "GPIB0::6::INSTR"}},
            {"type": "scpi.custom", **sim, "block": {
                "resource": "GPIB0::5::INSTR", "init": ["CONF:RES"], "readings": [
                    {"name": "resistance", "query": "MEAS:RES?", "unit": "Ohm"},
                    {"name": "version", "query": "SYST:VERS?"}]}}]


@hookimpl
def daqhub_instrument_types() -> Sequence[InstrumentType]:
    return [t for session in _SESSIONS for t in instrument_types(session)]


@hookimpl
def daqhub_validate_config(config: Mapping[str, Any]) -> Sequence[ConfigProblem]:
    """Problems in SCPI blocks that a JSON schema cannot express (e.g. regex groups)."""
    names = {s.type_name for s in _SESSIONS}
    problems: list[ConfigProblem] = []
    for path, block in lab_blocks(config, names, disabled=True):
        if not jsonschema.Draft202012Validator(SCHEMAS[block["type"]]).is_valid(block):
            continue  # the core reports schema problems, with their line numbers
        label = f"[[{path[0]}.instruments]] #{path[2] + 1} ({block.get('id', '?')!s}, " \
                f"{block['type']})"
        problems.extend(ConfigProblem(f"{label}: {p}", path)
                        for p in config_problems(block["type"], block))
    return problems
