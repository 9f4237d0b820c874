"""`daqhub run` as a subprocess, with the test plugin in tests/e2e/liars installed."""

from __future__ import annotations

import os
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
