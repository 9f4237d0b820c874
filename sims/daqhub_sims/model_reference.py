"""The reference a lab reads to write ``sim://`` URLs, rendered from the models' declarations.

``daqhub sim models`` prints :func:`text`; ``docs/simulators.md`` carries :func:`markdown`
between its generated-section markers, and a test compares the two so the docs cannot drift.
"""

from __future__ import annotations

from daqhub_sims import registry
from daqhub_sims.model_options import SimOption, markdown_table, option_rows

#: The lines that fence the generated section in ``docs/simulators.md``.
BEGIN = "<!-- BEGIN GENERATED: daqhub sim models --markdown -->"
END = "<!-- END GENERATED -->"


def _declared(name: str) -> tuple[str, tuple[SimOption, ...], list[tuple[str, list[str],
                                                                      list[list[str]]]]]:
    """Summary, options and extra tables of a model (empty for a bare factory function)."""
    made_by = registry.model_factory(name)
    summary = getattr(made_by, "summary", "") or ""
    options: tuple[SimOption, ...] = tuple(registry.declared_options(made_by))
    tables_of = getattr(made_by, "reference_tables", None)
    tables = tables_of() if callable(tables_of) else []
    return summary, options, tables


def _aligned(rows: list[list[str]], indent: str) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def _option_lines(options: tuple[SimOption, ...]) -> list[str]:
    rows = [[f"{name}={default}", meaning] for name, default, meaning in option_rows(options)]
    return _aligned(rows, "  ") if rows else ["  (options not declared by this model)"]


def text(names: list[str] | None = None) -> str:
    """Plain text for a terminal: each model, its options with defaults, its extra tables."""
    out: list[str] = []
    for name in names or registry.models():
        summary, options, tables = _declared(name)
        out.append(f"{name}  ({summary}; sim://{name}?OPTION=VALUE&...)" if summary
                   else f"{name}  (sim://{name}?OPTION=VALUE&...)")
        out += _option_lines(options)
        for title, headers, rows in tables:
            out.append(f"  {title}:")
            out += _aligned([headers, *rows], "    ")
        out.append("")
    out.append("line options (every model):")
    out += _option_lines(registry.LINE_OPTION_SPECS)
    return "\n".join(out)


def markdown() -> str:
    """The generated section of ``docs/simulators.md`` (the built-in models), with markers."""
    out = [BEGIN, ""]
    for name in registry.BUILT_IN_MODELS:
        summary, options, tables = _declared(name)
        out.append(f"### `sim://{name}`")
        out.append("")
        if summary:
            out += [summary + ".", ""]
        out += [markdown_table(["option", "default", "meaning"], option_rows(options)), ""]
        for title, headers, rows in tables:
            out += [f"{title}:", "", markdown_table(headers, rows), ""]
    out += ["### Line options (every model)", "",
            markdown_table(["option", "default", "meaning"],
                           option_rows(registry.LINE_OPTION_SPECS)), "", END]
    return "\n".join(out)
