"""``daqhub run --meta key=value``: metadata and the settings snapshot beside the data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import pyarrow as pa
import pytest
from lab_texts import optics_lab

pytestmark = pytest.mark.timeout(120)


def test_run_stores_meta_and_settings_snapshot(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text(optics_lab(tmp_path / "data", "v4"))
    r = subprocess.run([sys.executable, "-m", "daqhub", "run", str(lab), "--plain",
                        "--duration", "3", "--meta", "operator=Ada", "--meta", "sample=P3"],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    (h5,) = (tmp_path / "data" / "v2").glob("*/records.h5")
    with h5py.File(h5, "r") as f:
        assert json.loads(f["meta"].attrs["json"]) == {"operator": "Ada", "sample": "P3"}
        who = [v.decode() for v in f["settings/instrument"][:]]
        snaps = [json.loads(v) for v in f["settings/settings"][:]]
    assert sorted(who) == ["power", "rotator"]
    assert all("error" not in s for s in snaps)
    (arrow,) = (tmp_path / "data" / "v4").glob("*/settings.arrow")
    table = pa.ipc.open_file(arrow).read_all()
    assert json.loads(table.schema.metadata[b"daqhub.meta"])["operator"] == "Ada"


def test_run_refuses_meta_without_equals(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text(optics_lab(tmp_path / "data", "v2"))
    r = subprocess.run([sys.executable, "-m", "daqhub", "run", str(lab), "--plain",
                        "--duration", "1", "--meta", "operator"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "expected key=value" in r.stderr
