"""The chaos soak, CI length: a mixed lab under random faults, checked at the end.

bench/soak.py documents the faults and the checks; the long run's figures are in
docs/architecture.md. Here it runs for 60 s of faults with 1-2 s between them (about 65 s
in all; seed 8 gives 22 faults of all six kinds); its RSS slope bound is loose because 60 s
is too short to tell a slow leak from warm-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).parents[2] / "bench" / "soak.py"


@pytest.mark.timeout(240)
def test_chaos_soak_ci_length(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, str(SOAK), "--duration", "60", "--seed", "8",
                        "--gaps", "1", "2", "--warmup", "30", "--max-rss-slope", "2",
                        "--json", str(out)],
                       capture_output=True, text=True, timeout=230)
    result = json.loads(out.read_text())
    assert r.returncode == 0 and result["ok"], result["problems"]
    assert sum(result["faults"].values()) >= 15 and result["samples"] > 1000, result
    assert len(result["faults"]) == 6, f"not every kind of fault happened: {result['faults']}"
