"""The layering of daqhub, read from the source with ``ast`` (importing would hide lazy imports).

- The kernel (every module of ``core/`` outside ``daqhub.cli``, bar the ``python -m daqhub``
  entry point) imports nothing from ``daqhub.cli``, not even lazily or for type checking:
  plugins and scripts build on the kernel without the command-line application.
- ``daqhub.resources`` imports nothing else from daqhub: the shared-hardware layer is a leaf.
- No import loop between the runtime and the rest of the kernel when they load: nothing the
  runtime imports at load time imports ``daqhub.runtime`` back at load time. Imports inside
  functions and under ``TYPE_CHECKING`` do not run while modules load, so they are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
ENTRY_POINT = "daqhub.__main__"


def module_name(path: Path, root: Path) -> str:
    parts = ["daqhub", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _run_at_load(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements Python runs when the module loads: not function bodies, not TYPE_CHECKING."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _run_at_load(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(node, field, None)
            if isinstance(inner, list):
                yield from _run_at_load(inner)
        for handler in getattr(node, "handlers", []):
            yield from _run_at_load(handler.body)


def imports_of(path: Path, name: str, modules: set[str], load_time: bool) -> set[str]:
    """The daqhub modules ``name`` imports; ``from a import b`` names ``a.b`` when it is one."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in _run_at_load(tree.body) if load_time else ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{a.name}" for a in node.names
                         if f"{source}.{a.name}" in modules)
    return {m for m in found if m == "daqhub" or m.startswith("daqhub.")} - {name}


def import_graph(root: Path, load_time: bool = False) -> dict[str, set[str]]:
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    return {m: imports_of(p, m, set(paths), load_time) for m, p in paths.items()}


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def cli_violations(graph: dict[str, set[str]]) -> list[str]:
    kernel = [m for m in graph if not within(m, "daqhub.cli") and m != ENTRY_POINT]
    return [f"{m} imports {d}" for m in kernel for d in sorted(graph[m]) if within(d, "daqhub.cli")]


def resources_violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} imports {d}" for m, deps in graph.items() if within(m, "daqhub.resources")
            for d in sorted(deps) if not within(d, "daqhub.resources")]


def runtime_loops(graph: dict[str, set[str]]) -> list[str]:
    """Each kernel module the runtime loads that loads the runtime back, with the path."""
    loops = []
    for start in sorted({d for m, deps in graph.items() if within(m, "daqhub.runtime")
                         for d in deps if not within(d, "daqhub.runtime") and d != "daqhub"}):
        seen, todo = {start: [start]}, [start]
        while todo:
            here = todo.pop()
            for nxt in graph.get(here, set()) - seen.keys():
                seen[nxt] = seen[here] + [nxt]
                if within(nxt, "daqhub.runtime"):
                    loops.append(" -> ".join(["daqhub.runtime", *seen[nxt]]))
                else:
                    todo.append(nxt)
    return loops


def test_the_kernel_imports_nothing_from_the_command_line() -> None:
    graph = import_graph(CORE)
    assert {"daqhub.lab", "daqhub.config", "daqhub.web.view"} <= graph.keys()
    assert {"daqhub.cli", "daqhub.cli.run"} <= graph.keys()
    assert cli_violations(graph) == []


def test_every_daqhub_import_names_a_module_that_exists() -> None:
    """A module moved without its lazy imports fixed fails only when that code path runs."""
    graph = import_graph(CORE)
    assert [f"{m} imports {d}" for m, deps in graph.items() for d in sorted(deps)
            if d not in graph] == []


def test_resources_import_nothing_else_from_daqhub() -> None:
    graph = import_graph(CORE)
    assert "daqhub.resources.serial" in graph
    assert resources_violations(graph) == []


def test_the_runtime_and_the_kernel_load_without_a_loop() -> None:
    graph = import_graph(CORE, load_time=True)
    assert "daqhub.config" in graph["daqhub.runtime.dual"]  # the runtime does build on it
    assert runtime_loops(graph) == []


def test_each_kind_of_planted_violation_is_caught(tmp_path: Path) -> None:
    """The rules above would pass vacuously if the graph missed a form of import."""
    pkg = tmp_path / "core"
    for d in ("cli", "resources", "runtime"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "cli" / "run.py").write_text("")
    (pkg / "lab.py").write_text("def f():\n    from .cli import run\n")
    (pkg / "scan.py").write_text("from daqhub.cli.run import x\n")
    (pkg / "config.py").write_text("from . import cli\nimport daqhub.runtime.dual\n")
    (pkg / "resources" / "serial.py").write_text("from ..lab import f\n")
    (pkg / "runtime" / "dual.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..scan import x\n"
        "from ..config import y\n")
    graph = import_graph(pkg)
    assert cli_violations(graph) == ["daqhub.config imports daqhub.cli",
                                     "daqhub.lab imports daqhub.cli",
                                     "daqhub.lab imports daqhub.cli.run",
                                     "daqhub.scan imports daqhub.cli.run"]
    assert resources_violations(graph) == ["daqhub.resources.serial imports daqhub.lab"]
    loops = runtime_loops(import_graph(pkg, load_time=True))
    assert loops == ["daqhub.runtime -> daqhub.config -> daqhub.runtime.dual"]
