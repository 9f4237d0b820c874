"""``daqhub run --meta key=value``: metadata and the settings snapshot beside the data."""

from __future__ import annotations

import json
import re
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


def test_run_refuses_a_meta_key_given_twice(tmp_path: Path) -> None:
    """Only the last value was stored, without a word."""
    lab = tmp_path / "lab.toml"
    lab.write_text(optics_lab(tmp_path / "data", "v2"))
    r = subprocess.run([sys.executable, "-m", "daqhub", "run", str(lab), "--plain",
                        "--duration", "1", "--meta", "operator=Ada", "--meta", "operator=Bob"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "--meta 'operator=Bob': operator is already 'Ada'; give each key once" in r.stderr
    assert not (tmp_path / "data").exists()  # nothing ran


#: ``daqhub run`` with every record file failing as on a full disk
FULL_DISK_RUN = """
import errno, sys
from daqhub import records
from daqhub.cli import main

def no_space(path, write):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))

records.replace_whole = no_space
sys.exit(main(sys.argv[1:]))
"""


def test_run_whose_records_cannot_be_written_exits_1_naming_them(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text(optics_lab(tmp_path / "data", "v4", routines="""
[[routines]]
instrument = "rotator"
steps = [["record", "power"]]
"""))
    r = subprocess.run([sys.executable, "-c", FULL_DISK_RUN, "run", str(lab), "--plain",
                        "--duration", "3"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "NOT OK" not in r.stdout  # the instruments and the routine did their part
    (v2,) = (tmp_path / "data" / "v2").glob("*")
    (v4,) = (tmp_path / "data" / "v4").glob("*")
    assert re.search(rf"^  errors: v2 records in {re.escape(str(v2))} left unwritten or out "
                     r"of date: records\.h5 \(settings, points routine-rotator-1\) \(\d+ "
                     r"failed writes?; last: OSError: \[Errno 28\] No space left on device",
                     r.stdout, re.M), r.stdout
    assert re.search(rf"^  errors: v4 records in {re.escape(str(v4))} left unwritten or out "
                     r"of date: settings\.arrow, points-routine-rotator-1\.arrow ",
                     r.stdout, re.M), r.stdout
