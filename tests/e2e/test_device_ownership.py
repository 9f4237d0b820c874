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
from daqhub.driver import instrument_types
from daqhub.hookspecs import hookimpl
from daqhub_newport.esp300 import Esp300Axis


class ForkedAxis(Esp300Axis):
    """A lab's fork of the ESP300 driver, published under the same type name."""

    description = "a forked ESP300 driver"


@hookimpl
def daqhub_instrument_types():
    return [t for t in instrument_types(ForkedAxis) if t.flavor == "v2"]
'''

def install(site: Path, dist: str, version: str, module: str, source: str) -> None:
    """A distribution as pip leaves it, found through PYTHONPATH like any installed one."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
                                   "Requires-Dist: daqhub>=0.1\n")
    (info / "entry_points.txt").write_text(f"[daqhub]\nplugin = {module}\n")


@pytest.mark.timeout(120)
def test_a_clashing_plugin_is_reported_and_the_lab_chooses_a_provider(
        tmp_path: Path, env: dict[str, str]) -> None:
    from importlib.metadata import version

    from daqhub.cli.run import demo_lab_text

    install(tmp_path / "site", "esp300-fork", "0.9", "esp300_fork", CLASH)
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


MISTAKES = '''
from daqhub.hookspecs import hookimpl
from daqhub.instrument import V2Instrument
from daqhub.specs import InstrumentType


class Meter(V2Instrument):
    def __init__(self, ctx):
        raise AssertionError("an instrument was built")


@hookimpl
def daqhub_instrument_types():
    return [InstrumentType("sloppy.meter", "v4", "none", Meter, [], "a v2 class as v4"),
            InstrumentType("sloppy.scope", "v2", "none", Meter,
                           lambda block: [{"name": "trace", "kind": "spectrum"}], "dicts"),
            InstrumentType("sloppy.probe", "v2", "none", Meter, [{"name": "t"}], "dicts too")]


@hookimpl
def daqhub_validate_config(config):
    raise KeyError("calibration")


@hookimpl
def daqhub_session_started(session_id):
    raise RuntimeError("never reached: the lab must not start")
'''


@pytest.mark.timeout(120)
def test_declaration_mistakes_are_reported_before_any_instrument_starts(
        tmp_path: Path, env: dict[str, str]) -> None:
    install(tmp_path / "site", "sloppy-drivers", "0.0.1", "sloppy", MISTAKES)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), env.get("PYTHONPATH", "")])
    lab = tmp_path / "lab.toml"
    lab.write_text('[[v4.instruments]]\nid = "meter"\ntype = "sloppy.meter"\n\n'
                   '[[v2.instruments]]\nid = "scope"\ntype = "sloppy.scope"\n')
    run = subprocess.run([sys.executable, "-m", "daqhub", "run", str(lab), "--no-storage",
                          "--duration", "1"], capture_output=True, text=True, timeout=60,
                         env=env, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert "starting" not in run.stdout and "never reached" not in run.stderr
    problems = {int(m.group(1)): m.group(2)
                for m in re.finditer(rf"{re.escape(str(lab))}:(\d+): (.*)", run.stderr)}
    assert "sloppy-drivers 0.0.1" in problems[3] and "'sloppy.meter' (v4)" in problems[3]
    assert "must subclass V4Actor" in problems[3]
    assert "sloppy-drivers 0.0.1" in problems[5] and "'sloppy.scope' (v2" in problems[5]
    assert "item 0 is a dict" in problems[5]
    assert "its lab check failed" in problems[1] and "KeyError" in problems[1]
    assert "sloppy-drivers" in problems[1]
    strict = subprocess.run([sys.executable, "-m", "daqhub", "--strict", "validate", str(lab)],
                            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert strict.returncode == 3
    assert "2 plugin problem(s)" in strict.stderr  # every one, not only the first
    assert "'sloppy.meter' (v4)" in strict.stderr and "'sloppy.probe' (v2)" in strict.stderr
