"""What the runtime says about an instrument that lost its link, or whose module stopped
answering: true in both flavors, and said once.

Found by an audit scripting an Elliptec bus under faults: a 0.3 s outage was "0.0 s
disconnected" for the v2 mount and 0.4 s for the v4 ones beside it; a v2 connect that failed
in 0.2 s was reported every 10 s as "connect() has not returned", pointing at the runtime's
own backoff; and a module that did not answer its stop at shutdown printed an
``InvalidStateError`` traceback from the stop's thread, its failure said nowhere.
"""

from __future__ import annotations

import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from polling import wait_until

from daqhub.config import parse
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.instrument import (
    DriverDisconnectedError,
    DriverError,
    V2Instrument,
    V4Actor,
    now_ns,
)
from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.runtime.dual import DualRuntimeManager
from daqhub.runtime.restarts import RestartPolicy
from daqhub.schema import build_batch
from daqhub.specs import InstrumentType

CHANNEL = ChannelSpec("x", "scalar", "V")
#: ids whose next read finds the link gone (the port pulled for one read)
LINK_LOST_ONCE: set[str] = set()


def lost_link(instrument_id: str) -> None:
    if instrument_id in LINK_LOST_ONCE:
        LINK_LOST_ONCE.discard(instrument_id)
        raise DriverDisconnectedError(instrument_id, "MEAS?", "serial port is disconnected")


class BlipV2(V2Instrument):
    def connect(self) -> None:
        self.n = 0

    def read(self) -> list[Measurement]:
        lost_link(self.id)
        self.n += 1
        return [Measurement(self.id, "x", now_ns(), Scalar(float(self.n), "V"))]


class BlipV4(V4Actor):
    async def start(self) -> None:
        self.n = 0

    async def read(self) -> Any:
        lost_link(self.id)
        self.n += 1
        return [build_batch(self.id, CHANNEL, [now_ns()], np.array([float(self.n)]))]


class AbsentV2(BlipV2):
    def connect(self) -> None:
        raise DriverError(self.id, "5in", "no reply from address 5 within 0.20 s")


#: lets an ``outage.late`` driver's connect() return
CONNECTED = threading.Event()


class LateV2(BlipV2):
    def connect(self) -> None:
        CONNECTED.wait(60)  # a controller that takes its time to answer its first query
        super().connect()

    def stop(self) -> None:
        """Stops the axis (queued: not a toolkit driver)."""


def outage_types() -> list[InstrumentType]:
    return [InstrumentType(name, flavor, "none", cls, [CHANNEL], f"{name} for tests",
                           capabilities=("Readable",))
            for name, flavor, cls in [("outage.blip", "v2", BlipV2),
                                      ("outage.blip", "v4", BlipV4),
                                      ("outage.absent", "v2", AbsentV2),
                                      ("outage.late", "v2", LateV2)]]


@pytest.fixture
def host() -> PluginHost:
    h = PluginHost()
    h.load_entry_points()
    plugin = types.SimpleNamespace(daqhub_instrument_types=hookimpl(outage_types))
    assert h.register(plugin, "outage-tests", "outage-tests", "0")
    return h


def lab_text(tmp_path: Path, blocks: str) -> str:
    return f'[daqhub]\noutput_dir = "{tmp_path.as_posix()}/data"\nshutdown_timeout = 15\n' + blocks


@pytest.mark.timeout(60)
def test_both_flavors_count_time_disconnected_from_the_first_lost_link_error(
        host: PluginHost, tmp_path: Path) -> None:
    """A read that finds the port gone reconnects its instrument at once in both flavors, so
    the report's reconnects and time disconnected count the outage alike; a v2 instrument
    waited for two more failed reads (in state ``error``, "connected"), and an outage as short
    as those reads was no reconnect and "0.0 s disconnected" in v2 only."""
    lab = parse(lab_text(tmp_path, '''
[[v2.instruments]]
id = "m2"
type = "outage.blip"
poll_hz = 20
[[v4.instruments]]
id = "m4"
type = "outage.blip"
poll_hz = 20
'''), "blip.toml", host, tmp_path)
    rt = DualRuntimeManager(lab, host)
    rt.start()
    try:
        wait_until(lambda: all(rt.health_of(i).measurements > 2 for i in ("m2", "m4")),
                   "both polling", timeout=30)
        counts = {i: rt.health_of(i).measurements for i in ("m2", "m4")}
        LINK_LOST_ONCE.update(counts)  # the port is pulled for one read of each
        wait_until(lambda: all(rt.health_of(i).measurements > counts[i] + 2 for i in counts),
                   "both polling again", timeout=30)
    finally:
        report = rt.shutdown()
    assert report.ok, report.failed
    for o in report.instruments:
        assert o["reconnects"] == 1 and o["disconnected_s"] > 0, o
        details = [e["detail"] for e in o["events"] if e["event"] == "disconnected"]
        assert details == [f"read failed: {o['id']}: 'MEAS?': serial port is disconnected"], \
            o["events"]


