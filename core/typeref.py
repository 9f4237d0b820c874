"""Reference tables of instrument types: channels, lab-file keys, commands and arguments.

Read from what the plugins declare (channel specs, the block's JSON schema, the driver
class's command methods and their signatures), so ``daqhub plugins TYPE`` and the tables in
docs/instrument-types.md cannot drift from the code: a test renders the tables and compares
them with the file. Regenerate it with
``python -m daqhub.typeref > docs/instrument-types.md``.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .commands import driver_class
from .host import PluginHost, default_host
from .instrument import public_methods
from .specs import InstrumentType

#: The driver distributions of this repository: the types docs/instrument-types.md lists.
DOCUMENTED_DISTRIBUTIONS = ("daqhub-elliptec", "daqhub-newport", "daqhub-scpi")


def _arguments(method: Any) -> list[str]:
    """``name`` or ``name=default`` for each argument a script passes (not ``self``)."""
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return ["..."]
    out = []
    for p in params[1:] if params and params[0].name == "self" else params:
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
        else:
            out.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return out


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def commands(itype: InstrumentType) -> list[dict[str, Any]] | None:
    """The type's commands with their arguments, or None when its factory is a function."""
    cls = driver_class(itype)
    if cls is None:
        return None
    return [{"name": name, "arguments": _arguments(getattr(cls, name)),
             "doc": _summary(getattr(cls, name))} for name in public_methods(cls)]


def config_keys(itype: InstrumentType) -> list[dict[str, Any]]:
    """The block's own keys (the core adds id, type, poll_hz, enabled, port/resource)."""
    schema = itype.config_schema
    required = set(schema.get("required", ()))
    out = []
    for key, prop in schema.get("properties", {}).items():
        kinds = (prop.get("type") or [p.get("type") for p in prop.get("anyOf", ())]
                 or _values_text(prop))
        out.append({"key": key, "type": kinds if isinstance(kinds, str) else " or ".join(
                        sorted({str(k) for k in kinds if k})),
                    "required": key in required, "default": prop.get("default"),
                    "description": " ".join(str(prop.get("description", "")).split())})
    return out


def _values_text(prop: Mapping[str, Any]) -> str:
    """What a key without a ``type`` takes: its ``enum`` or ``const`` values, else any."""
    if "enum" in prop:
        return "one of " + ", ".join(map(json.dumps, prop["enum"]))
    return f"= {json.dumps(prop['const'])}" if "const" in prop else "any"


def channels(itype: InstrumentType) -> list[dict[str, Any]] | None:
    """Declared channels (for a block of defaults where they depend on the block), or None
    when the block must say what they are."""
    try:
        specs = itype.channels_for({})
    except Exception:  # a channels function of a plugin: anything a block lacks may raise
        return None
    return [{"name": c.name, "kind": c.kind, "unit": c.unit, "dtype": c.dtype,
             "description": c.description} for c in specs]


def reference(host: PluginHost, name: str) -> dict[str, Any]:
    """Everything ``daqhub plugins TYPE`` shows, JSON-ready; LookupError for an unknown type."""
    types = {flavor: t for (n, flavor), t in host.instrument_types().items() if n == name}
    if not types:
        raise LookupError(f"no instrument type {name!r} is installed (installed: "
                          f"{', '.join(host.type_names())})")
    itype = types.get("v2") or types["v4"]
    return {"name": name, "description": itype.description, "flavors": sorted(types),
            "transport": itype.transport, "capabilities": list(itype.capabilities),
            "channels": channels(itype), "config": config_keys(itype),
            "commands": commands(itype)}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|") if text not in (None, "") else "-"


def markdown(ref: Mapping[str, Any]) -> str:
    """One type's section: a heading and three tables."""
    lines = [f"## `{ref['name']}`", "", f"{ref['description']}. Flavors: "
             f"{', '.join(ref['flavors'])}; transport: {ref['transport']}; capabilities: "
             f"{', '.join(ref['capabilities']) or '-'}.", ""]
    if ref["channels"] is None:
        lines += ["Channels: named in the lab block.", ""]
    else:
        lines += ["| channel | kind | unit | dtype | description |", "|---|---|---|---|---|"]
        lines += [f"| {c['name']} | {c['kind']} | {_cell(c['unit'])} | {c['dtype']} | "
                  f"{_cell(c['description'])} |" for c in ref["channels"]]
        lines.append("")
    lines += ["| lab-file key | type | default | description |", "|---|---|---|---|"]
    lines += [f"| {k['key']}{' (required)' if k['required'] else ''} | {k['type']} | "
              f"{_cell(json.dumps(k['default']) if k['default'] is not None else None)} | "
              f"{_cell(k['description'])} |" for k in ref["config"]]
    lines.append("")
    if ref["commands"] is None:
        lines += ["Commands: known only once the instrument runs.", ""]
    else:
        lines += ["| command | arguments | description |", "|---|---|---|"]
        lines += [f"| {c['name']} | {_cell(', '.join(c['arguments']))} | {_cell(c['doc'])} |"
                  for c in ref["commands"]]
        lines.append("")
    return "\n".join(lines)


def documented_types(host: PluginHost, distributions: Iterable[str] = DOCUMENTED_DISTRIBUTIONS
                     ) -> list[str]:
    wanted = set(distributions)
    return sorted({t["name"] for d in host.describe()["distributions"] if d["name"] in wanted
                   for t in d["instrument_types"]})


def document(host: PluginHost) -> str:
    """docs/instrument-types.md."""
    head = ["# Instrument types", "",
            "Generated from the drivers' declarations by "
            "`python -m daqhub.typeref > docs/instrument-types.md`; a test fails when this file "
            "is stale. `daqhub plugins TYPE` prints the same for any installed type. Every "
            "block also takes the keys the core owns: `id`, `type`, `poll_hz`, `enabled`, and "
            "`port`/`baudrate` (serial) or `resource`/`visa_backend` (VISA).", ""]
    return "\n".join(head + [markdown(reference(host, n)) for n in documented_types(host)])


def main(argv: Sequence[str] | None = None) -> int:
    sys.stdout.write(document(default_host()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
