"""A plugin that raises (a notification hook, a converter) is reported by name, and the
run goes on."""

from __future__ import annotations

import time
import types

import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, make_lab

from daqhub.hookspecs import hookimpl
from daqhub.measurement import ChannelSpec, Measurement, Scalar, V2Read
from daqhub.plugins.converters import rows_to_batch
from daqhub.runtime.bridge import MeasurementBridge
from daqhub.runtime.broadcast import Broadcast
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


@pytest.mark.timeout(30)
def test_a_converter_that_raises_loses_that_channels_samples_not_the_bridge() -> None:
    """The v2 rows converter is a plugin: its bug costs the samples it failed on (reported
    by instrument and channel), never the bridge thread every v2 instrument's data needs."""
    good, bad = ChannelSpec("x", "scalar", "V"), ChannelSpec("y", "scalar", "V")

    def convert(rows, spec):
        if spec.name == "y":
            raise TypeError("cannot handle this")
        return rows_to_batch(rows, spec)

    errors: list[tuple[str, str]] = []
    v2_in: Broadcast[V2Read] = Broadcast("v2")
    bridge = MeasurementBridge({("a", "x"): good, ("a", "y"): bad}, v2_in, convert,
                               window_s=0.01, on_error=lambda iid, msg: errors.append((iid, msg)))
    out = bridge.unified.subscribe("test", lossless=True, capacity=100)
    bridge.start()
    try:
        for t in range(1, 4):
            v2_in.publish(("a", [Measurement("a", "x", t, Scalar(1.0 * t, "V")),
                                 Measurement("a", "y", t, Scalar(2.0, "V"))]))
        got: list[float] = []
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            got += [v for b in out.get_many(0.2) for v in b.column("value").to_pylist()]
        assert got == [1.0, 2.0, 3.0] and bridge.thread.is_alive()
    finally:
        assert bridge.stop(5)
    assert errors and all(iid == "a" for iid, _ in errors)
    assert "channel 'y': the converter raised TypeError: cannot handle this" in errors[0][1]
    assert bridge.rejected == 3
