"""VISA instruments over LAN (pyvisa-py ``TCPIP::host::port::SOCKET`` and, over VXI-11,
``TCPIP::host::INSTR``) in a run.

The TCP SCPI simulator or the VXI-11 one plays a LAN instrument. A v2 and a v4 DMM share it
through the VISA manager's gate (each reply reaches its own asker), and an instrument that
goes off the network for a while comes back by itself with only the outage missing from the
data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daqhub.plugins.converters import batch_to_rows
from daqhub_sims.vxi11 import serve_on_loopback

pytestmark = pytest.mark.timeout(60)

OUTAGE_S = 2.0


class Rows:
    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.cond = threading.Condition()

    def write(self, batch: Any) -> None:
        with self.cond:
            self.rows.extend(batch_to_rows(batch))
            self.cond.notify_all()

    def flush(self) -> None:
        pass

    def close(self) -> int:
        return len(self.rows)

    def of(self, iid: str) -> list[Any]:
        with self.cond:
            return [r for r in self.rows if r.instrument_id == iid]

    def wait_for(self, iid: str, n: int, timeout: float) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len([r for r in self.rows
                                                   if r.instrument_id == iid]) >= n, timeout)


def lan_lab(resource: str, tmp_path: Path) -> str:
    return f"""
[daqhub]
output_dir = "{tmp_path}"
[[v2.instruments]]
id = "dmm_a"
type = "scpi.dmm"
resource = "{resource}"
visa_backend = "@py"
poll_hz = 10
[[v4.instruments]]
id = "dmm_b"
type = "scpi.dmm"
resource = "{resource}"
visa_backend = "@py"
poll_hz = 10
"""


@pytest.fixture(params=["SOCKET", "INSTR"])
def lan_dmm(request: Any, scpi_tcp: Callable[..., Any]) -> Iterator[Any]:
    """A simulated LAN DMM: raw SCPI on a TCP port, or VXI-11 behind a portmapper."""
    if request.param == "SOCKET":
        yield scpi_tcp("dmm", seed=3)
        return
    server = serve_on_loopback("dmm", seed=3)
    if server is None:
        pytest.skip("VXI-11 clients ask the portmapper on port 111: it cannot be bound on any "
                    "loopback address here (needs root, and 127.0.0.1:111 may be rpcbind's)")
    with server:
        yield server


def test_two_flavors_share_a_lan_instrument_and_survive_its_outage(
        lan_dmm: Any, daqhub_lab: Callable[[str], Any],
        daqhub_run: Callable[..., Any], tmp_path: Path) -> None:
    server = lan_dmm
    assert server.resource.startswith("TCPIP::127.0.0.") and server.resource.endswith(
        ("::SOCKET", "::INSTR"))
    rows = Rows()
    rt = daqhub_run(daqhub_lab(lan_lab(server.resource, tmp_path)), sinks={"rows": rows})
    for iid in ("dmm_a", "dmm_b"):
        rows.wait_for(iid, 5, 10)
    [res] = rt.visa.resources()  # one shared session for both instruments
    server.disconnect()  # the instrument leaves the network: connections refused
    threading.Event().wait(OUTAGE_S)  # the outage itself
    server.reconnect()
    counts = {iid: len(rows.of(iid)) for iid in ("dmm_a", "dmm_b")}
    for iid in ("dmm_a", "dmm_b"):
        rows.wait_for(iid, counts[iid] + 5, 20)
    report = rt.shutdown()
    assert report.ok, report
    stats = res.stats()
    assert stats["disconnects"] >= 1 and stats["reconnects"] >= 1 and stats["connected"] is False
    health = {h["id"]: h for h in rt.health()["instruments"]}
    for iid in ("dmm_a", "dmm_b"):
        ts = np.array([r.timestamp_ns for r in rows.of(iid)]) / 1e9
        gaps = np.sort(np.diff(ts))
        assert OUTAGE_S * 0.9 <= gaps[-1] < OUTAGE_S + 3, (iid, gaps[-3:])
        assert gaps[-2] < 1.0, f"{iid}: a second gap, more than the outage was lost"
        assert all(np.isfinite(r.data.value) for r in rows.of(iid))
        assert health[iid]["errors"] >= 1  # the outage was seen, not hidden
