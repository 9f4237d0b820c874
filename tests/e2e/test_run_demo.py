"""`daqhub run` on the demo lab, as a lab user runs it: a subprocess, stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pyarrow as pa
import pytest

INSTRUMENTS = ("stage", "power", "rotator", "slider", "dmm", "psu")


def read_until(proc: subprocess.Popen[str], pattern: str, timeout: float,
               stream: str = "stdout") -> list[str]:
    """Lines of stdout (or stderr) up to the first matching ``pattern`` (fails after
    ``timeout``)."""
    import selectors

    sel = selectors.DefaultSelector()
    pipe = getattr(proc, stream)
    assert pipe is not None
    sel.register(pipe, selectors.EVENT_READ)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(max(0.0, deadline - time.monotonic())):
            continue
        line = pipe.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got:\n"
                         + "".join(lines))


@pytest.mark.timeout(120)
def test_demo_lab_runs_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daqhub", "run", "--plain", "--interval", "0.5",
         "--output-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        # wait until every instrument has produced data, then interrupt mid-run
        every = "".join(rf"(?=.*\b{i}=running:[1-9])" for i in INSTRUMENTS)
        read_until(proc, every, timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGINT: shutting down" in err
    assert "shutdown report" in out and "forced" not in out and "leaked" not in out
    assert "resources not closed" not in out
    counts = {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
              for m in re.finditer(r"^  (\w+): ((?:\w+=\d+(?:, )?)+)$", out, re.M)}
    assert set(counts) == set(INSTRUMENTS), out
    files = re.findall(r"^  (v2|v4): (\S+)$", out, re.M)
    assert {f for f, _ in files} == {"v2", "v4"}
    stored: dict[str, dict[str, int]] = {}
    for _flavor, path in files:
        p = Path(path)
        assert p.stat().st_size > 0
        if p.suffix == ".h5":
            with h5py.File(p, "r") as f:
                for iid in (k for k in f if not k.startswith("_")):
                    for ch in f[iid]:
                        stored.setdefault(iid, {})[ch] = len(f[iid][ch]["timestamp_ns"])
        else:
            with pa.ipc.open_stream(p) as r:
                table = r.read_all()
            stored.setdefault(p.parent.name, {})[p.stem] = table.num_rows
    assert stored == counts            # what the report printed is what the files hold
    assert all(n > 0 for chans in counts.values() for n in chans.values())
    budget = json.loads((Path(files[0][1]).parent / "budget.json").read_text()) \
        if files[0][0] == "v2" else None
    if budget:
        assert budget["shutdown"]["unclosed_resources"] == []


@pytest.mark.timeout(60)
def test_run_with_invalid_lab_lists_problems_and_exits_2(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text('[[v2.instruments]]\nid = "x"\ntype = "newport.esp30"\nport = "sim://esp300"'
                   '\naxis = 1\n')
    r = subprocess.run([sys.executable, "-m", "daqhub", "run", str(lab)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert f"{lab}:3: unknown instrument type 'newport.esp30'" in r.stderr
    assert "newport.esp300" in r.stderr


@pytest.mark.timeout(120)
def test_second_sigint_forces_exit_and_files_stay_readable(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daqhub", "run", "--plain", "--interval", "0.5",
         "--output-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        read_until(proc, r"\bpower=running:[1-9]\d", timeout=60)   # 10+ samples stored
        # Two interrupts before the first is handled: a second SIGINT sent at once would be
        # merged with the first by the OS, so the second one is a SIGTERM (same handler).
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "forced exit" in err
    session = next((tmp_path / "data" / "v2").iterdir())
    r = subprocess.run([sys.executable, "-m", "daqhub", "inspect", str(session)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr      # readable up to its last flush
    assert "power" in r.stdout


@pytest.mark.timeout(120)
def test_closing_the_terminal_shuts_the_run_down_cleanly(tmp_path: Path) -> None:
    """A terminal window closed (or an SSH session lost) under ``daqhub run``: the kernel
    sends SIGHUP, whose default killed the process like ``kill -9``: no shutdown, no axis
    stopped, no report or budget.json, every file "not closed cleanly"."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()

    def own_terminal() -> None:  # the run's terminal, as a shell's job has it
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daqhub", "run", "--plain", "--interval", "0.5",
         "--output-dir", str(tmp_path / "data")],
        stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, env=env,
        preexec_fn=own_terminal)
    os.close(slave)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        every = [rf"\b{i}=running:[1-9]".encode() for i in INSTRUMENTS]
        while not all(re.search(p, seen) for p in every):
            assert time.monotonic() < deadline, seen[-2000:]
            try:
                seen += os.read(master, 65536)
            except OSError:  # EIO: the run ended, its side of the terminal closed
                raise AssertionError(seen[-2000:].decode(errors="replace")) from None
        os.close(master)  # the window closed
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0  # every instrument stopped cleanly, though nobody saw it
    sessions = [s for flavor in ("v2", "v4") for s in (tmp_path / "data" / flavor).iterdir()]
    assert (sessions[0] / "budget.json").is_file()  # saved last, by the shutdown
    assert not list((tmp_path / "data").rglob("*.lock"))
    r = subprocess.run([sys.executable, "-m", "daqhub", "inspect", str(sessions[0])],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "not closed cleanly" not in r.stdout, r.stdout + r.stderr


@pytest.mark.timeout(120)
def test_a_run_under_nohup_outlives_its_terminal(tmp_path: Path) -> None:
    """``nohup daqhub run`` ignores SIGHUP so that the run survives a closed terminal or a
    lost SSH session; daqhub's own SIGHUP handler replaced that ignore and stopped it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daqhub", "run", "--plain", "--interval", "0.5",
         "--duration", "4", "--output-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # what nohup does
    try:
        read_until(proc, r"\bpower=running:[1-9]", timeout=60)
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGHUP" not in err and "shutdown report" in out
