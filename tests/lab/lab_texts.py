"""The demo's optics as lab text for the Lab API tests (a module of its own: test files
import it by a name no other folder uses, never ``from conftest import``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_counter = iter(range(1_000_000))


def _example_lab() -> str:
    """The lab text of examples/malus_scan.py: the tests scan what the guide's example scans."""
    path = Path(__file__).resolve().parents[2] / "examples" / "malus_scan.py"
    spec = importlib.util.spec_from_file_location("malus_scan_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.LAB)


EXAMPLE_LAB = _example_lab()


def optics_lab(out: Path, mount_flavor: str, *, routines: str = "", extra: str = "") -> str:
    """The demo's optics as TOML, on a sim bus of its own (so tests never share one)."""
    text = EXAMPLE_LAB.replace("malus", f"optics{next(_counter)}").replace(
        '[daqhub]\n', "[daqhub]\nshutdown_timeout = 10\n")
    return text.format(output_dir=out.as_posix(), mount_flavor=mount_flavor) + extra + routines
