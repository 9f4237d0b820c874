"""JSON schemas of the SCPI instruments' own config keys.

The core adds ``id``, ``type``, ``poll_hz``, ``enabled``, ``resource`` and
``visa_backend``; these are the rest. What a JSON schema cannot express (a regex
with exactly one group, reading names used once, a termination that repeats its
last character, a ``regex`` key without ``parse = "regex"``) is checked by
:func:`daqhub_scpi.profiles.config_problems` through the plugin's
``daqhub_validate_config`` hook, for blocks that pass this schema.
"""

from __future__ import annotations

from typing import Any

from .parsing import PARSE_SPEC_PATTERN
from .profiles import CUSTOM, DEFAULT_DMM_FUNCTION, DMM, DMM_FUNCTIONS, PSU
from .protocol import CHECK_ERRORS

LINK_PROPERTIES: dict[str, Any] = {
    "read_termination": {
        "type": "string", "minLength": 1, "maxLength": 4, "default": "\n",
        "description": "characters that end every reply (must match the instrument)",
    },
    "write_termination": {
        "type": "string", "minLength": 1, "maxLength": 4, "default": "\n",
        "description": "characters appended to every command",
    },
    "timeout_ms": {
        "type": "integer", "minimum": 1, "maximum": 600000, "default": 2000,
        "description": "how long to wait for each reply, in milliseconds",
    },
    "check_errors": {
        "enum": [*CHECK_ERRORS, True, False], "default": "always",
        "description": "when to read SYST:ERR? and report errors against what caused them: "
                       "\"always\" (after every command and every reading of a poll), "
                       "\"commands\" (after commands and the setup only: faster polls), "
                       "\"never\"; true/false mean always/never",
    },
}

_FUNCTION: dict[str, Any] = {"type": "string", "enum": sorted(DMM_FUNCTIONS)}

DMM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **LINK_PROPERTIES,
        "function": {
            "type": ["string", "array"],
            # if/then/else rather than oneOf: a wrong name is then reported as
            # "'VOLT:AC' is not one of [...]" instead of "not valid under any of the given schemas"
            "if": {"type": "string"}, "then": _FUNCTION,
            "else": {"items": _FUNCTION, "minItems": 1, "uniqueItems": True},
            "default": DEFAULT_DMM_FUNCTION,
            "description": "what to measure, one or several of "
                           + ", ".join(f"{k} (channel {v.name}, {v.unit})"
                                       for k, v in DMM_FUNCTIONS.items()),
        },
    },
}

PSU_SCHEMA: dict[str, Any] = {"type": "object", "properties": dict(LINK_PROPERTIES)}

READING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$",
                 "description": "channel name (letters, digits, '_' and '-')"},
        "query": {"type": "string", "minLength": 1, "pattern": "^[^\\r\\n]+$",
                  "description": "SCPI query whose reply is the reading, e.g. MEAS:TEMP?"},
        "unit": {"type": "string", "default": "", "description": "unit of the value, e.g. K"},
        "parse": {"type": "string", "pattern": PARSE_SPEC_PATTERN, "default": "float",
                  "description": "float, int, bool, regex (with 'regex') or csv[N] "
                                 "(field N of a comma-separated reply, 0-based, as float)"},
        "regex": {"type": "string", "minLength": 1,
                  "description": "with parse = \"regex\": a pattern with exactly one group, "
                                 "whose text is read as a float"},
    },
    "required": ["name", "query"],
    "additionalProperties": False,
    "if": {"properties": {"parse": {"const": "regex"}}, "required": ["parse"]},
    "then": {"required": ["regex"]},
}

CUSTOM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **LINK_PROPERTIES,
        "readings": {"type": "array", "minItems": 1, "items": READING_SCHEMA,
                     "description": "named readings, each one channel"},
        "init": {"type": "array", "items": {"type": "string", "minLength": 1,
                                            "pattern": "^[^\\r\\n]+$"},
                 "description": "SCPI commands sent in order on connect, e.g. [\"*RST\"]"},
    },
    "required": ["readings"],
}

SCHEMAS: dict[str, dict[str, Any]] = {DMM: DMM_SCHEMA, PSU: PSU_SCHEMA, CUSTOM: CUSTOM_SCHEMA}
