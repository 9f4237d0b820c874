"""Running `daqhub run` on a lab file and reading what it leaves, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


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