@pytest.mark.timeout(60)
def test_a_v2_connect_that_fails_fast_is_reconnecting_not_a_connect_that_has_not_returned(
        host: PluginHost, tmp_path: Path) -> None:
    """The backoff between two failed connects is the runtime's own wait, not the driver's
    connect(): it raised no "connect() has not returned" alarm once the backoff outlasted
    ``start_timeout_s`` (an absent module, 17 alarms in a faulty bus run)."""
    lab = parse(lab_text(tmp_path, '''
[[v2.instruments]]
id = "ghost"
type = "outage.absent"
'''), "ghost.toml", host, tmp_path)
    # backoffs of 0.5 s and 1 s after the first two attempts: each longer than the limit
    rt = DualRuntimeManager(lab, host, restart_policy=RestartPolicy(start_timeout_s=0.2))
    rt.start()
    ghost = rt.health_of("ghost")
    try:
        wait_until(lambda: ghost.errors >= 3, "a third failed connect", timeout=30)
        assert ghost.state == "reconnecting"
        assert ghost.last_error == "connect failed: ghost: '5in': no reply from address 5 " \
                                   "within 0.20 s"
        assert [a["message"] for a in rt.alarms if a["what"] == "connect:ghost"] == []
        # a command waits behind the reconnect; one whose time runs out says so (routines'
        # and the dashboard's rt.call said "busy in 'its poll loop'")
        with pytest.raises(TimeoutError, match=r"^ghost\.read: no result within 0\.3 s \(ghost "
                           r"is reconnecting since \d\d:\d\d:\d\d \(\d+ s ago; last error: "
                           r"connect failed: ghost: '5in': no reply"):
            rt.call("ghost", "read", timeout=0.3)
    finally:
        rt.shutdown()


@pytest.mark.timeout(60)
def test_a_module_silent_at_shutdown_has_its_stop_said_once_and_no_traceback(
        host: PluginHost, tmp_path: Path, sim_url: Any, sim_endpoint: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The shutdown's halt gives each stop a second; a module that does not answer (its
    reply timeout longer than that) had its stop's future cancelled by the halt, and the
    stop's thread, setting its outcome then, died with an ``InvalidStateError`` traceback on
    stderr at every close. Now the shutdown says it once, as an alarm in its report."""
    url = sim_url("elliptec", devices="0:ELL14")
    lab = parse(lab_text(tmp_path, f'''
[[v2.instruments]]
id = "rot"
type = "elliptec.ell14"
port = "{url}"
address = 0
poll_hz = 1
reply_timeout = 2
'''), "silent.toml", host, tmp_path)
    unhandled: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", unhandled.append)
    rt = DualRuntimeManager(lab, host)
    rt.start()
    try:
        wait_until(lambda: rt.health_of("rot").measurements > 0, "a first sample", timeout=30)
        ep = sim_endpoint(url)
        with ep.lock:  # the module goes silent behind the driver's back
            ep.device.unit("0").isolated_until = ep.device.clock.now() + 3600
    finally:
        report = rt.shutdown()
    for t in threading.enumerate():
        if t.name == "daqhub-stop:rot":
            t.join(10)  # the stop's own reply timeout ends it
            assert not t.is_alive()
    assert unhandled == []
    said = [a["message"] for a in rt.alarms if a["what"] == "halt:rot"]
    assert len(said) == 1 and said[0].startswith("rot: its stop ") \
        and said[0].endswith(" at shutdown: it may not have stopped"), said
    assert report.clean == ["rot"], report.failed


@pytest.mark.timeout(60)
def test_a_halt_sends_no_stop_to_a_mover_that_is_not_connected(
        host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan's halt (its Ctrl-C, or its error) waited its whole 5 s for a stop queued behind
    a mover's connect, which could not run before it; the shutdown's did not, as it kept the
    rule to itself. The rule is the halt's now, for every caller."""
    CONNECTED.clear()
    lab = parse(lab_text(tmp_path, '''
[[v2.instruments]]
id = "late"
type = "outage.late"
'''), "late.toml", host, tmp_path)
    sent: list[str] = []
    submit = DualRuntimeManager.submit

    def spy(rt: DualRuntimeManager, iid: str, method: str, *args: Any, **kwargs: Any) -> Any:
        fut = submit(rt, iid, method, *args, **kwargs)
        sent.append(f"{iid}.{method}")
        return fut
    monkeypatch.setattr(DualRuntimeManager, "submit", spy)
    rt = DualRuntimeManager(lab, host)
    rt.start()
    try:
        assert rt.health_of("late").state == "starting"
        failed = rt.halt(["late"], 5.0)
        assert sent == []
        assert failed == []  # nothing tried, nothing failed
    finally:
        CONNECTED.set()
        rt.shutdown()
