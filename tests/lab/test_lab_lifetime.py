"""What a lab's end does to what the script still holds: live data, and a lab never closed.

Each test here failed on the code before it: iterating ``lab.subscribe()`` went on for ever
after the lab closed (a script whose thread iterated it never exited), and a script that
never closed its lab exited 0 with no report, its last seconds of data lost, its files not
closed and their lock files left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import pytest
from lab_fakes import GATED_TOML
from lab_texts import optics_lab

import daqhub
from daqhub.host import PluginHost
from daqhub.lab import LiveData

pytestmark = pytest.mark.timeout(120)

LAB_TESTS = Path(__file__).resolve().parent


def test_iterating_live_data_ends_when_the_lab_closes(tmp_path: Path, host: PluginHost) -> None:
    taken: list[int] = []
    first = threading.Event()

    def consume(live: LiveData) -> None:
        for batch in live:
            taken.append(batch.num_rows)
            first.set()

    with daqhub.open_lab(optics_lab(tmp_path, "v2"), host=host, report=None) as lab:
        live = lab.subscribe(["power"])
        reader = threading.Thread(target=consume, args=(live,), daemon=True)
        reader.start()
        assert first.wait(30), "no batch of the power meter"
    reader.join(10)
    assert not reader.is_alive(), "the iteration went on after the lab closed"
    t0 = time.monotonic()
    assert live.get(5.0) == []
    assert time.monotonic() - t0 < 1.0  # closed: no waiting for batches that cannot come
    late = lab.subscribe()
    assert list(late) == [] and late.get(5.0) == []


SCRIPT = '''
import asyncio, json, sys
import daqhub

def show(lab):
    lab.latest("power", wait=30)
    lab.latest("rotator", wait=30)
    print(json.dumps({"session": lab.session_id,
                      "dirs": [str(d) for d in lab.output_dirs().values()]}), flush=True)

async def main():
    show(await daqhub.open_lab_async(sys.argv[1]))

if sys.argv[2] == "async":
    asyncio.run(main())
else:
    show(daqhub.open_lab(sys.argv[1]))
# ... and the script ends, the lab never closed
'''


@pytest.mark.parametrize("opened", ["sync", "async"])
def test_a_lab_the_script_never_closed_is_closed_at_exit(tmp_path: Path, opened: str) -> None:
    out = tmp_path / "data"
    lab_file = tmp_path / "lab.toml"
    lab_file.write_text(optics_lab(out, "v4"))
    script = tmp_path / "forgetful.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.run([sys.executable, str(script), str(lab_file), opened],
                          capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout.splitlines()[0])
    assert f"session {shown['session']} was still open as the script ended" in proc.stderr
    assert "shutdown report" in proc.stderr and "NOT OK" not in proc.stderr, proc.stderr
    assert not list(out.rglob("*.lock"))
    v2_dir, v4_dir = (Path(d) for d in shown["dirs"])
    with h5py.File(v2_dir / "session.h5", "r") as f:
        assert int(f.attrs["closed"]) == 1
    budget = json.loads((v2_dir / "budget.json").read_text())
    counted = {f"{iid}.{ch}": n for iid, chans in budget["shutdown"]["counts"].items()
               for ch, n in chans.items()}
    stored = {name: t.num_rows for name, t in daqhub.read_session(v2_dir).items()}
    assert stored == counted and all(n > 0 for n in stored.values())


ENDINGS = '''
import os, sys, threading, time
import daqhub

lab = daqhub.open_lab(sys.argv[1])
lab.latest("power", wait=30)
if sys.argv[2] == "thread":  # a (non-daemon) thread iterating the live data
    threading.Thread(target=lambda: sum(1 for _ in lab.subscribe(["power"]))).start()
elif sys.argv[2] == "closing":  # the script ends while a daemon thread closes the lab
    threading.Thread(target=lab.close, daemon=True).start()
    while not lab.closing:
        time.sleep(0.01)
elif sys.argv[2] == "fork":  # a child that copies the lab and exits
    child = os.fork()
    if child == 0:
        sys.exit(0)
    os.waitpid(child, 0)
    print("child gone", flush=True)
    lab.close()
'''


@pytest.mark.parametrize("ending", ["thread", "closing", "fork"])
def test_a_script_ends_once_and_its_lab_is_closed_once(tmp_path: Path, ending: str) -> None:
    """A non-daemon thread iterating an unclosed lab's live data: Python waits for it before
    ``atexit`` functions run, and the lab was closed in one: the script never ended. A close
    under way on a daemon thread as the script ended was cut short (no report, lock files
    left). A forked child that exited closed its copy of its parent's lab: the whole budget,
    and a NOT OK report of a session its parent still ran."""
    out = tmp_path / "data"
    lab_file = tmp_path / "lab.toml"
    lab_file.write_text(optics_lab(out, "v2"))
    script = tmp_path / "ending.py"
    script.write_text(textwrap.dedent(ENDINGS))
    proc = subprocess.run([sys.executable, str(script), str(lab_file), ending],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("shutdown report") == 1, proc.stderr
    assert "NOT OK" not in proc.stderr, proc.stderr
    assert not list(out.rglob("*.lock"))
    if ending == "fork":
        assert proc.stdout.strip() == "child gone"
        assert "still open" not in proc.stderr


STUCK = '''
import sys, types
sys.path.insert(0, sys.argv[2])
import daqhub
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from lab_fakes import GatedV2, fake_types

host = PluginHost()
host.load_entry_points()
host.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(fake_types)), "lab-tests",
              "lab-tests", "0")
lab = daqhub.open_lab(sys.argv[1], host=host)
lab["gated"].send("move_absolute", 1.0)
assert GatedV2.moving.wait(30)
print("moving", flush=True)
# the script ends with the move held (30 s): its close is forced within shutdown_timeout
'''


def test_closing_at_exit_is_bounded_by_the_shutdown_timeout(tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.toml"
    lab_file.write_text(optics_lab(tmp_path / "data", "v2", extra=GATED_TOML))
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(STUCK))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(script), str(lab_file), str(LAB_TESTS)],
                          capture_output=True, text=True, timeout=90, cwd=tmp_path)
    took = time.monotonic() - t0
    assert proc.stdout.strip() == "moving", proc.stderr
    assert "shutdown report" in proc.stderr and "forced: gated" in proc.stderr, proc.stderr
    assert took < 25  # the lab's shutdown_timeout is 10 s; the held move lasts 30 s
