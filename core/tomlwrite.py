"""Writing lab files: the small TOML subset lab files use (tables, arrays of tables).

tomllib only reads; ``migrate`` and ``new`` need to write, and a lab file never
holds more than tables, arrays of tables, scalars, arrays and inline tables.
A lab given to ``open_lab`` as a dict is written out here too, so a script's own
numbers (numpy's among them) must come out as the TOML numbers they are, and
anything TOML cannot hold is a :class:`~daqhub.config.ConfigError` naming its key,
not a TypeError (or worse, a "not valid TOML" for text the user never wrote).
"""

from __future__ import annotations

import json
import math
import numbers
import re
import reprlib
from collections.abc import Mapping
from typing import Any

from .config import ConfigError, Problem

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
#: what a written document is called in its problems: a lab given as a dict
DICT_SOURCE = "<dict>"


def key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def value(v: Any, where: str = "value", source: str = DICT_SOURCE) -> str:
    """``v`` as TOML; ``where`` (``v2.instruments[0].port``) names it in a ConfigError.

    Numbers are written by what they are, not by their class: numpy's are
    ``numbers.Integral``/``numbers.Real`` but no ``int`` (np.int64), or a ``float``
    whose repr is ``np.float64(0.5)``, which is no TOML."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return float.__repr__(f)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x, f"{where}[{i}]", source) for i, x in enumerate(v)) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k, where, source)} = "
                               f"{value(x, f'{where}.{key(k)}', source)}"
                               for k, x in v.items()) + "}"
    raise _unwritable(f"{where}: TOML has no value of type {_type_name(v)} "
                      f"({reprlib.repr(v)})", source)


def _key(k: Any, where: str, source: str) -> str:
    if not isinstance(k, str):
        raise _unwritable(f"{where}: key {reprlib.repr(k)} is of type {_type_name(k)}; "
                          f"TOML keys are text", source)
    return key(k)


def _type_name(v: Any) -> str:
    """``numpy.bool``, ``datetime.time``: where a type comes from says how to convert it."""
    t = type(v)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _unwritable(message: str, source: str) -> ConfigError:
    return ConfigError([Problem(source, 0, message,
                                "give numbers, text, true/false, lists and tables")])


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def dumps(doc: Mapping[str, Any], source: str = DICT_SOURCE) -> str:
    """``doc`` as TOML text; raises ConfigError (file ``source``) for what TOML cannot hold."""
    out: list[str] = []
    _table(doc, (), "", out, source)
    return "\n".join(out).lstrip("\n") + "\n"


def _table(tbl: Mapping[str, Any], header: tuple[str, ...], where: str, out: list[str],
           source: str) -> None:
    """``header``: the table's header keys; ``where``: its name in problems, with the
    index of each array-of-tables element (``v2.instruments[1]``)."""
    names = {k: _key(k, where or "the top level", source) for k in tbl}
    for k, v in tbl.items():
        if not isinstance(v, Mapping) and not _is_table_array(v):
            name = names[k]
            out.append(f"{name} = {value(v, f'{where}.{name}' if where else name, source)}")
    for k, v in tbl.items():
        sub, inner = (*header, names[k]), f"{where}.{names[k]}" if where else names[k]
        if isinstance(v, Mapping):
            out.append("")
            out.append(f"[{'.'.join(sub)}]")
            _table(v, sub, inner, out, source)
        elif _is_table_array(v):
            for i, item in enumerate(v):
                out.append("")
                out.append(f"[[{'.'.join(sub)}]]")
                _table(item, sub, f"{inner}[{i}]", out, source)
