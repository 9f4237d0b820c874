"""A loopback TCP relay whose connections a test can cut: a network link that breaks, and one
that stays down for a while (:meth:`TcpProxy.hold`) and comes back, maybe to a service started
again meanwhile (:meth:`TcpProxy.release`)."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Relays 127.0.0.1:``port`` to ``target``; :meth:`cut` drops every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._held = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name="tcp-proxy")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                held, target = self._held, self.target
            if held:  # the link is down: refused, as a client sees it
                client.close()
                continue
            try:
                upstream = socket.create_connection(target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Break every relayed connection now (new ones are still relayed)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def hold(self) -> None:
        """The link goes down: every relayed connection breaks and new ones are dropped at once
        until :meth:`release`."""
        with self._lock:
            self._held = True
        self.cut()

    def release(self, target: tuple[str, int] | None = None) -> None:
        """The link is back, relaying to ``target`` when given (a service started again)."""
        with self._lock:
            self._held = False
            if target is not None:
                self.target = target

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self._listener.close()
        self.cut()
        self._thread.join(5)
