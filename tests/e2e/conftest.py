"""`daqhub run` as a subprocess, with the test plugin in tests/e2e/liars installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LIARS = Path(__file__).parent / "liars"


@pytest.fixture
def liars_env(tmp_path: Path) -> dict[str, str]:
    """Environment in which the ``liars`` distribution is installed (entry point and all)."""
    site = tmp_path / "site"
    info = site / "daqhub_liars-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: daqhub-liars\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[daqhub]\nliars = liars_plugin\n")
    path = os.pathsep.join([str(site), str(LIARS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def run_lab(env: dict[str, str], lab: Path, *args: str, timeout: float = 90
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daqhub", "run", "--plain", str(lab), *args],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=lab.parent)


def budget_of(out: str) -> dict:
    """The session's one budget.json, found from the report's session files."""
    for line in out.splitlines():
        if line.startswith("  v2: ") or line.startswith("  v4: "):
            path = Path(line.split(": ", 1)[1])
            for d in (path.parent, path.parent.parent):
                if (d / "budget.json").exists():
                    return json.loads((d / "budget.json").read_text())
    raise AssertionError(f"no budget.json next to the session files in:\n{out}")
