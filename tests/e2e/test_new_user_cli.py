"""What a new lab trips over, typed as a user types it: ``daqhub`` in a subprocess."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

# Runs daqhub with some distributions hidden, as on a PC where they are not installed:
# their entry points, metadata and modules are all invisible.
HIDING_LAUNCHER = """
import importlib.abc, importlib.metadata as md, sys
hidden = set(sys.argv[1].split(","))
modules = {d.replace("-", "_") for d in hidden}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in modules:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
eps, version = md.entry_points, md.version
md.entry_points = lambda **kw: md.EntryPoints(
    e for e in eps(**kw) if e.dist is None or e.dist.name not in hidden)
def hidden_version(name):
    if name in hidden:
        raise md.PackageNotFoundError(name)
    return version(name)
md.version = hidden_version
from daqhub.cli import main
sys.exit(main(sys.argv[2:]))
"""


def daqhub(*args: str, cwd: Path | None = None, hide: str = "",
           timeout: float = 90) -> subprocess.CompletedProcess[str]:
    cmd = ([sys.executable, "-c", HIDING_LAUNCHER, hide] if hide else
           [sys.executable, "-m", "daqhub"])
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def lab(tmp_path: Path, text: str, name: str = "lab.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


STAGE = '[[v2.instruments]]\nid = "stage"\ntype = "newport.esp300"\nport = "sim://esp300"\n' \
        'axis = 1\n'


# --- 2. validate's words ---------------------------------------------------------------

def test_validate_speaks_plainly_at_the_right_lines(tmp_path: Path) -> None:
    f = lab(tmp_path, '[daqhub]\noutput_dir = "data"\n\n'
            '[[instruments]]\nid = "a"\ntype = "newport.1830c"\nport = "sim://newport1830c"\n\n'
            '[[v2.instrument]]\nid = "b"\ntype = "newport.1830c"\nport = "sim://newport1830c"'
            '\n\n[[v2.instruments]]\nid = "rot"\ntype = "elliptec.ell14"\nport = "sim://elliptec"'
            '\naddress = 16\n\n[[v2.instruments]]\nid = "power"\ntype = "newport.1830c"\n'
            'poll_hz = "fast"\n')
    r = daqhub("validate", str(f))
    assert r.returncode == 2
    lines = [ln.strip() for ln in r.stderr.splitlines()[1:]]
    assert lines[0] == (f"{f}:4: unknown key 'instruments' in the lab file (instruments belong "
                        "to a flavor: [[v2.instruments]] or [[v4.instruments]])")
    assert lines[1] == f"{f}:9: unknown key 'instrument' (did you mean [[v2.instruments]]?)"
    assert lines[2].startswith(f"{f}:18: address = 16 is not allowed: address must be a whole "
                               "number from 0 to 15 or text in quotes matching ^[0-9A-Fa-f]$")
    assert lines[3].startswith(f"{f}:20: 'port' is required (existing ports: ")
    assert lines[4].startswith(f'{f}:23: poll_hz = "fast" is not allowed: poll_hz must be a '
                               'number from 1e-07 to 10000')
    numbers = [int(ln.split(":")[1]) for ln in lines]
    assert numbers == sorted(numbers)
    assert "is not valid under any of the given schemas" not in r.stderr
    assert "is not of type" not in r.stderr


def test_validate_missing_file_and_empty_lab(tmp_path: Path) -> None:
    r = daqhub("validate", "missing.toml", cwd=tmp_path)
    assert r.returncode == 2
    assert "missing.toml: the lab file does not exist" in r.stderr and ":0:" not in r.stderr
    f = lab(tmp_path, '[daqhub]\noutput_dir = "data"\n')
    v, run = daqhub("validate", str(f)), daqhub("run", str(f), "--duration", "1")
    assert v.returncode == run.returncode == 2
    refusal = f"{f}: the lab has no enabled instruments; nothing to run"
    assert refusal in v.stderr and refusal in run.stderr


def test_validate_offline_skips_what_only_the_lab_pc_has(tmp_path: Path) -> None:
    f = lab(tmp_path, STAGE.replace("sim://esp300", "/dev/ttyUSB97"))
    r = daqhub("validate", str(f))
    assert r.returncode == 2 and "serial device '/dev/ttyUSB97' does not exist" in r.stderr
    r = daqhub("validate", "--offline", str(f))
    assert r.returncode == 0, r.stderr
    assert "valid (1 instrument: stage [newport.esp300, v2])" in r.stdout


# --- 3. missing packages named --------------------------------------------------------

def test_unknown_type_names_the_distribution_that_provides_it(tmp_path: Path) -> None:
    f = lab(tmp_path, STAGE)
    r = daqhub("validate", str(f), hide="daqhub-newport")
    assert r.returncode == 2
    assert ("newport.esp300 is provided by daqhub-newport: pip install daqhub-newport"
            in r.stderr), r.stderr


def test_sim_port_without_daqhub_sims_names_it(tmp_path: Path) -> None:
    f = lab(tmp_path, STAGE)
    assert daqhub("validate", str(f)).returncode == 0
    r = daqhub("validate", str(f), hide="daqhub-sims")
    assert r.returncode == 2
    assert f"{f}:4: no installed package serves sim:// ports ('sim://esp300')" in r.stderr
    assert "sim:// is provided by daqhub-sims: pip install daqhub-sims" in r.stderr


def test_ports_says_why_a_backend_is_unavailable_and_takes_lab_file_backends() -> None:
    r = daqhub("ports", "--json", "--backend", "@ivi", "--backend",
               "daqhub_sims:visa/dmm_psu.yaml@sim")
    assert r.returncode == 0, r.stderr
    ivi, sim = json.loads(r.stdout)["visa"]
    assert ivi["error"] and not ivi["error"].rstrip().endswith(":")
    assert "GPIB0::5::INSTR" in sim["resources"] and not sim["error"]
    r = daqhub("ports", "--backend", "@ivi")
    line = next(ln for ln in r.stdout.splitlines() if "not available" in ln)
    assert len(line.split("not available:", 1)[1].strip()) > 20, r.stdout


# --- 4. the live view ------------------------------------------------------------------

def run_in_terminal(args: list[str], cwd: Path, columns: int, timeout: float = 90) -> str:
    """What a user sees running daqhub in a terminal ``columns`` wide (ANSI codes removed)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "daqhub", *args], stdin=slave,
                            stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    return read_terminal(proc, master, timeout)


