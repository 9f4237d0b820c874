"""Serial instruments on the network: a real ser2net in front of simulated devices on ptys.

What a lab sees when its ESP300 hangs off another computer: the lab file names
``rfc2217://host:port`` (or ``socket://``), the shared-port manager opens it like a local port,
a second client is turned away while daqhub holds it, and a server that goes away for a while
is a disconnect followed by a reconnect, with nothing lost but the outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daqhub.config import parse
from daqhub.plugins.converters import batch_to_rows
from daqhub.resources import PortEvent, SerialPortManager
from daqhub.resources.errors import PortOpenError
from daqhub.runtime.dual import DualRuntimeManager
from daqhub_sims import URL_HANDLER_PACKAGE

pytestmark = pytest.mark.timeout(60)

OUTAGE_S = 3.0


class Rows:
    """A lossless sink keeping (timestamp, value) of every row."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.arrived = threading.Condition()

    def write(self, batch: Any) -> None:
        with self.arrived:
            self.rows.extend(batch_to_rows(batch))
            self.arrived.notify_all()

    def flush(self) -> None:
        pass

    def close(self) -> int:
        return len(self.rows)

    def wait_for(self, n: int, timeout: float) -> None:
        self.wait_until(lambda: len(self.rows) >= n, timeout)

    def wait_until(self, cond: Callable[[], bool], timeout: float) -> None:
        with self.arrived:
            assert self.arrived.wait_for(cond, timeout), (
                f"{len(self.rows)} rows after {timeout} s; not there yet")

    def of(self, instrument_id: str) -> list[Any]:
        return [r for r in self.rows if r.instrument_id == instrument_id]


@pytest.mark.parametrize("rfc2217", [True, False], ids=["rfc2217", "socket"])
def test_a_port_served_by_ser2net_opens_like_a_local_one(
        ser2net: Callable[..., Any], sim_url: Callable[..., str], rfc2217: bool) -> None:
    server = ser2net(sim_url("esp300"), rfc2217=rfc2217)
    with SerialPortManager([URL_HANDLER_PACKAGE]) as mgr:
        port = mgr.port(server.url, baudrate=19200, rtscts=True)  # the ESP300's line
        assert port.query(b"1TP?\r", terminator=b"\r\n") in (b"0", b"0.00000")
        assert port.query(b"VE?\r", terminator=b"\r\n").startswith(b"ESP300")


def test_a_second_client_is_turned_away_while_daqhub_holds_the_port(
        ser2net: Callable[..., Any], sim_url: Callable[..., str]) -> None:
    server = ser2net(sim_url("esp300"))
    with SerialPortManager() as first, SerialPortManager() as second:
        first.port(server.url, baudrate=19200, rtscts=True)
        t0 = time.monotonic()
        with pytest.raises(PortOpenError) as info:
            second.port(server.url, baudrate=19200, rtscts=True)
        assert time.monotonic() - t0 < 8
        assert server.url in str(info.value) and "another client holds the port" in str(
            info.value), str(info.value)
        # the owner is not disturbed by the refused one
        assert first.port(server.url, baudrate=19200, rtscts=True).query(
            b"1TP?\r", terminator=b"\r\n")


ESP300_LAB = """
[[v2.instruments]]
id = "stage"
type = "newport.esp300"
port = "{url}"
axis = 1
poll_hz = 5
"""
ELLIPTEC_LAB = """
[[v2.instruments]]
id = "rot"
type = "elliptec.ell14"
port = "{url}"
address = 0
poll_hz = 5
[[v4.instruments]]
id = "slide"
type = "elliptec.ell9"
port = "{url}"
address = 1
poll_hz = 5
"""
OUTAGE_CASES = [
    pytest.param(("esp300", {"speed_scale": 20}), ESP300_LAB, "stage", 2.5, id="esp300"),
    pytest.param(("elliptec", {"devices": "0:ELL14,1:ELL9", "speed_scale": 10}), ELLIPTEC_LAB,
                 "rot", 30.0, id="elliptec-v2-and-v4"),
]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("device", "instruments", "mover", "target"), OUTAGE_CASES)
def test_ser2net_gone_for_3_s_is_a_disconnect_then_a_reconnect_losing_only_the_outage(
        ser2net: Callable[..., Any], sim_url: Callable[..., str], daqhub_host: Any,
        tmp_path: Path, device: tuple[str, dict[str, Any]], instruments: str, mover: str,
        target: float) -> None:
    server = ser2net(sim_url(device[0], **device[1]))
    lab = parse(f"""
[daqhub]
output_dir = "{tmp_path}"
{instruments.format(url=server.url)}""", "network-lab.toml", daqhub_host, tmp_path)
    rows = Rows()
    events: list[PortEvent] = []
    seen = threading.Condition()

    def on_event(ev: PortEvent) -> None:
        with seen:
            events.append(ev)
            seen.notify_all()

    serial = SerialPortManager([URL_HANDLER_PACKAGE], reconnect_initial_s=0.2,
                               reconnect_max_s=1.0)
    serial.add_listener(on_event)
    rt = DualRuntimeManager(lab, daqhub_host, sinks={"rows": rows}, serial=serial)
    ids = [i.id for i in lab.instruments()]
    rt.start()
    try:
        rows.wait_for(5 * len(ids), 10)
        rt.call(mover, "move_absolute", target)
        assert rt.call(mover, "wait_until_done", 5) == pytest.approx(target, abs=0.01)
        server.stop()
        with seen:
            assert seen.wait_for(lambda: any(e.kind == "disconnected" for e in events), 10)
        t_down = time.time()
        threading.Event().wait(OUTAGE_S)  # the outage itself, not a synchronisation
        server.start()
        with seen:
            assert seen.wait_for(lambda: any(e.kind == "reconnected" for e in events), 15)
        counts = {i: len(rows.of(i)) for i in ids}
        for i in ids:
            rows.wait_until(lambda i=i: len(rows.of(i)) >= counts[i] + 5, 15)
        # the device kept its state
        assert rt.call(mover, "position") == pytest.approx(target, abs=0.01)
    finally:
        report = rt.shutdown()
    assert [e.kind for e in events] == ["disconnected", "reconnected"]
    assert report.ok, report
    for i in ids:
        ts = np.array([r.timestamp_ns for r in rows.of(i)]) / 1e9
        gaps = np.diff(ts)
        outage = gaps.argmax()
        assert OUTAGE_S <= gaps[outage] < OUTAGE_S + 6, (i, gaps[outage])
        assert ts[outage] <= t_down <= ts[outage + 1], i
        others = np.delete(gaps, outage)
        assert others.max() < 1.0, f"{i}: a second gap, more than the outage was lost"
