"""What a run's record says of its end: ``budget.json`` holds every error and alarm of the
shutdown, and an instrument whose samples went missing on their way is not clean."""

from __future__ import annotations

import json
import threading
import types

import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, make_lab

from daqhub.hookspecs import hookimpl
from daqhub.runtime.dual import DualRuntimeManager
from daqhub.runtime.health import InstrumentHealth
from daqhub.runtime.outcome import instrument_outcome


@pytest.mark.timeout(30)
def test_budget_json_keeps_the_stop_notifications_errors_and_alarms(host, tmp_path) -> None:
    """It was saved before the stop notification: a stop hook that raised made the run exit
    1, and budget.json had no error; the alarm for a plugin still busy was missing too."""
    release = threading.Event()

    def raising(session_id, report):
        raise ConnectionError("mail server down")

    def busy(session_id, report):
        release.wait(30)

    stopped = hookimpl(specname="daqhub_session_stopped")
    host.register(types.SimpleNamespace(daqhub_session_stopped=stopped(raising)),
                  "alerts", "lab-alerts", "0.2")
    host.register(types.SimpleNamespace(daqhub_session_stopped=stopped(busy)),
                  "archive", "lab-archive", "0.1")
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[])
    rt = DualRuntimeManager(lab, host, storage=True)
    rt.start()
    try:
        wait_until(lambda: PRODUCED.get("a", 0) >= 3, what="3 polls")
        report = rt.shutdown()
    finally:
        release.set()
    assert not report.ok
    saved = json.loads((rt.output_dirs()["v2"] / "budget.json").read_text())
    assert saved["shutdown"]["errors"] == report.errors
    assert any("lab-alerts" in e and "mail server down" in e for e in report.errors)
    assert any("still busy at shutdown" in a["message"] and "archive" in a["message"]
               for a in saved["alarms"]), saved["alarms"]
    assert saved["shutdown"]["duration_s"] == report.duration_s


def test_samples_that_reached_neither_the_stream_nor_a_refusal_make_it_not_ok() -> None:
    """Produced 41, 21 in the stream, none refused: the outcome said ok."""
    h = InstrumentHealth("stage", "newport.esp300", "v2")
    h.set_state("running")
    h.produced(41, lambda of: ("", 0), None)
    h.set_state("stopped")
    assert instrument_outcome(h, {"position": 41})["ok"]
    lost = instrument_outcome(h, {"position": 21})
    assert not lost["ok"]
    assert lost["problem"] == "20 of its 41 samples never reached the stream (neither stored " \
        "nor refused)"
    assert instrument_outcome(h, {"position": 42})["ok"]  # the stream may count more