def read_terminal(proc: subprocess.Popen[bytes], master: int, timeout: float) -> str:
    """Everything ``proc`` writes to its terminal until it exits (0 expected)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))


def last_frame(screen: str) -> str:
    return screen[screen.rindex("daqhub - session"):]


@pytest.mark.timeout(150)
def test_live_view_last_frame_width_and_progress(tmp_path: Path) -> None:
    wide = run_in_terminal(["run", "--duration", "4"], tmp_path, 140)
    frame = last_frame(wide)
    assert re.search(r"daqhub - session \S+ - 4 s of 4 s", frame), frame
    assert "polls/s" in frame and "samples" in frame
    assert re.search(r"\brotator\s+v2\s+elliptec\.ell14\s+running", frame)  # type in full
    assert re.search(r"routine stage: step \d of 6 \(\w+\), cycle \d+", frame), frame
    assert "routine psu: done (1 cycle)" in frame
    narrow = last_frame(run_in_terminal(["run", "--duration", "2"], tmp_path, 70))
    table = narrow.split("queues:", 1)[0].splitlines()
    # fitted, not cropped: fl and type are left out whole, each value keeps its unit
    assert re.search(r"instrument +state +polls/s +last value +samples +err +rs/rc", narrow)
    assert re.search(r"\bdmm +running +[\d.]+ +[\d.]+ m?V +\d+ +0 +0/0", narrow), narrow
    assert "…" not in "".join(table) and max(len(ln.rstrip()) for ln in table) <= 70, narrow


@pytest.mark.timeout(120)
def test_a_terminal_too_narrow_for_the_table_gets_plain_lines(tmp_path: Path) -> None:
    """It got the table cropped: values without their unit prefix (``500 m``)."""
    screen = run_in_terminal(["run", "--duration", "2", "--interval", "10"], tmp_path, 30)
    assert "the live table needs 40: plain status lines every 10 s instead" in screen
    assert "daqhub - session" not in screen
    assert "stage: starting -> running" in screen            # --plain's state changes
    status = [ln for ln in screen.splitlines() if ln.startswith("[")]
    assert len(status) == 1 and "psu=running:" in status[0], screen  # the last one, once


def test_plain_prints_the_last_status_once_and_duration_ends_on_time(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = daqhub("run", "--plain", "--duration", "3", "--interval", "10", "--output-dir", "d",
               cwd=tmp_path)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    status = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert len(status) == 1 and re.match(r"\[\s+3\.\ds\]", status[0]), r.stdout
    assert took < 10     # not the 10 s interval


def test_help_explains_every_column_and_abbreviation() -> None:
    r = daqhub("run", "--help")
    legend = r.stdout.split("live view columns:", 1)[1]
    for word in ("fl ", "flavor", "polls/s", "successful reads per second", "samples",
                 "rs/rc", "restarts", "reconnects", "err", "!errors"):
        assert word in legend, word


# --- 5. migrate ------------------------------------------------------------------------

OLD_LAB = """\
# my lab: keep this comment
[daqhub]
output_dir = "data"   # on the big disk

[v2]
storage = "hdf5"

# the power meter behind the polariser
[[v2.instruments]]
id = "power"
type = "newport.1830c"
port = "sim://newport1830c"
wavelength_nm = 633   # HeNe

