"""Each way a run used to lie (exit 0, "stopped cleanly") now tells the truth.

Run as a lab user runs it: `daqhub run` in a subprocess, on a lab file, reading the exit
code, the report and budget.json.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from run_helpers import budget_of, run_lab

GOOD = '[[v2.instruments]]\nid = "good"\ntype = "liar.good"\npoll_hz = 20\n'
HEAD = '[daqhub]\noutput_dir = "data"\n'

LIES = {
    # a v2 read() that raises on every poll
    "raises": ('[[v2.instruments]]\nid = "bad"\ntype = "liar.raises"\npoll_hz = 20\n',
               "produced no data", "garbled reply"),
    # every sample rejected by the channel declaration
    "undeclared": ('[[v2.instruments]]\nid = "bad"\ntype = "liar.undeclared"\npoll_hz = 20\n',
                   "none of its", "of channel 'bogus': channel bad.bogus was not declared"),
    # a v4 read() that awaits forever
    "forever": ('[[v4.instruments]]\nid = "bad"\ntype = "liar.forever"\npoll_hz = 20\n'
                'restart = {read_timeout_s = 0.3}\n', "produced no data",
                "did not finish within 0.3 s and was cancelled"),
    # an instrument that sits in `reconnecting` the whole run (no device at its address)
    "absent": ('[[v2.instruments]]\nid = "bad"\ntype = "elliptec.ell14"\n'
               'port = "sim://elliptec?name=absent&devices=0:ELL14"\naddress = 7\n',
               "never connected", "connect failed"),
}


def run_text(tmp_path: Path, env: dict[str, str], text: str, duration: str = "2"
             ) -> subprocess.CompletedProcess[str]:
    lab = tmp_path / "lab.toml"
    lab.write_text(text)
    return run_lab(env, lab, "--duration", duration)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_broken_instrument_makes_the_run_exit_1_and_is_named(
        lie: str, tmp_path: Path, liars_env: dict[str, str]) -> None:
    block, problem, error = LIES[lie]
    r = run_text(tmp_path, liars_env, HEAD + GOOD + block, "2.5")
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    line = next(x for x in out.splitlines() if x.startswith("  bad ("))
    assert f"NOT OK: {problem}" in line and error in line, line
    assert re.search(r"stopped cleanly: good$", out, re.M), out   # never the broken one
    good = next(x for x in out.splitlines() if x.startswith("  good ("))
    assert "NOT OK" not in good and re.search(r"stopped, [1-9]\d* samples", good), good
    budget = budget_of(out)
    entry = {i["id"]: i for i in budget["instruments"]}["bad"]
    assert not entry["ok"] and entry["problem"].startswith(problem.split()[0])
    assert error in entry["last_error"] and entry["errors"] > 0
    # --plain shows the bad one's changes of state with their reason
    changes = [x for x in out.splitlines() if re.match(r"\d\d:\d\d:\d\d bad: ", x)]
    assert changes[-1].endswith("-> stopped: shut down"), changes
    assert lie == "undeclared" or any(error in c for c in changes), changes


@pytest.mark.timeout(120)
def test_a_routine_that_fails_on_its_first_step_makes_the_run_exit_1(
        tmp_path: Path, liars_env: dict[str, str]) -> None:
    r = run_text(tmp_path, liars_env,
                 HEAD + GOOD + '[[routines]]\ninstrument = "good"\nsteps = [["explode"]]\n')
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"routine good: failed, 0 cycle\(s\)  <- NOT OK: failed: step explode"
                     r".*code 42", r.stdout), r.stdout
    assert budget_of(r.stdout)["routines"][0]["state"] == "failed"


@pytest.mark.timeout(120)
def test_a_good_lab_exits_0_with_one_budget_json_holding_every_instrument(
        tmp_path: Path, liars_env: dict[str, str]) -> None:
    r = run_text(tmp_path, liars_env,
                 HEAD + GOOD + '[[v4.instruments]]\nid = "good4"\ntype = "liar.good"\n')
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"stopped cleanly: (good, good4|good4, good)$", r.stdout, re.M)
    found = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("budget.json"))
    assert len(found) == 1, found                      # one per session, not one per flavor
    budget = budget_of(r.stdout)
    assert {i["id"]: i["state"] for i in budget["instruments"]} == {"good": "stopped",
                                                                    "good4": "stopped"}
    assert all(i["ok"] and i["samples"] > 0 for i in budget["instruments"])


def _refused_port() -> str:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        return f"socket://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("order", ["v2 first", "v4 first"])
def test_every_instrument_that_cannot_start_reports_its_own_cause(
        order: str, tmp_path: Path, liars_env: dict[str, str]) -> None:
    v2 = (f'[[v2.instruments]]\nid = "meter2"\ntype = "newport.1830c"\n'
          f'port = "{_refused_port()}"\n')
    v4 = (f'[[v4.instruments]]\nid = "meter4"\ntype = "newport.1830c"\n'
          f'port = "{_refused_port()}"\n')
    r = run_text(tmp_path, liars_env, HEAD + GOOD + (v2 + v4 if order == "v2 first" else v4 + v2),
                 "1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "could not start the lab:" in r.stderr
    for iid in ("meter2", "meter4"):
        assert re.search(rf"^  {iid}: cannot open serial port .*Connection refused", r.stderr,
                         re.M), r.stderr
    assert "Traceback" not in r.stderr and "cannot join thread" not in r.stderr, r.stderr


def before_daqhub(returncode: int, err: str) -> bool:
    """An interrupt that came before ``daqhub.__main__`` installed its SIGINT handling: in
    the interpreter's start-up (no handler yet: killed by SIGINT, -2), in ``site``, the
    console script or ``runpy``, or importing the package itself (``daqhub/__init__``,
    ``daqhub.interrupt``). Anything later ending in a traceback is a failure."""
    import signal

    import daqhub

    if returncode == -signal.SIGINT and not err or "Fatal Python error: init_" in err:
        return True
    if "Traceback" not in err:
        return False
    package = Path(daqhub.__file__).parent
    ours = [(Path(f), line, fn) for f, line, fn in
            re.findall(r'File "([^"]+)", line (\d+), in (\S+)', err)
            if Path(f).parent == package]
    if not ours:
        return True  # site, the script's own imports, runpy finding the package
    import inspect

    import daqhub.__main__

    path, line, function = ours[-1]
    handler_from = inspect.getsourcelines(daqhub.__main__.main)[1]
    return path.name in ("__init__.py", "interrupt.py") or (
        path.name == "__main__.py" and function == "<module>" and int(line) < handler_from)


@pytest.mark.timeout(300)
def test_ctrl_c_at_any_moment_ends_with_a_documented_exit_code_and_no_traceback(
        tmp_path: Path, liars_env: dict[str, str]) -> None:
    import signal
    import sys
    import time

    lab = tmp_path / "lab.toml"
    lab.write_text(HEAD + GOOD + '[[v4.instruments]]\nid = "good4"\ntype = "liar.good"\n')
    seen = set()
    # from interpreter start-up (imports, plugin loading), through start, the run, to shutdown
    # both ways in: the console script and python -m, in turn
    script = [str(Path(sys.executable).parent / "daqhub")]
    for n, delay in enumerate((0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.2, 0.3, 0.4, 0.5,
                               0.8, 1.2, 1.8, 2.6, "shutdown", "report")):
        command = script if n % 2 else [sys.executable, "-m", "daqhub"]
        proc = subprocess.Popen(
            [*command, "run", "--plain", str(lab), "--duration", "2.5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=liars_env,
            cwd=tmp_path)
        head = ""
        try:
            if delay in ("shutdown", "report"):  # as the run stops; as it reports
                assert proc.stdout is not None
                mark = "shutting down" if delay == "shutdown" else "shutdown report"
                while mark not in head:
                    line = proc.stdout.readline()
                    assert line, (delay, head)
                    head += line
            else:
                time.sleep(delay)  # the moment of the interrupt is what is under test
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
            out = head + out
        finally:
            if proc.poll() is None:
                proc.kill()
        if before_daqhub(proc.returncode, err):
            continue  # the interpreter's own start-up, before any daqhub code could run
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, (delay, err)
        if "shutdown report" in out:
            assert proc.returncode in (0, 1), (delay, proc.returncode, out, err)
            assert (proc.returncode == 0) == ("NOT OK" not in out), (delay, out)
        else:
            assert proc.returncode == 130 and "interrupted" in err or "stopping" in err, \
                (delay, proc.returncode, out, err)
        seen.add(proc.returncode)
    assert 130 in seen and seen & {0, 1}, seen   # both before and after the run started
