"""The disconnect scenario of test_disconnect.py on a ``sim://`` line instead of a pty."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest
from test_disconnect import run_disconnect_scenario

from daqhub.resources import LockOrderChecker, SerialPortManager
from daqhub_sims import install, registry
from daqhub_sims.device import Clock, SimDevice

pytestmark = pytest.mark.timeout(30)


class TokenEcho(SimDevice):
    """Answers ``Q<token>\\n`` with ``R<token>\\n``; can pull its own cable on a request."""

    def __init__(self, options: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(options, clock)
        self.buf = b""
        self.out = b""
        self.requests: list[bytes] = []
        self.disconnect_on: bytes | None = None
        self.pull_cable = threading.Event()

    def feed(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.requests.append(line)
            if self.disconnect_on is not None and line.endswith(self.disconnect_on):
                self.disconnect_on = None
                self.pull_cable.set()  # mid-transfer: the request arrived, no reply will
                continue
            self.out += b"R" + line[1:] + b"\n"

    def read(self) -> bytes:
        out, self.out = self.out, b""
        return out

    def next_output_in(self) -> float | None:
        return 0.0 if self.out else None


class View:
    """The device as the scenario sees one connection of it: requests from ``start`` on."""

    def __init__(self, dev: TokenEcho, start: int, gone: threading.Event) -> None:
        self.dev, self.start, self.gone = dev, start, gone
        self.end: int | None = None

    @property
    def requests(self) -> list[bytes]:
        return self.dev.requests[self.start:self.end]

    @property
    def disconnect_on(self) -> bytes | None:
        return self.dev.disconnect_on

    @disconnect_on.setter
    def disconnect_on(self, value: bytes | None) -> None:
        self.dev.disconnect_on = value


def test_sim_line_disconnect_mid_transfer_and_back() -> None:
    install()
    registry.register_model("tokenecho", lambda options, clock: TokenEcho(options, clock))
    url = "sim://tokenecho?name=disconnect-test"
    try:
        ep = registry.endpoint(url)
        dev = ep.device
        assert isinstance(dev, TokenEcho)
        gone = threading.Event()
        first = View(dev, 0, gone)

        def puller() -> None:
            if dev.pull_cable.wait(20):
                first.end = len(dev.requests)
                ep.faults.disconnect()
                gone.set()
        threading.Thread(target=puller, daemon=True).start()

        def bring_back() -> View:
            second = View(dev, len(dev.requests), threading.Event())
            ep.faults.reconnect()
            return second

        with SerialPortManager(reconnect_initial_s=0.05, checker=LockOrderChecker()) as mgr:
            port = mgr.port(url, read_timeout=2.0)
            run_disconnect_scenario(port, first, bring_back)  # type: ignore[arg-type]
    finally:
        registry.reset()
