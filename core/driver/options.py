"""An instrument block's own keys as the driver reads them: checked against the type's
config schema, with the schema's defaults filled in.

The lab file is validated when it is loaded, but a session can also be built directly (a
test, a script, the conformance kit), so the session checks its block again here; then a
driver needs no settings class restating its schema key by key.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import jsonschema


def options(schema: Mapping[str, Any], config: Mapping[str, Any],
            instrument_id: str = "") -> Any:
    """The schema's properties as attributes (``options.reply_timeout``): the block's value,
    else the property's ``default``, else None. A block the schema refuses raises ValueError
    naming the key and what is wrong with it.

    The schema is of the block's own keys: the core's (``id``, ``type``, ``port``,
    ``poll_hz`` ...) are checked by the lab's validation and left out here unless the schema
    declares them, so a schema that allows no other keys (``additionalProperties: false``)
    holds for the session as it did for ``daqhub validate``.
    """
    from ..config import CORE_INSTRUMENT_KEYS  # at call time: config loads the plugin host
    declared = schema.get("properties", {})
    own = {k: v for k, v in config.items() if k in declared or k not in CORE_INSTRUMENT_KEYS}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(own))
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "block"
        who = f"{instrument_id}: " if instrument_id else ""
        raise ValueError(f"{who}{where}: {error.message}")
    return SimpleNamespace(**{key: config.get(key, prop.get("default"))
                              for key, prop in schema.get("properties", {}).items()})


def lab_blocks(config: Mapping[str, Any], type_names: Collection[str] | None, *,
               disabled: bool = False
               ) -> Iterator[tuple[tuple[str, str, int], Mapping[str, Any]]]:
    """The instrument blocks of ``type_names`` (None: of every type) in a raw lab file (what a
    ``daqhub_validate_config`` hook checks), each with its path for a ConfigProblem; those
    that do not run (``enabled = false`` on the block or on its flavor's table) only with
    ``disabled`` (they use no resource, but a user enabling one later wants to know it is
    wrong now). A disabled ``[v4]``'s blocks were yielded as running: a check of what runs
    together (a simulated meter's polariser line) counted an instrument that never ran.

    The hook sees the lab file before the core's own checks, so anything malformed is
    skipped here: the core reports it, with its line number.
    """
    for flavor in ("v2", "v4"):
        section = config.get(flavor)
        items = section.get("instruments", []) if isinstance(section, Mapping) else []
        runs = not isinstance(section, Mapping) or section.get("enabled", True) is not False
        for i, block in enumerate(items if isinstance(items, list) else []):
            if (isinstance(block, Mapping)
                    and (type_names is None or block.get("type") in type_names)
                    and (disabled or (runs and block.get("enabled", True) is not False))):
                yield (flavor, "instruments", i), block
