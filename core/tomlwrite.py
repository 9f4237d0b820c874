"""Writing lab files: the small TOML subset lab files use (tables, arrays of tables).

tomllib only reads; ``migrate`` and ``new`` need to write, and a lab file never
holds more than tables, arrays of tables, scalars, arrays and inline tables.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def dumps(doc: Mapping[str, Any]) -> str:
    out: list[str] = []
    _table(doc, (), out)
    return "\n".join(out).lstrip("\n") + "\n"


def _table(tbl: Mapping[str, Any], path: tuple[str, ...], out: list[str]) -> None:
    scalars = {k: v for k, v in tbl.items()
               if not isinstance(v, Mapping) and not _is_table_array(v)}
    for k, v in scalars.items():
        out.append(f"{key(k)} = {value(v)}")
    for k, v in tbl.items():
        sub = (*path, k)
        if isinstance(v, Mapping):
            out.append("")
            out.append(f"[{'.'.join(key(p) for p in sub)}]")
            _table(v, sub, out)
        elif _is_table_array(v):
            for item in v:
                out.append("")
                out.append(f"[[{'.'.join(key(p) for p in sub)}]]")
                _table(item, sub, out)
