"""The ``sim://`` options each simulated model takes, declared once.

A model declares its options as ``OPTIONS`` on its device class; the device takes its
defaults from there (:func:`with_defaults`) and refuses any other (:func:`option_problem`, as
``daqhub validate`` does), and ``daqhub sim models`` and ``docs/simulators.md`` print the same
declaration, so the table a lab reads is the one the code runs. A model that declares none
reads its own and takes what it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SimOption:
    """One ``key=value`` of a ``sim://`` URL (or ``-o key=value`` of ``daqhub sim serve``)."""

    name: str
    default: str | None  # None: not set unless given (the model then does without it)
    help: str


def with_defaults(declared: Iterable[SimOption], given: Mapping[str, str]) -> dict[str, str]:
    """``given`` over the declared defaults (options without a default stay absent)."""
    merged = {o.name: o.default for o in declared if o.default is not None}
    merged.update(given)
    return merged


def option_problem(model: str, declared: Iterable[SimOption], given: Iterable[str],
                   also: Iterable[str] = ()) -> str | None:
    """Why ``model`` cannot take the options ``given`` (None: it can); ``also``: other names
    the caller accepts, listed with the declared ones.

    An option outside the declaration would be ignored, so a typo (``speed_sacle=10``) would
    serve the defaults without a word. A model that declares none takes whatever it is given:
    it reads its own (a model written from the old ``daqhub new-plugin`` template, before it
    declared ``OPTIONS``, worked so, and refusing its options would break it).
    """
    known = {o.name for o in declared}
    unknown = sorted(set(given) - known)
    if not known or not unknown:
        return None
    return (f"{model} takes no option {', '.join(map(repr, unknown))}; its options: "
            f"{', '.join(sorted(known | set(also)))} (daqhub sim models)")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(headers), "|" + "|".join("---" for _ in headers) + "|"]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def option_rows(options: Iterable[SimOption]) -> list[list[str]]:
    """Rows ``name, default, help`` as the tables show them."""
    return [[o.name, "(none)" if o.default is None else o.default or '""', o.help]
            for o in options]
