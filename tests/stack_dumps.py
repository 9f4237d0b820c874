"""Stack dumps of a hung test under pytest-xdist (a pytest plugin of the suite).

pytest-timeout (``timeout_method = "thread"``) prints every thread's stack and ends the
process. In an xdist worker that print goes nowhere (the worker's output is not the
terminal), and the report only says that the worker crashed. So a worker also has
faulthandler write every thread's stack to a file shortly before the test's timeout, and the
main process attaches that file to the crashed test's report. Run without xdist, nothing
here acts: pytest-timeout's own print shows.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path

import pytest

#: where the xdist workers write the stacks of a test about to time out (set by the main
#: process for its workers)
STACK_DUMPS_ENV = "DAQHUB_TEST_STACK_DUMPS"
#: how long before its timeout a test's threads are dumped (pytest-timeout ends it then)
DUMP_AHEAD_S = 1.0


class Role:
    """This process's part: the main process keeps the folder, a worker writes into it."""

    folder: Path | None = None
    worker = ""  # the xdist worker id ("gw0"), or "" in the main process


def pytest_configure(config: pytest.Config) -> None:
    # xdist gives its workers ``config.workerinput``; the environment cannot tell, since a
    # test may run pytest itself from inside a worker
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:  # the main process, before it starts its workers
        Role.folder = Path(tempfile.mkdtemp(prefix="daqhub-test-stacks-"))
        os.environ[STACK_DUMPS_ENV] = str(Role.folder)
    else:
        Role.worker = str(workerinput["workerid"])
        folder = os.environ.get(STACK_DUMPS_ENV)
        Role.folder = Path(folder) if folder else None


def pytest_unconfigure(config: pytest.Config) -> None:
    if not Role.worker and Role.folder is not None:
        shutil.rmtree(Role.folder, ignore_errors=True)
        os.environ.pop(STACK_DUMPS_ENV, None)
    Role.folder = None


def timeout_of(item: pytest.Item) -> float:
    """The test's pytest-timeout bound: its ``timeout`` mark, else the ini's (0: none)."""
    mark = item.get_closest_marker("timeout")
    if mark is not None:
        value = mark.args[0] if mark.args else mark.kwargs.get("timeout", 0)
    else:
        value = item.config.getini("timeout") or 0
    return float(value or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, None, None]:
    """In a worker: every thread's stack to a file ``DUMP_AHEAD_S`` before the timeout."""
    timeout = timeout_of(item)
    if not (Role.worker and Role.folder is not None and timeout > DUMP_AHEAD_S):
        yield
        return
    path = Role.folder / f"{Role.worker}.txt"
    with path.open("w") as dump:
        dump.write(f"{item.nodeid}: every thread {DUMP_AHEAD_S:g} s before its {timeout:g} s "
                   "timeout\n")
        dump.flush()
        faulthandler.dump_traceback_later(timeout - DUMP_AHEAD_S, file=dump)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
    path.unlink(missing_ok=True)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In the main process: a worker that died in a test left its stacks; show them."""
    if Role.worker or Role.folder is None or not report.failed:
        return
    if "crashed while running" not in str(report.longrepr):
        return
    for dump in sorted(Role.folder.glob("*.txt")):
        text = dump.read_text(errors="replace")
        if text.startswith(f"{report.nodeid}:"):
            report.sections.append(("stacks before the timeout", text))
