"""The runnable example of the lab guide's "Scripting a measurement" section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "malus_scan.py"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_malus_example_prints_the_table_and_saves_a_plot(tmp_path: Path, flavor: str) -> None:
    r = subprocess.run([sys.executable, str(EXAMPLE), "--output-dir", str(tmp_path),
                        "--mount-flavor", flavor], capture_output=True, text=True, timeout=100,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = lines.index(next(ln for ln in lines if "power.power" in ln))
    rows = [ln.split() for ln in lines[header + 1:header + 20]]
    assert [int(row[0]) for row in rows] == list(range(19))
    assert [float(row[1]) for row in rows] == [float(a) for a in range(0, 181, 10)]
    fit = next(ln for ln in lines if ln.startswith("fit:"))
    theta0 = float(fit.split("theta0 = ")[1].split()[0])
    assert abs(theta0) < 1.0
    plot = Path(next(ln for ln in lines if ln.startswith("plot: "))[6:])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
