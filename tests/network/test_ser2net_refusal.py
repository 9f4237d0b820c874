"""A serial server that turns daqhub away: the open fails and says so (a real ser2net).

ser2net accepts the TCP connection of a client it refuses, writes one line (``Port already
in use`` while another client holds the port, ``Device open failure: ...`` when it cannot
open its device) and closes. A ``socket://`` open used to succeed regardless, so a second
daqhub started and sat in ``reconnecting`` with "garbled reply" errors; an ``rfc2217://``
open failed, after a traceback from pyserial's reader thread. Both now fail at the open,
naming the server and why, and a second ``daqhub run`` does not start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ser2net_server import Ser2net

from daqhub.resources import SerialPortManager
from daqhub.resources.errors import PortOpenError
from daqhub.resources.ownership import LOCK_DIR_ENV

pytestmark = pytest.mark.timeout(60)

# (ser2net speaks RFC 2217, how the second client names the port)
SECOND_CLIENTS = [
    pytest.param(False, "socket", id="socket"),
    pytest.param(True, "rfc2217", id="rfc2217"),
    # raw socket:// to a telnet accepter: the refusal line comes after telnet negotiation
    pytest.param(True, "socket", id="socket-to-telnet-accepter"),
]


def url_of(server: Ser2net, scheme: str) -> str:
    return server.url if scheme == "rfc2217" else f"socket://127.0.0.1:{server.port}"


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    """Exceptions that end a thread (pyserial's reader thread printed them on stderr)."""
    seen: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


@pytest.mark.parametrize(("rfc2217", "scheme"), SECOND_CLIENTS)
def test_a_second_client_fails_to_open_naming_the_server_and_the_holder(
        ser2net: Callable[..., Ser2net], sim_url: Callable[..., str],
        thread_errors: list[BaseException | None], rfc2217: bool, scheme: str) -> None:
    server = ser2net(sim_url("esp300"), rfc2217=rfc2217)
    with SerialPortManager() as first, SerialPortManager() as second:
        owner = first.port(server.url, baudrate=19200, rtscts=True)
        with pytest.raises(PortOpenError) as info:
            second.port(url_of(server, scheme), baudrate=19200, rtscts=True)
        assert (f"the serial server at 127.0.0.1:{server.port} turned this client away "
                f"('Port already in use'): another client holds the port") in str(info.value)
        assert thread_errors == []  # pyserial's reader thread ended quietly
        assert owner.query(b"VE?\r", terminator=b"\r\n").startswith(b"ESP300")


@pytest.mark.parametrize("rfc2217", [False, True], ids=["socket", "rfc2217"])
def test_a_server_that_cannot_open_its_device_fails_the_open_and_says_so(
        tmp_path: Path, thread_errors: list[BaseException | None], rfc2217: bool) -> None:
    with Ser2net(str(tmp_path / "unplugged"), tmp_path, rfc2217=rfc2217) as server, \
            SerialPortManager() as mgr:
        with pytest.raises(PortOpenError) as info:
            mgr.port(server.url)
    assert (f"the serial server at 127.0.0.1:{server.port} turned this client away "
            f"('Device open failure") in str(info.value)
    assert "the server cannot open its serial device" in str(info.value)
    # the server said why: no guess that it is not running or that another client holds it
    assert "is the serial server running" not in str(info.value), str(info.value)
    assert thread_errors == []


def test_the_first_socket_client_of_a_telnet_accepter_is_not_refused(
        ser2net: Callable[..., Ser2net], sim_url: Callable[..., str]) -> None:
    """The negotiation a telnet accepter sends at once is not taken for a refusal."""
    server = ser2net(sim_url("esp300"), rfc2217=True)
    with SerialPortManager() as mgr:
        port = mgr.port(url_of(server, "socket"), baudrate=19200)
        assert port.query(b"VE?\r", terminator=b"\r\n").startswith(b"ESP300")


def test_a_second_daqhub_on_a_ser2net_socket_port_does_not_start(
        ser2net: Callable[..., Ser2net], sim_url: Callable[..., str], tmp_path: Path) -> None:
    server = ser2net(sim_url("newport1830c"), rfc2217=False)
    lab = tmp_path / "lab.toml"
    lab.write_text(f'[[v2.instruments]]\nid = "power2"\ntype = "newport.1830c"\n'
                   f'port = "{server.url}"\n')
    env: dict[str, Any] = {**os.environ, LOCK_DIR_ENV: str(tmp_path / "locks")}
    with SerialPortManager() as first:
        first.port(server.url)
        second = subprocess.run(
            [sys.executable, "-m", "daqhub", "run", str(lab), "--plain", "--duration", "30",
             "--output-dir", str(tmp_path / "second")],
            capture_output=True, text=True, timeout=50, env=env)
    assert second.returncode == 1, second.stdout[-1500:] + second.stderr[-1500:]
    assert "could not start the lab" in second.stderr
    assert (f"power2: cannot open serial port {server.url}: the serial server at "
            f"127.0.0.1:{server.port} turned this client away ('Port already in use'): "
            f"another client holds the port") in second.stderr
