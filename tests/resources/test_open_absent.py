"""``open_absent``: a restarted worker's managers make a port or VISA session they cannot
open begin disconnected, reopened in the background, instead of refusing it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
import pyvisa

from daqhub.resources import (
    PortDisconnectedError,
    PortOpenError,
    ResourceEvent,
    SerialPortManager,
    VisaDisconnectedError,
    VisaSessionManager,
)

pytestmark = pytest.mark.timeout(30)


def free_port() -> int:
    with socket.socket() as s:  # free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AbsentRm:
    """pyvisa-py's ResourceManager, as a backend that opens at once: it refuses to open a
    resource until ``present`` is set."""

    def __init__(self) -> None:
        self.real = pyvisa.ResourceManager("@py")
        self.present = threading.Event()

    def open_resource(self, name: str, **settings: Any) -> Any:
        if not self.present.is_set():
            raise pyvisa.errors.VisaIOError(pyvisa.constants.StatusCode.error_resource_not_found)
        return self.real.open_resource(name, **settings)

    def close(self) -> None:
        self.real.close()


@pytest.mark.parametrize("kind", ["serial port", "VISA resource"])
def test_a_device_absent_when_opened_is_a_disconnect_reopened_when_it_is_back(
        kind: str, sim_url: Callable[..., str], sim_endpoint: Callable[[str], Any]) -> None:
    from daqhub_sims.scpi_tcp import ScpiTcpServer
    from daqhub_sims.tcp_server import TcpServer

    port = free_port()
    heard: list[ResourceEvent] = []
    back = threading.Event()

    def hear(event: ResourceEvent) -> None:
        heard.append(event)
        if event.kind == "reconnected":
            back.set()

    manager: Any
    if kind == "serial port":
        manager = SerialPortManager(reconnect_initial_s=0.05, reconnect_max_s=0.05)
        url = f"socket://127.0.0.1:{port}"
        with pytest.raises(PortOpenError, match=f"cannot open serial port {url}"):
            manager.port(url)  # by default, refused
        manager.open_absent = True
        manager.add_listener(hear)
        res = manager.port(url)
        down: type[Exception] = PortDisconnectedError
        server: Any = TcpServer(sim_endpoint(sim_url("elliptec", devices="0:ELL14")),
                                port=port)
        ask: Callable[[], Any] = lambda: res.query(b"0in", terminator=b"\r\n")  # noqa: E731
    else:  # pyvisa-py opens a TCPIP socket when first used: a backend that opens at once
        rm = AbsentRm()
        manager = VisaSessionManager(rm_factory=lambda key: rm, reconnect_initial_s=0.05,
                                     reconnect_max_s=0.05)
        manager.open_absent = True
        manager.add_listener(hear)
        server = ScpiTcpServer("dmm", port=port)
        res = manager.resource(f"TCPIP::127.0.0.1::{port}::SOCKET", read_termination="\n",
                               write_termination="\n", timeout_ms=2000)
        down = VisaDisconnectedError
        ask = lambda: res.query("*IDN?")  # noqa: E731
    try:
        assert not res.is_connected
        with pytest.raises(down, match="disconnected"):
            ask()
        server.start()
        if kind == "VISA resource":
            rm.present.set()
        assert back.wait(10), heard
        assert [e.kind for e in heard] == ["disconnected", "reconnected"]
        assert ask()
        assert res.stats()["disconnects"] == 1 and res.stats()["reconnects"] == 1
    finally:
        assert manager.close_all() == []
        server.close()
