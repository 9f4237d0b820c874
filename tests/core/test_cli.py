"""The daqhub command as a user runs it: a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import daqhub


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daqhub", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_version_and_help() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"daqhub {daqhub.__version__}"
    r = run("--help")
    assert r.returncode == 0
    for word in ("plugins", "validate", "schema", "exit codes"):
        assert word in r.stdout


def test_plugins_json_lists_every_distribution() -> None:
    r = run("plugins", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    versions = {d["name"]: d["version"] for d in info["distributions"]}
    assert versions["daqhub"] == daqhub.__version__
    for dist in ("daqhub-newport", "daqhub-elliptec", "daqhub-scpi", "daqhub-sims"):
        assert versions.get(dist), f"{dist} not listed: {versions}"


def test_plugins_table() -> None:
    r = run("plugins")
    assert r.returncode == 0 and "daqhub-newport" in r.stdout


def test_validate_lists_all_problems_and_exits_2(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text('[daqhub]\noutput_dr = "x"\n\n[[v2.instruments]]\nid = "a"\n'
                   'type = "no.such"\n')
    r = run("validate", str(lab))
    assert r.returncode == 2
    assert f"{lab}:2: unknown key 'output_dr'" in r.stderr
    assert f"{lab}:6: unknown instrument type 'no.such'" in r.stderr


def test_validate_valid_file(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text('[daqhub]\noutput_dir = "x"\n\n[[v2.instruments]]\nid = "stage"\n'
                   'type = "newport.esp300"\nport = "sim://esp300"\naxis = 1\n')
    r = run("validate", str(lab))
    assert r.returncode == 0, r.stderr
    assert "valid (1 instrument: stage [newport.esp300, v2])" in r.stdout


def test_schema_is_json() -> None:
    r = run("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert set(schema["properties"]) == {"daqhub", "v2", "v4", "storage", "routines"}


def test_no_command_prints_help_and_exits_2() -> None:
    r = run()
    assert r.returncode == 2 and "usage" in r.stdout


def test_ports_json_lists_serial_ports_and_visa_backends() -> None:
    r = run("ports", "--json", "--backend", "@py")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert isinstance(info["serial"], list)
    assert [v["backend"] for v in info["visa"]] == ["@py"]
    assert all("device" in p and "usb_identity" in p for p in info["serial"])


def test_ports_reports_a_missing_visa_library_without_failing() -> None:
    r = run("ports", "--backend", "/nonexistent/libvisa.so")
    assert r.returncode == 0
    assert "not available" in r.stdout


def test_plugin_commands_reach_the_cli() -> None:
    r = run("sim", "models")          # added by daqhub-sims through daqhub_cli_commands
    assert r.returncode == 0 and "elliptec" in r.stdout.split()
    r = run("inspect", "--help")
    assert r.returncode == 0 and "--plot" in r.stdout
