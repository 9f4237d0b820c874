"""A worker process's ports: one that cannot be opened when a worker is restarted is down,
as a port that drops in a running process is, not a failed start; at the lab's first start
it refuses the run, in process and with workers alike.

The port is a simulated Elliptec bus behind ``socket://127.0.0.1:PORT``, whose listener the
test stops (connection refused: ser2net down) and starts again on the same port.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until

import daqhub


def lab_text(out: Path, bus: str, far: str, visa: str, workers: int) -> str:
    """``rot`` and ``slide`` on a local bus, ``far`` behind a network port, and a busy DMM:
    with two workers, the DMM is alone and the two buses share a worker."""
    return f"""
[daqhub]
output_dir = "{out}"
workers = {workers}
[daqhub.restart]
backoff_first_s = 0.05
max_restarts = 1
[[v2.instruments]]
id = "rot"
type = "elliptec.ell14"
port = "{bus}"
address = 0
poll_hz = 10
[[v4.instruments]]
id = "slide"
type = "elliptec.ell9"
port = "{bus}"
address = 1
poll_hz = 10
[[v2.instruments]]
id = "far"
type = "elliptec.ell14"
port = "{far}"
address = 0
poll_hz = 10
[[v4.instruments]]
id = "dmm"
type = "scpi.dmm"
resource = "GPIB0::5::INSTR"
visa_backend = "{visa}"
poll_hz = 100
"""


def refused_port() -> str:
    with socket.socket() as s:  # free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        return f"socket://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.timeout(240)
def test_a_port_down_when_its_worker_restarts_is_a_disconnect(
        tmp_path: Path, sim_url: Callable[..., str], sim_endpoint: Callable[[str], Any],
        visa_sim_backend: Callable[..., str]) -> None:
    from daqhub_sims.tcp_server import TcpServer

    endpoint = sim_endpoint(sim_url("elliptec", devices="0:ELL14", speed_scale=20))
    server = TcpServer(endpoint)
    server.start()
    bus = sim_url("elliptec", devices="0:ELL14,1:ELL9", speed_scale=20)
    text = lab_text(tmp_path / "run", bus, server.url, visa_sim_backend(), 2)
    try:
        with daqhub.open_lab(text, report=None) as lab:
            rt = lab.rt
            worker = rt.pool.owner["far"]
            assert sorted(worker.shard.ids) == ["far", "rot", "slide"]
            wait_until(lambda: all(rt.health_of(i).state == "running" for i in worker.shard.ids),
                       "the worker's instruments running", timeout=60)
            server.close()  # ser2net down: the port refuses connections
            os.kill(worker.process.pid, signal.SIGKILL)
            made = {i: rt.health_of(i).measurements for i in ("rot", "slide")}

            def measuring_again() -> bool:
                states = {i: rt.health_of(i).state for i in worker.shard.ids}
                # max_restarts = 1: a start that failed on far's port was a second death
                assert "failed" not in states.values(), (states, rt.health_of("rot").last_error)
                return all(states[i] == "running" and rt.health_of(i).measurements > made[i] + 2
                           for i in ("rot", "slide"))
            # the new worker runs what it can reach, while far reconnects
            wait_until(measuring_again, "rot and slide measuring in the new worker", timeout=60)
            far = rt.health_of("far")
            wait_until(lambda: far.state == "reconnecting", "far reconnecting", timeout=30)
            assert "cannot open serial port" in far.last_error, far.last_error
            server = TcpServer(endpoint, port=int(server.url.rsplit(":", 1)[1]))
            server.start()  # ser2net back
            n = far.measurements
            wait_until(lambda: far.state == "running" and far.measurements > n + 2,
                       "far measuring again once its port is back", timeout=60)
            for iid in worker.shard.ids:  # one death: the kill; the port was a disconnect
                assert rt.health_of(iid).restarts == 1, iid
            assert far.reconnects == 1
    finally:
        server.close()
    report = lab.report
    assert report is not None and report.ok, report.failed or report.as_dict()


@pytest.mark.timeout(120)
def test_a_port_that_cannot_open_at_the_first_start_refuses_the_run_in_a_worker(
        tmp_path: Path, sim_url: Callable[..., str], visa_sim_backend: Callable[..., str]
        ) -> None:
    """As in process (tests/e2e/test_honest_runs.py): the run does not start, naming the port."""
    from daqhub.runtime.dual import StartError

    far = refused_port()
    text = lab_text(tmp_path / "run", sim_url("elliptec", devices="0:ELL14,1:ELL9"), far,
                    visa_sim_backend(), 2)
    with pytest.raises(StartError) as err:
        daqhub.open_lab(text, report=None)
    assert list(err.value.causes) == ["far"], err.value.causes
    assert f"cannot open serial port {far}" in err.value.causes["far"], err.value.causes
