"""A plugin that raises (a notification hook, a converter) is reported by name, and the
run goes on."""

from __future__ import annotations

import time
import types

import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, bare_bridge, make_lab

from daqhub.hookspecs import hookimpl
from daqhub.instrument import DriverTimeoutError, V2Instrument
from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.plugins.converters import rows_to_batch
from daqhub.runtime.broadcast import Broadcast
from daqhub.runtime.dual import DualRuntimeManager
from daqhub.runtime.health import failure_text
from daqhub.runtime.v2 import V2Worker
from daqhub.specs import InstrumentContext, InstrumentType


@pytest.mark.timeout(30)
@pytest.mark.parametrize("hook", ["daqhub_session_started", "daqhub_session_stopped"])
def test_a_raising_notification_hook_is_an_alarm_and_a_report_error(hook, host,
                                                                    tmp_path) -> None:
    """The stop notification comes after the report is judged: what it raises still makes
    the report (and the run's exit code) say so, as for the start notification."""
    def raising():
        raise ConnectionError("mail server down")

    host.register(types.SimpleNamespace(**{hook: hookimpl(specname=hook)(raising)}),
                  "alerts", "lab-alerts", "0.2")
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[])
    rt = DualRuntimeManager(lab, host)
    rt.start()
    wait_until(lambda: PRODUCED.get("a", 0) > 3, what="the run going on regardless")
    if hook == "daqhub_session_started":
        [alarm] = [a for a in rt.alarms if a["what"] == "plugin:lab-alerts"]
        assert "lab-alerts 0.2 (alerts)" in alarm["message"]
        assert f"{hook} raised ConnectionError: mail server down" in alarm["message"]
    report = rt.shutdown()
    assert not report.ok
    assert any("lab-alerts" in e and f"{hook} raised ConnectionError: mail server down" in e
               for e in report.errors), report.errors
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

    bridge, v2_in, out, errors = bare_bridge({("a", "x"): good, ("a", "y"): bad}, convert)
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


class BuggyV2(V2Instrument):
    """A driver with a bug: a key it never set."""

    def read(self) -> list[Measurement]:
        return {}["gain"]  # type: ignore[no-any-return]


@pytest.mark.timeout(30)
def test_a_driver_bug_is_named_by_its_type_and_line_not_only_its_message() -> None:
    """``read failed: 'gain'`` said nothing of a KeyError in the driver; a device error
    keeps its own message, which names the instrument, command and port."""
    spec = ChannelSpec("x", "scalar", "V")
    itype = InstrumentType("test.buggy", "v2", "none", BuggyV2, [spec], "a bug")
    worker = V2Worker(itype, InstrumentContext("b", "test.buggy", {"id": "b"}, [spec]), 50,
                      Broadcast("v2"), lambda *event: None)
    worker.start()
    try:
        wait_until(lambda: worker.health.errors > 0, what="the first failed read")
    finally:
        worker.stop_event.set()
        worker.wake_event.set()
        worker.thread.join(5)
    line = BuggyV2.read.__code__.co_firstlineno + 1
    assert worker.health.last_error == (f"read failed: KeyError: 'gain' (at "
                                        f"test_plugin_failures.py:{line} in read)")
    assert failure_text(DriverTimeoutError("m", "P?", "no reply in 1 s", "timeout")) == \
        str(DriverTimeoutError("m", "P?", "no reply in 1 s", "timeout"))


@pytest.mark.timeout(60)
def test_a_command_refusing_its_values_and_a_command_bug_read_alike_in_both_flavors(
        host, tmp_path) -> None:
    """A ValueError from a command is the driver refusing what it was given (the lab guide
    says so): the health line is its message. Any other exception is a bug, named by type
    and line. The v4 runner used to give a bug's message alone ("'gain'") and v2 gave a
    refusal the bug's file and line."""
    lab = make_lab(host, tmp_path, v2=[("c2", "test.counter")], v4=[("c4", "test.counter")])
    rt = DualRuntimeManager(lab, host)
    rt.start()
    try:
        wait_until(lambda: set(rt.counts()) == {"c2", "c4"}, what="samples of c2 and c4")
        lines = {}
        for iid in ("c2", "c4"):
            with pytest.raises(ValueError, match="gain must be from 0 to 10, got 99"):
                rt.call(iid, "set_gain", 99)
            refused = rt.health_of(iid).last_error
            with pytest.raises(KeyError):
                rt.call(iid, "buggy")
            lines[iid] = (refused, rt.health_of(iid).last_error)
    finally:
        assert rt.shutdown().ok
    for refused, bug in lines.values():
        assert refused == "set_gain failed: gain must be from 0 to 10, got 99"
        assert bug.startswith("buggy failed: KeyError: 'gain' (at runtime_fakes.py:")
        assert bug.endswith(" in buggy)")

