"""A notification plugin that raises is reported in the run's alarms and report, by name."""

from __future__ import annotations

import types

import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, make_lab

from daqhub.hookspecs import hookimpl
from daqhub.runtime.dual import DualRuntimeManager


@pytest.mark.timeout(30)
def test_a_raising_notification_hook_is_an_alarm_and_a_report_error(host, tmp_path) -> None:
    @hookimpl
    def daqhub_session_started(session_id):
        raise ConnectionError("mail server down")

    host.register(types.SimpleNamespace(daqhub_session_started=daqhub_session_started),
                  "alerts", "lab-alerts", "0.2")
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[])
    rt = DualRuntimeManager(lab, host)
    rt.start()
    wait_until(lambda: PRODUCED.get("a", 0) > 3, what="the run going on regardless")
    [alarm] = [a for a in rt.alarms if a["what"] == "plugin:lab-alerts"]
    assert "lab-alerts 0.2 (alerts)" in alarm["message"]
    assert "daqhub_session_started raised ConnectionError: mail server down" in alarm["message"]
    report = rt.shutdown()
    assert any("lab-alerts" in e and "mail server down" in e for e in report.errors)
    assert rt._plugin_failed not in host.notify_listeners  # the host outlives the run
