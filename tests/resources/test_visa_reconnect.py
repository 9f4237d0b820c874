"""A LAN instrument that drops its connection: clear errors while down, then back by itself."""

from __future__ import annotations

import threading
import time
import types

import pytest

from daqhub.resources import VisaDisconnectedError, VisaSessionManager
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
            while not any(isinstance(e, VisaDisconnectedError) for e in errors):
                assert time.monotonic() < deadline, f"never saw the disconnect: {errors}"
                try:
                    res.query("*IDN?", timeout=2)
                except Exception as exc:  # a timeout first, then the lost connection
                    errors.append(exc)
            lost = next(e for e in errors if isinstance(e, VisaDisconnectedError))
            assert server.resource.split("::")[1] in str(lost) and "reopen" in str(lost)
            assert not res.is_connected
            server.reconnect()
            deadline = time.monotonic() + 10
            while True:  # the reopen waits out its backoff, then traffic resumes
                try:
                    assert res.query("*IDN?", timeout=2).startswith("SIM,DMM1")
                    break
                except VisaDisconnectedError as exc:
                    assert time.monotonic() < deadline, f"not reopened: {exc}"
                    time.sleep(0.05)
            stats = res.stats()
            assert stats["disconnects"] == 1 and stats["reconnects"] >= 1 and stats["connected"]
        finally:
            assert mgr.close_all() == []


def test_a_lost_visa_instrument_is_told_through_the_hooks_of_a_running_lab(tmp_path) -> None:
    """The LAN DMM drops out of a running lab: plugins hear ``disconnected`` then
    ``reconnected`` for the resource and for the instrument, said as a VISA resource."""
    from daqhub.config import parse
    from daqhub.hookspecs import hookimpl
    from daqhub.host import PluginHost
    from daqhub.runtime.dual import DualRuntimeManager

    heard: list[tuple[str, str, str]] = []
    changed = threading.Condition()

    def hear(*entry: str) -> None:
        with changed:
            heard.append(entry)
            changed.notify_all()

    host = PluginHost()
    host.load_entry_points()
    host.register(types.SimpleNamespace(
        daqhub_resource_event=hookimpl(lambda resource, event, detail: hear(
            "resource", resource, event)),
        daqhub_instrument_event=hookimpl(lambda instrument_id, event, detail: hear(
            instrument_id, detail, event))), "alerts", "lab-alerts", "0.1")
    with ScpiTcpServer("dmm") as server:
        lab = parse(f"""
[daqhub]
output_dir = "{tmp_path}"
[[v2.instruments]]
id = "dmm"
type = "scpi.dmm"
resource = "{server.resource}"
visa_backend = "@py"
poll_hz = 20
""", "lan.toml", host, tmp_path)
        rt = DualRuntimeManager(lab, host)
        rt.start()
        try:
            label = rt.visa.resources()[0].label
            server.disconnect()
            with changed:
                assert changed.wait_for(lambda: ("resource", label, "disconnected") in heard,
                                        10), f"no disconnect heard: {heard}"
            server.reconnect()
            with changed:
                assert changed.wait_for(lambda: ("resource", label, "reconnected") in heard,
                                        15), f"no reconnect heard: {heard}"
        finally:
            rt.shutdown()
    resource_events = [e[2] for e in heard if e[0] == "resource"]
    assert resource_events[:2] == ["disconnected", "reconnected"]
    dmm = [(detail, event) for who, detail, event in heard if who == "dmm"
           and detail.startswith("VISA resource")]
    assert [event for _, event in dmm][:2] == ["disconnected", "reconnected"]
    assert all(label in detail for detail, _ in dmm)
