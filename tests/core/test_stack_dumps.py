"""A test that hangs under pytest-xdist is reported with the stacks of its threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

HANGING = '''
import threading
import time

import pytest


def waits_for_a_reply_that_never_comes(done: threading.Event) -> None:
    done.wait()


@pytest.mark.timeout(4)
def test_hangs() -> None:
    done = threading.Event()
    helper = threading.Thread(target=waits_for_a_reply_that_never_comes, args=(done,),
                              name="reply-reader", daemon=True)
    helper.start()
    time.sleep(60)


def test_passes() -> None:
    assert True
'''


def test_a_hung_test_under_xdist_is_reported_with_every_threads_stack(tmp_path: Path) -> None:
    (tmp_path / "test_hanging.py").write_text(HANGING)
    (tmp_path / "pytest.ini").write_text("[pytest]\ntimeout = 60\ntimeout_method = thread\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # run from an xdist worker (the README's command), the nested run is its own main process
    for name in ("DAQHUB_TEST_STACK_DUMPS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
                 "PYTEST_XDIST_TESTRUNUID"):
        env.pop(name, None)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "stack_dumps",
         "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=50)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "crashed while running 'test_hanging.py::test_hangs'" in out, out
    assert "stacks before the timeout" in out, out
    # the main thread where it hung, and the helper thread where it waited
    assert "in test_hangs" in out, out
    assert "in waits_for_a_reply_that_never_comes" in out, out
    assert not list(scratch.glob("daqhub-test-stacks-*")), "dump folder left behind"
