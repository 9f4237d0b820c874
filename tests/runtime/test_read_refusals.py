"""A hand-written driver's ``read()`` that raises ``DataError`` (its own check: "data
contradicts the channel") lost that poll's values: refused samples, so the run is not ok
(exit 1), in either flavor and in a worker process alike, and not a failed read (the device
answered: three in a row do not make the runtime reconnect).

Until 2026-12-07 it counted as a failed read, like a reply timeout: three in a row
reconnected the device, and once reads worked again the run said ok, exit 0, the values
lost without a word. Also: refusals of a channel not declared read alike in both flavors
(one wording, ``health.refused_text``), and the V4 runtime's waits leave no coroutine never
awaited when its loop stops under them.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until

import daqhub
from daqhub.host import PluginHost
from daqhub.instrument import V4Actor
from daqhub.runtime.outcome import report_line
from daqhub.runtime.restarts import RestartPolicy
from daqhub.runtime.v4 import V4Runtime
from daqhub.specs import InstrumentContext, InstrumentType

PLUGIN = Path(__file__).parent / "read_refusals"
GOOD_POLLS = 3  # good polls after the refused ones before the lab stops


@pytest.fixture
def refusals_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PluginHost:
    """The ``read_refusals`` test plugin installed (entry point and all) for this process
    and the worker processes it starts; its plugin host."""
    site = tmp_path / "site"
    info = site / "daqhub_read_refusals-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: daqhub-read-refusals\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[daqhub]\nread_refusals = read_refusals_plugin\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(site), str(PLUGIN), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(site))
    import read_refusals_plugin

    read_refusals_plugin.POLLS.clear()
    host = PluginHost()
    host.load_entry_points()
    return host


def lab_text(tmp_path: Path, workers: int, name: str) -> str:
    """One instrument of type ``read_refusals.<name>`` per flavor: ``a2`` and ``a4``."""
    return f'[daqhub]\noutput_dir = "{tmp_path / "data"}"\nworkers = {workers}\n' + "".join(
        f'[[{flavor}.instruments]]\nid = "a{flavor[1]}"\ntype = "read_refusals.{name}"\n'
        "poll_hz = 50\n" for flavor in ("v2", "v4"))


def run_until(host: PluginHost, text: str, produced: int
              ) -> tuple[Any, dict[str, Any], list[str]]:
    """Open the lab, wait until each instrument produced ``produced`` samples (refused ones
    counted: a worker's count is mirrored, nothing signals it), close it: its report, each
    instrument's outcome, and the instruments that ran in worker processes."""
    with daqhub.open_lab(text, host=host, report=None) as lab:
        rt = lab.rt
        wait_until(lambda: all(rt.health_of(i).measurements >= produced for i in ("a2", "a4")),
                   f"{produced} samples produced by each instrument", timeout=60)
        in_workers = sorted(i for w in rt.pool.workers for i in w.shard.ids) if rt.pool else []
    report = lab.report
    assert report is not None
    return report, {o["id"]: o for o in report.instruments}, in_workers


@pytest.mark.timeout(180)
@pytest.mark.parametrize("workers", [1, 2], ids=["in process", "in worker processes"])
def test_a_read_that_raises_data_error_is_refused_samples_and_the_run_not_ok(
        refusals_host: PluginHost, tmp_path: Path, workers: int) -> None:
    from read_refusals_plugin import REFUSED_POLLS

    refused = len(REFUSED_POLLS)
    report, outcome, in_workers = run_until(
        refusals_host, lab_text(tmp_path, workers, "refuses"), max(REFUSED_POLLS) + GOOD_POLLS)
    assert in_workers == ([] if workers == 1 else ["a2", "a4"])
    assert not report.ok  # what makes `daqhub run` exit 1
    for iid in ("a2", "a4"):
        o = outcome[iid]
        assert (o["refused_samples"], o["errors"]) == (refused, refused), o
        assert o["problem"] == (f"{refused} of its samples refused, not stored (its errors "
                                "say why)"), o
        # the device answered every time: no "3 reads failed in a row", no reconnect
        assert (o["state"], o["reconnects"], o["restarts"]) == ("stopped", 0, 0), o
        assert "disconnected" not in o["event_counts"], o["events"]
        assert o["last_error"] == (f"rejected a read's samples: {iid}: data contradicts the "
                                   f"channel (poll {max(REFUSED_POLLS)})")
        assert o["samples"] == o["produced"] - refused >= GOOD_POLLS + 1
        assert "NOT OK: 3 of its samples refused" in report_line(o)


@pytest.mark.timeout(120)
def test_samples_of_a_channel_not_declared_are_refused_in_one_wording_in_both_flavors(
        refusals_host: PluginHost, tmp_path: Path) -> None:
    """The bridge (v2) said "rejected 1 sample(s) of undeclared channel 'bogus'", the v4
    runner "rejected 1 sample(s): channel a4.bogus was not declared ...": one refusal, two
    texts, neither worded by the rule every other refusal follows."""
    report, outcome, _ = run_until(refusals_host, lab_text(tmp_path, 1, "stray"), 6)
    assert not report.ok
    for iid in ("a2", "a4"):
        o = outcome[iid]
        assert o["refused_samples"] >= 3 and o["samples"] >= 3, o
        assert o["last_error"].endswith(
            f"sample(s) of channel 'bogus': channel {iid}.bogus was not declared "
            f"(declared: {iid}.x)"), o["last_error"]
        assert o["last_error"].startswith("rejected "), o["last_error"]


def test_refused_values_live_beside_data_error_and_the_runtimes_need_no_toolkit() -> None:
    """The runtimes imported the driver toolkit (``daqhub.driver.flavors``) for the
    exception a toolkit read refuses values with; it is the data's, beside ``DataError``,
    and still where a toolkit author found it."""
    code = ("import sys, daqhub.runtime.v2, daqhub.runtime.v4, daqhub.runtime.bridge\n"
            "print(sorted(m for m in sys.modules if m.startswith('daqhub.driver')))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, check=True).stdout
    assert imported.strip() == "[]"
    from daqhub.driver import flavors
    from daqhub.measurement import DataError, RefusedValues

    assert flavors.RefusedValues is RefusedValues and issubclass(RefusedValues, DataError)


class _Holds(V4Actor):
    """A read that never ends by itself (its read timeout is an hour)."""

    async def read(self) -> list[Any]:
        await asyncio.Event().wait()
        return []


def holding_runtime() -> V4Runtime:
    """A started V4 runtime of one actor, ``a``, in a read that does not end."""
    rt = V4Runtime(None, lambda *_: None, RestartPolicy(read_timeout_s=3600))
    itype = InstrumentType("test.holds", "v4", "none", _Holds, [], "reads for ever")
    rt.add(itype, InstrumentContext("a", "test.holds", {}, []), 10)
    rt.start()
    wait_until(lambda: rt.runners["a"].busy_in == "read", "the actor in its read")
    return rt


@pytest.mark.timeout(60)
def test_waits_on_a_loop_gone_since_it_was_seen_running_leave_no_coroutine_unawaited(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop stopped (here: and closed) between ``wait``'s or ``force``'s look at it and
    their handing it a coroutine: ``coroutine 'V4Runtime.wait.<locals>.gather' was never
    awaited``, a RuntimeWarning at exit."""
    rt = holding_runtime()
    assert rt.force(["a"], 30) == []
    assert rt.close()
    monkeypatch.setattr(rt.loop, "is_running", lambda: True)  # as it was when looked at
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert rt.wait(3600) == []  # at once: nothing will ever run on a closed loop
        assert rt.force(["a"], 3600) == []
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


def wait_as_the_loop_stops() -> tuple[bool, list[list[str]]]:
    """A ``wait`` whose work the loop gets just before it stops, on a thread of its own:
    whether it still waits after 30 s (a bound for a failing test, not a timing: it asked
    for an hour), and what it returned."""
    rt = holding_runtime()
    loop = rt.loop
    schedule = loop.call_soon_threadsafe

    def then_stop(callback: Any, *args: Any, **kwargs: Any) -> Any:
        handle = schedule(callback, *args, **kwargs)
        schedule(loop.stop)  # queued behind the wait's own work: the loop stops after it
        return handle

    loop.call_soon_threadsafe = then_stop  # type: ignore[method-assign]
    left: list[list[str]] = []
    waiting = threading.Thread(target=lambda: left.append(rt.wait(3600)), daemon=True)
    waiting.start()
    waiting.join(30)
    assert rt.close()
    return waiting.is_alive(), left


@pytest.mark.timeout(60)
def test_a_wait_ends_when_the_loop_stops_under_it() -> None:
    """The loop stopped right after ``wait`` handed it its work: the wait waited its whole
    timeout (a shutdown's budget) for a loop that was gone, and left a coroutine never
    awaited."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        still_waiting, left = wait_as_the_loop_stops()
        gc.collect()  # the actor's task, pending on a closed loop, is dropped here
    assert not still_waiting, "wait() still waiting though the loop ended"
    assert left == [["a"]]
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
