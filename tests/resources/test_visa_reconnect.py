"""A LAN instrument that drops its connection: clear errors while down, then back by itself."""

from __future__ import annotations

import time

import pytest

from daqhub.resources import PortDisconnectedError, VisaSessionManager
from daqhub_sims.scpi_tcp import ScpiTcpServer

pytestmark = pytest.mark.timeout(30)


def test_lost_visa_session_fails_clearly_and_is_reopened() -> None:
    with ScpiTcpServer("dmm") as server:
        mgr = VisaSessionManager()
        try:
            res = mgr.resource(server.resource, backend="@py", read_termination="\n",
                               write_termination="\n", timeout_ms=300)
            assert res.query("*IDN?").startswith("SIM,DMM1")
            server.disconnect()
            errors: list[BaseException] = []
            deadline = time.monotonic() + 10
            while not any(isinstance(e, PortDisconnectedError) for e in errors):
                assert time.monotonic() < deadline, f"never saw the disconnect: {errors}"
                try:
                    res.query("*IDN?", timeout=2)
                except Exception as exc:  # a timeout first, then the lost connection
                    errors.append(exc)
            lost = next(e for e in errors if isinstance(e, PortDisconnectedError))
            assert server.resource.split("::")[1] in str(lost) and "reopen" in str(lost)
            assert not res.is_connected
            server.reconnect()
            deadline = time.monotonic() + 10
            while True:  # the reopen waits out its backoff, then traffic resumes
                try:
                    assert res.query("*IDN?", timeout=2).startswith("SIM,DMM1")
                    break
                except PortDisconnectedError as exc:
                    assert time.monotonic() < deadline, f"not reopened: {exc}"
                    time.sleep(0.05)
            stats = res.stats()
            assert stats["disconnects"] == 1 and stats["reconnects"] >= 1 and stats["connected"]
        finally:
            assert mgr.close_all() == []
