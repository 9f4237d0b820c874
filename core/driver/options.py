"""An instrument block's own keys as the driver reads them: checked against the type's
config schema, with the schema's defaults filled in.

The lab file is validated when it is loaded, but a session can also be built directly (a
test, a script, the conformance kit), so the session checks its block again here; then a
driver needs no settings class restating its schema key by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import jsonschema


def options(schema: Mapping[str, Any], config: Mapping[str, Any],
            instrument_id: str = "") -> Any:
    """The schema's properties as attributes (``options.reply_timeout``): the block's value,
    else the property's ``default``, else None. A block the schema refuses raises ValueError
    naming the key and what is wrong with it."""
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(dict(config)))
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "block"
        who = f"{instrument_id}: " if instrument_id else ""
        raise ValueError(f"{who}{where}: {error.message}")
    return SimpleNamespace(**{key: config.get(key, prop.get("default"))
                              for key, prop in schema.get("properties", {}).items()})