# the stage
[[v2.instruments]]
id = "stage"
type = "newport.esp300"
port = "sim://esp300"
axis = 1
"""


def test_migrate_keeps_comments_names_storage_change_and_refuses_overwrite(
        tmp_path: Path) -> None:
    src = lab(tmp_path, OLD_LAB, "old.toml")
    r = daqhub("migrate", str(src), "-o", str(tmp_path / "new.toml"))
    assert r.returncode == 0, r.stderr
    new = (tmp_path / "new.toml").read_text()
    for comment in ("# my lab: keep this comment", "# on the big disk", "# HeNe"):
        assert comment in new
    # each table's own comment lines moved with it
    assert re.search(r"# the power meter behind the polariser\n(.*\n)*?id = \"power\"", new)
    assert new.index("# the stage") < new.index('id = "stage"')
    assert new.index('id = "power"') < new.index("# the stage")
    assert "storage: power, stage now write(s) 'arrow' ([v4] storage) instead of 'hdf5'" \
        in r.stderr
    assert daqhub("validate", str(tmp_path / "new.toml")).returncode == 0
    again = daqhub("migrate", str(src), "-o", str(tmp_path / "new.toml"))
    assert again.returncode == 2 and "exists; use --force" in again.stderr
    assert (tmp_path / "new.toml").read_text() == new
    assert daqhub("migrate", str(src), "-o", str(tmp_path / "new.toml"),
                  "--force").returncode == 0


# --- 6. small things -------------------------------------------------------------------

@pytest.mark.parametrize("args", [["schema"], ["plugins", "--json"]])
def test_no_traceback_when_the_reader_closes_the_pipe(args: list[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "daqhub", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()          # like `| head` that has read enough
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_stale_lock_files_are_removed_by_inspect_and_the_next_run(tmp_path: Path) -> None:
    r = daqhub("run", "--duration", "1", "--output-dir", "d", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    v2 = next((tmp_path / "d" / "v2").iterdir())
    # a killed run leaves its lock files; the pid is one no process has any more
    stale = [v2 / "session.h5.lock", next((tmp_path / "d" / "v4").iterdir()) / "dmm" /
             "voltage.arrows.lock"]
    for p in stale:
        p.write_text("pid=999999999\nhost=x\nsince=2026-01-01T00:00:00Z\ncommand=daqhub run\n")
    r = daqhub("inspect", str(v2), cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    assert "its stale lock file is removed" in r.stdout
    assert not any(p.exists() for p in stale)
    stale[0].write_text("pid=999999999\n")
    assert daqhub("run", "--duration", "1", "--output-dir", "d", cwd=tmp_path).returncode == 0
    assert not stale[0].exists()


@pytest.mark.timeout(120)
def test_esp300_reaches_its_configured_10_hz_in_the_demo(tmp_path: Path) -> None:
    """The demo's stage routine waits for every move; the polls go on meanwhile."""
    r = daqhub("run", "--duration", "8", "--output-dir", "d", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    h5 = next((tmp_path / "d" / "v2").iterdir()) / "session.h5"
    with h5py.File(h5, "r") as f:
        t = f["stage/position/timestamp_ns"][:]
    rate = (len(t) - 1) / ((t[-1] - t[0]) / 1e9)
    # 9.0-9.2 Hz when a move's wait held the instrument's thread (no polls during moves)
    assert rate > 9.6, (rate, np.round(np.diff(t) / 1e9, 3))


# `daqhub run` with the simulated meter's cable pulled for 2 s after 2 s (the fault is the
# test's; everything else is the command as a user runs it)
CABLE_PULL_LAUNCHER = """
import sys, threading, time
from daqhub_sims import registry
from daqhub.cli import main
def pull():
    time.sleep(2)
    line = registry.endpoint("sim://newport1830c")
    line.faults.disconnect()
    time.sleep(2)
    line.faults.reconnect()
threading.Thread(target=pull, daemon=True).start()
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.timeout(120)
def test_last_error_clears_when_the_instrument_comes_back(tmp_path: Path) -> None:
    """The last frame counts the errors and the reconnect, but no longer shows the last
    error as if it still held."""
    f = lab(tmp_path, '[[v2.instruments]]\nid = "power"\ntype = "newport.1830c"\n'
                      'port = "sim://newport1830c"\npoll_hz = 10\n')
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "LINES": "50", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-c", CABLE_PULL_LAUNCHER, "run", str(f),
                             "--duration", "9", "--no-storage"], stdin=slave, stdout=slave,
                            stderr=slave, cwd=tmp_path, env=env, close_fds=True)
    os.close(slave)
    text = read_terminal(proc, master, timeout=90)
    assert re.search(r"^power: .*(failed|disconnect|reconnect)", text, re.M), text  # seen live
    frame = last_frame(text).split("shutdown report")[0]
    row = re.search(r"power\s+v2\s+newport\.1830c\s+running\s.*?(\d+)\s+(\d+)\s+(\d+)/(\d+)",
                    frame)
    assert row and int(row.group(2)) > 0 and int(row.group(4)) >= 1, frame   # errors, reconnect
    assert not re.search(r"^power: ", frame, re.M), frame
