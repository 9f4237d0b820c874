"""jsonschema's complaints about a lab file, said as what the value may be.

``16 is not valid under any of the given schemas`` tells a lab technician nothing;
``address = 16 is not allowed: address must be a whole number from 0 to 15 or text
matching ^[0-9A-Fa-f]$`` tells them what to write. The words come from the schema
itself, so a plugin's keys are described as well as the core's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

TYPE_WORDS = {"number": "a number", "integer": "a whole number", "string": "text in quotes",
              "boolean": "true or false", "array": "a list [...]", "object": "a table",
              "null": "nothing"}


def toml_text(value: Any) -> str:
    """A value as it would be written in TOML (close enough for a message)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{...}"
    return json.dumps(value, default=str)


def allowed(schema: Mapping[str, Any]) -> str:
    """What a schema accepts, in words: ``a whole number from 0 to 15``."""
    if "const" in schema:
        return f"exactly {toml_text(schema['const'])}"
    if "enum" in schema:
        return "one of " + ", ".join(toml_text(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(allowed(s) for s in schema[key])
    if "if" in schema and "then" in schema:
        return " or ".join(allowed(s) for s in (schema["then"], schema.get("else")) if s)
    t = schema.get("type")
    types: list[str] = [str(x) for x in (t if isinstance(t, list) else [t] if t else [])]
    words = " or ".join(TYPE_WORDS.get(x, x) for x in types) or "a value"
    lo, hi = schema.get("minimum"), schema.get("maximum")
    xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if lo is not None and hi is not None:
        words += f" from {lo} to {hi}"
    else:
        bounds = [f"{w} {v}" for w, v in (("above", xlo), ("at least", lo), ("below", xhi),
                                           ("at most", hi)) if v is not None]
        if bounds:
            words += " " + " and ".join(bounds)
    if "pattern" in schema:
        words += f" matching {schema['pattern']}"
    if schema.get("minLength"):
        words += f" of at least {schema['minLength']} character(s)"
    if schema.get("minItems"):
        words += f" with at least {schema['minItems']} item(s)"
    if schema.get("maxItems") is not None:
        words += f" with at most {schema['maxItems']} item(s)"
    if schema.get("uniqueItems"):
        words += ", each once"
    items = schema.get("items")
    if isinstance(items, Mapping) and items:
        words += f" of {allowed(items)}"
    return words


def not_allowed(name: str, value: Any, schema: Mapping[str, Any]) -> tuple[str, str]:
    """(message, suggestion) for a value a schema refuses; the key's description as hint."""
    return (f"{name} = {toml_text(value)} is not allowed: {name} must be {allowed(schema)}",
            str(schema.get("description", "")))
