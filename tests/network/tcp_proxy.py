"""A loopback TCP relay whose connections a test can cut: a network link that breaks, one
that stays down for a while (:meth:`TcpProxy.hold`) and comes back, maybe to a service started
again meanwhile (:meth:`TcpProxy.release`), one that stops carrying anything without closing
(:meth:`TcpProxy.freeze`: a frozen host), and a slow one (``rate``)."""

from __future__ import annotations

import socket
import threading
import time


class TcpProxy:
    """Relays 127.0.0.1:``port`` to ``target``; :meth:`cut` drops every connection.

    ``rate``: bytes per second from the target to the client at most (a slow link)."""

    def __init__(self, target: tuple[str, int], rate: float | None = None) -> None:
        self.target = target
        self.rate = rate
        self._flowing = threading.Event()
        self._flowing.set()
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
            for a, b, rate in ((client, upstream, None), (upstream, client, self.rate)):
                threading.Thread(target=self._pipe, args=(a, b, rate), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, rate: float | None) -> None:
        try:
            while data := src.recv(16384 if rate else 65536):
                self._flowing.wait()  # frozen: held, the connection open
                if rate:
                    time.sleep(len(data) / rate)  # the link's pace, not a wait for a state
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

    def freeze(self) -> None:
        """The far end stops answering without closing anything (a frozen host): nothing is
        relayed either way until :meth:`thaw`."""
        self._flowing.clear()

    def thaw(self) -> None:
        """What was held, and what follows, is relayed again."""
        self._flowing.set()

    def close(self) -> None:
        self.thaw()  # a held relay ends with its connection
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self._listener.close()
        self.cut()
        self._thread.join(5)
