"""The resources package's modules use each other only through public names."""

from __future__ import annotations

import ast
from pathlib import Path

import daqhub.resources


def test_no_private_name_is_imported_across_resource_modules() -> None:
    package = Path(daqhub.resources.__file__).parent
    private: list[str] = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                private += [f"{path.name}: from {'.' * node.level}{node.module or ''} import "
                            f"{alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert private == []
    assert len(list(package.glob("*.py"))) > 10  # the package was found and read
