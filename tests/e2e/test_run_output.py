"""``daqhub run`` whose output's reader goes away (``| head``): the run is the point.

The reader is this test: it reads the first line, as ``head -1`` does, and closes the pipe.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

DURATION_S = 4


def run_read_once(tmp_path: Path, stderr: int) -> tuple[bytes, int]:
    """Start the demo lab for DURATION_S, read its first line, close its output; the line
    and the exit code."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "daqhub", "run", "--plain", "--duration", str(DURATION_S),
         "--interval", "0.2", "--output-dir", "d"],
        stdout=subprocess.PIPE, stderr=stderr, cwd=tmp_path)
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()
        proc.stdout.close()
        return first, proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()


def recorded_span_s(tmp_path: Path) -> float:
    """Seconds between the stage's first and last stored sample."""
    session = next((tmp_path / "d" / "v2").iterdir())
    with h5py.File(session / "session.h5", "r") as f:
        t = f["stage/position/timestamp_ns"][:]
    return float(t[-1] - t[0]) / 1e9


@pytest.mark.timeout(120)
def test_a_closed_output_lets_the_run_finish_and_says_so_on_stderr(tmp_path: Path) -> None:
    """It ended the acquisition after a second, exit 141, with nothing on stderr."""
    err_path = tmp_path / "stderr.txt"
    with err_path.open("wb") as err_file:
        first, code = run_read_once(tmp_path, err_file.fileno())
    err = err_path.read_text()
    assert first.startswith(b"daqhub: starting")
    assert code == 0, err
    assert recorded_span_s(tmp_path) > DURATION_S - 1
    said = [ln for ln in err.splitlines() if "the output was closed" in ln]
    assert len(said) == 1, err
    assert f"the run goes on without it until its --duration of {DURATION_S} s is up" in said[0]
    session = next((tmp_path / "d" / "v2").iterdir())
    assert f"v2 data -> {session}" in said[0]
    report = err.split(said[0], 1)[1]        # the report follows, on stderr
    assert "shutdown report" in report and f"v2: {session / 'session.h5'}" in report
    assert "Traceback" not in err and "BrokenPipeError" not in err


@pytest.mark.timeout(120)
def test_stdout_and_stderr_closed_together_the_run_still_ends_with_its_own_code(
        tmp_path: Path) -> None:
    """``daqhub run 2>&1 | head -1``: nothing can be said any more, but the run goes on and
    its exit code is the run's."""
    first, code = run_read_once(tmp_path, subprocess.STDOUT)
    assert first.startswith(b"daqhub: starting")
    assert code == 0
    assert recorded_span_s(tmp_path) > DURATION_S - 1
    assert (next((tmp_path / "d" / "v2").iterdir()) / "budget.json").exists()
