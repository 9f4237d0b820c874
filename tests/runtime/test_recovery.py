"""Both flavors recover alike from what happens to real hardware: outages and bad replies."""

from __future__ import annotations

import time

import pytest
from polling import wait_until

from daqhub.config import parse
from daqhub.runtime.dual import DualRuntimeManager


def start_shared_esp300(daqhub_host, tmp_path, url: str):
    """A v2 and a v4 axis on one ESP300 port, both polling: (runtime, x health, y health)."""
    lab = parse(f"""
[[v2.instruments]]
id = "x"
type = "newport.esp300"
port = "{url}"
axis = 1
poll_hz = 20
[[v4.instruments]]
id = "y"
type = "newport.esp300"
port = "{url}"
axis = 2
poll_hz = 20
""", "outage.toml", daqhub_host, tmp_path)
    rt = DualRuntimeManager(lab, daqhub_host)
    rt.start()
    x, y = rt.health_of("x"), rt.health_of("y")
    try:
        wait_until(lambda: x.measurements > 5 and y.measurements > 5, what="both polling")
    except AssertionError:
        rt.shutdown()
        raise
    return rt, x, y


@pytest.mark.timeout(90)
@pytest.mark.parametrize("outage_s", [4, 10])
def test_both_flavors_resume_within_1_5_s_of_the_port_coming_back(
        outage_s, daqhub_host, sim_url, sim_endpoint, tmp_path) -> None:
    url = sim_url("esp300", speed_scale=20)
    rt, x, y = start_shared_esp300(daqhub_host, tmp_path, url)
    try:
        sim_endpoint(url).faults.disconnect()
        pulled = time.monotonic()
        wait_until(lambda: x.state == "reconnecting" and y.state == "reconnecting", timeout=5,
                   what="both to see the outage")
        time.sleep(max(0.0, pulled + outage_s - time.monotonic()))  # the outage itself
        counts = (x.measurements, y.measurements)
        sim_endpoint(url).faults.reconnect()
        back = time.monotonic()
        wait_until(lambda: x.measurements > counts[0] and y.measurements > counts[1],
                   timeout=5, what="both to produce again")
        resumed = time.monotonic() - back
        assert resumed < 1.5, f"resumed {resumed:.2f} s after the port came back"
        assert x.state == "running" and y.state == "running"
    finally:
        report = rt.shutdown()
    assert report.ok, report.failed
    for o in report.instruments:
        assert o["state"] == "stopped" and o["reconnects"] == 1 and o["restarts"] == 0, o
        assert outage_s - 1 < o["disconnected_s"] < outage_s + 2, o
        events = [e["event"] for e in o["events"]]
        assert {"port disconnected", "disconnected", "port reconnected", "reconnected"} \
            <= set(events), events


@pytest.mark.timeout(60)
def test_a_truncated_reply_every_so_often_is_an_error_not_a_restart(
        daqhub_host, sim_url, sim_endpoint, tmp_path) -> None:
    url = sim_url("esp300", speed_scale=20)
    rt, x, y = start_shared_esp300(daqhub_host, tmp_path, url)
    try:
        for _ in range(8):  # more than max_restarts (5) bad replies, quickly
            errors = x.errors + y.errors
            sim_endpoint(url).faults.truncate_next(2)
            wait_until(lambda e=errors: x.errors + y.errors > e, timeout=5, what="the bad reply")
        n = (x.measurements, y.measurements)
        wait_until(lambda: x.measurements > n[0] + 5 and y.measurements > n[1] + 5,
                   what="both to keep polling")
        assert x.restarts == 0 and y.restarts == 0
        assert x.state == "running" and y.state == "running"
    finally:
        report = rt.shutdown()
    assert report.ok, report.failed
