"""One device, one owner, as a lab meets it: two `daqhub run` on one port, and an installed
plugin that declares a type the lab already uses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from test_run_demo import read_until

from daqhub.resources.ownership import LOCK_DIR_ENV


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", LOCK_DIR_ENV: str(tmp_path / "locks")}


@pytest.fixture
def esp300_pty(env: dict[str, str]):
    """A simulated ESP300 on a real pty, served by another process."""
    proc = subprocess.Popen([sys.executable, "-m", "daqhub_sims", "serve", "esp300", "--pty"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        [path] = read_until(proc, r"^/dev/", timeout=30)
        yield path.strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.timeout(120)
def test_a_second_process_on_one_port_is_refused_and_the_first_is_unharmed(
        tmp_path: Path, env: dict[str, str], esp300_pty: str) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text(f'[[v2.instruments]]\nid = "stage"\ntype = "newport.esp300"\n'
                   f'port = "{esp300_pty}"\naxis = 1\npoll_hz = 20\n')
    first = subprocess.Popen(
        [sys.executable, "-m", "daqhub", "run", str(lab), "--plain", "--interval", "0.3",
         "--output-dir", str(tmp_path / "first")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        read_until(first, r"stage=running:[1-9]", timeout=60)
        second = subprocess.run(
            [sys.executable, "-m", "daqhub", "run", str(lab), "--plain", "--duration", "5",
             "--output-dir", str(tmp_path / "second")],
            capture_output=True, text=True, timeout=60, env=env)
        read_until(first, r"stage=running:\d{2,}", timeout=30)  # still polling afterwards
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 1, second.stderr
    refusal = second.stderr
    assert "could not start the lab" in refusal and esp300_pty in refusal, refusal
    assert f"process {first.pid} " in refusal and "daqhub run" in refusal, refusal
    assert re.search(r"since \d{4}-\d\d-\d\dT", refusal), refusal
    assert first.returncode == 0, err
    [h5] = re.findall(r"^  v2: (\S+\.h5)$", out, re.M)
    with h5py.File(h5, "r") as f:
        positions = f["stage"]["position"]["value"][:]
    # the axis never moved: every stored position is the one it started at (the second
    # process never touched the line, so no reply of its crossed into the first's)
    assert len(positions) > 10 and set(positions.tolist()) == {positions[0]}


CLASH = '''
from daqhub.hookspecs import hookimpl
from daqhub.specs import InstrumentType
from daqhub_newport import esp300_config
from daqhub_newport.esp300_v2 import Esp300AxisV2


class ForkedAxis(Esp300AxisV2):
    """A lab's fork of the ESP300 driver, published under the same type name."""


@hookimpl
def daqhub_instrument_types():
    return [InstrumentType(esp300_config.TYPE_NAME, "v2", "serial", ForkedAxis,
                           esp300_config.channels, "a forked ESP300 driver",
                           esp300_config.CONFIG_SCHEMA,
                           serial_settings=esp300_config.SERIAL_SETTINGS)]
'''


def _install_clash(site: Path) -> None:
    """A distribution as pip leaves it, found through PYTHONPATH like any installed one."""
    site.mkdir()
    (site / "esp300_fork.py").write_text(CLASH)
    info = site / "esp300_fork-0.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: esp300-fork\nVersion: 0.9\n"
                                   "Requires-Dist: daqhub>=0.1\n")
    (info / "entry_points.txt").write_text("[daqhub]\nfork = esp300_fork\n")


@pytest.mark.timeout(120)
def test_a_clashing_plugin_is_reported_and_the_lab_chooses_a_provider(
        tmp_path: Path, env: dict[str, str]) -> None:
    from importlib.metadata import version

    from daqhub.run import demo_lab_text

    _install_clash(tmp_path / "site")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), env.get("PYTHONPATH", "")])
    demo = subprocess.run([sys.executable, "-m", "daqhub", "run", "--no-storage", "--duration",
                           "1"], capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path)
    assert demo.returncode == 2, demo.stderr
    line = demo_lab_text().splitlines().index('type = "newport.esp300"') + 1
    [problem] = [p for p in demo.stderr.splitlines() if "newport.esp300" in p]
    assert f"<demo lab>:{line}:" in problem
    assert f"daqhub-newport {version('daqhub-newport')}" in problem and "esp300-fork 0.9" in problem
    assert "has no v2 flavor" not in demo.stderr
    assert '[daqhub.providers] "newport.esp300" = "daqhub-newport"' in problem

    lab = tmp_path / "lab.toml"
    lab.write_text(demo_lab_text().replace(
        "[daqhub]\n", '[daqhub]\nproviders = { "newport.esp300" = "daqhub-newport" }\n', 1))
    chosen = subprocess.run([sys.executable, "-m", "daqhub", "run", str(lab), "--plain",
                             "--no-storage", "--duration", "3", "--interval", "0.5"],
                            capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    assert re.search(r"stage=running:[1-9]", chosen.stdout), chosen.stdout
