"""Serve a simulated device on TCP, reachable as pyserial's ``socket://127.0.0.1:PORT``.

Behaves like ser2net with ``kickolduser: true, chardelay: false``: one client at a time, a new
client replaces the old one. Bytes that arrive with no client stay on the line (for another
transport of the same endpoint) and are dropped when a client connects. While the line is
unplugged, connected clients are closed and new ones are accepted and closed at once (as
ser2net does when its serial device is gone); the listening port stays.
"""

from __future__ import annotations

import argparse
import select
import socket

from daqhub_sims.bridge import Bridge
from daqhub_sims.device import SimDevice
from daqhub_sims.endpoint import Endpoint, EndpointDisconnected

_READ_CHUNK = 4096


def tcp_port(text: str) -> int:
    """An argparse ``type``: a port to listen on, 0-65535 (0: any free one). Checked when the
    command line is read, so a port out of range is a usage error, not ``bind()``'s
    OverflowError once serving has begun."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"a port is a number from 0 to 65535 (0: any free port), got {text}")
    return port


class TcpServer(Bridge):
    """``with TcpServer(endpoint) as srv: serial.serial_for_url(srv.url)``."""

    def __init__(
        self, target: SimDevice | Endpoint, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(target, f"tcp-server {host}:{port}")
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
            self._listener.listen(4)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._label = f"tcp-server {self.host}:{self.port}"
        self._client: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    def __enter__(self) -> TcpServer:
        super().__enter__()
        return self

    def _link_up(self) -> None:
        """Nothing to create: the next client that connects gets the line."""

    def _link_down(self) -> None:
        self._drop_client()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._listener.close()

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _poll_fds(self) -> list[tuple[int, int]]:
        fds = [(self._listener.fileno(), select.POLLIN)]
        if self._client is not None:
            mask = select.POLLIN | (select.POLLOUT if self._pending else 0)
            fds.append((self._client.fileno(), mask))
        return fds

    def _on_event(self, fd: int, events: int) -> None:
        if fd == self._listener.fileno():
            self._accept()
            return
        client = self._client
        if client is None or fd != client.fileno():
            return
        if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try:
                data = client.recv(_READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop_client()  # the client went away
                return
            self._deliver(data)
        if events & select.POLLOUT:
            self._pump_out()

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._session is None or not self._session.alive:
            conn.close()  # the serial side is gone: refuse service, keep listening
            return
        self._drop_client()  # kick the old user
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = conn
        self._pending.clear()
        try:
            self._session.reset_input()  # what the line said before this client is not its
        except EndpointDisconnected:
            self._drop_client()

    def _send(self, data: bytes) -> int:
        client = self._client
        if client is None:
            return 0
        try:
            return client.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self._drop_client()
            return 0

    def _has_peer(self) -> bool:
        return self._client is not None
