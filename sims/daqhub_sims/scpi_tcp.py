"""Serve a simulated SCPI instrument on a TCP socket, with fault injection.

pyvisa-sim cannot delay, drop or corrupt a reply, nor lose the link, so SCPI
drivers are also tested against :class:`ScpiTcpServer`, reached through
pyvisa-py as ``TCPIP::127.0.0.1::PORT::SOCKET`` with ``\\n`` read and write
termination (the usual raw-socket SCPI convention, e.g. port 5025 on real
instruments).

* Every client gets its own connection and thread; all share one
  :class:`~daqhub_sims.scpi.ScpiInstrument` under one lock, as several VISA
  sessions to one real instrument would.
* A message ends at ``\\n`` (a ``\\r`` before it is dropped); its reply, if any,
  is sent with one ``\\n``.
* Fault knobs may be changed while clients are connected. The one-shot faults
  (:meth:`~ScpiTcpServer.drop_next_reply`, :meth:`~ScpiTcpServer.garbage_next_reply`,
  :meth:`~ScpiTcpServer.truncate_next_reply`) queue up and each one spoils the
  next reply sent to any client, in the order they were requested.

Command line: ``python -m daqhub_sims.scpi_tcp --profile dmm --port 0`` prints
the resource name on one line and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from daqhub_sims.scpi import PROFILES, ScpiInstrument, make_instrument
from daqhub_sims.tcp_server import tcp_port

#: What :meth:`ScpiTcpServer.garbage_next_reply` sends when not told otherwise.
DEFAULT_GARBAGE = b"#~?GARBAGE,@@,!!"

#: A client that sends this much without a terminator is cut off (it is not SCPI).
MAX_MESSAGE_BYTES = 1 << 20

# How often blocked accept()/recv() calls wake up to notice shutdown; the
# controlling thread also shuts sockets down, so this is only a safety net.
_POLL_S = 0.25


@dataclass(frozen=True)
class _Fault:
    kind: str  # "drop", "garbage" or "truncate"
    data: bytes = b""
    length: int = 0
    terminate: bool = False


class ScpiTcpServer:
    """A threaded TCP server for one simulated SCPI instrument.

    Use it as a context manager (or call :meth:`start` / :meth:`close`). ``port=0``
    picks a free port; :attr:`port` and :attr:`resource` are valid once started.
    """

    def __init__(
        self,
        profile: str | ScpiInstrument = "dmm",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 0,
        latency: float = 0.0,
        join_timeout: float = 2.0,
    ) -> None:
        self.instrument: ScpiInstrument = (
            profile if isinstance(profile, ScpiInstrument) else make_instrument(profile, seed=seed)
        )
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._join_timeout = join_timeout
        self._latency = 0.0
        self.latency = latency

        self._instrument_lock = threading.Lock()
        # Guards the listener, the client table, the connected flag and the fault queue.
        self._state = threading.Condition()
        self._listener: socket.socket | None = None
        self._clients: dict[socket.socket, threading.Thread] = {}
        self._connected = True
        self._faults: deque[_Fault] = deque()
        self._stop = threading.Event()
        self._accept_thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> ScpiTcpServer:
        if self._accept_thread is not None:
            raise RuntimeError(f"{self!r} was already started")
        listener = self._bind(self._requested_port)
        self._port = listener.getsockname()[1]
        with self._state:
            self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"scpi-tcp-accept-{self._port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def close(self) -> None:
        """Stop serving: close every socket and join every thread within ``join_timeout``."""
        self._stop.set()
        with self._state:
            listener = self._listener
            clients = list(self._clients.items())
            self._state.notify_all()
        if listener is not None:
            _shutdown(listener)
        for conn, _ in clients:
            _shutdown(conn)
        deadline = time.monotonic() + self._join_timeout
        threads = [t for _, t in clients]
        if self._accept_thread is not None:
            threads.append(self._accept_thread)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            raise TimeoutError(
                f"{self!r}: threads {alive} still running {self._join_timeout} s after close()"
            )

    def __enter__(self) -> ScpiTcpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port is not None else "not started"
        return f"<ScpiTcpServer {self.instrument.profile} {where}>"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has no port until start() (or `with`)")
        return self._port

    @property
    def resource(self) -> str:
        """The VISA resource name pyvisa-py (``@py``) opens."""
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    @property
    def client_count(self) -> int:
        with self._state:
            return len(self._clients)

    def wait_for_clients(self, count: int, timeout: float = 2.0) -> None:
        """Block until exactly ``count`` clients are connected (e.g. 0 after a disconnect)."""
        with self._state:
            if not self._state.wait_for(lambda: len(self._clients) == count, timeout):
                raise TimeoutError(
                    f"{self!r}: waited {timeout} s for {count} connected client(s), "
                    f"{len(self._clients)} connected"
                )

    @contextmanager
    def locked(self) -> Iterator[ScpiInstrument]:
        """The instrument, with no client command running, to inspect or change its state."""
        if not self._instrument_lock.acquire(timeout=self._join_timeout):
            raise TimeoutError(
                f"{self!r}: instrument lock not free after {self._join_timeout} s "
                "(held by a client thread executing a command)"
            )
        try:
            yield self.instrument
        finally:
            self._instrument_lock.release()

    # --- fault knobs ---

    @property
    def latency(self) -> float:
        """Seconds every reply waits before it is sent (other clients are not held up)."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"latency must be >= 0 s, got {seconds}")
        self._latency = float(seconds)

    def drop_next_reply(self) -> None:
        """The next reply is never sent: the client times out."""
        self._add_fault(_Fault("drop"))

    def garbage_next_reply(self, data: bytes = DEFAULT_GARBAGE, *, terminate: bool = True) -> None:
        """The next reply is replaced by ``data`` (plus ``\\n`` unless ``terminate`` is False)."""
        self._add_fault(_Fault("garbage", data=bytes(data), terminate=terminate))

    def truncate_next_reply(self, n: int, *, terminate: bool = False) -> None:
        """Only the first ``n`` bytes of the next reply are sent, without ``\\n`` by default.

        Without a terminator the client times out and keeps the partial bytes in its
        buffer, as after a link that died mid-reply.
        """
        if n < 0:
            raise ValueError(f"cannot truncate to {n} bytes")
        self._add_fault(_Fault("truncate", length=n, terminate=terminate))

    def clear_faults(self) -> None:
        """Forget one-shot faults that have not fired yet (latency is kept)."""
        with self._state:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        with self._state:
            return len(self._faults)

    @property
    def connected(self) -> bool:
        with self._state:
            return self._connected

    def disconnect(self) -> None:
        """Drop every client and refuse new connections until :meth:`reconnect`.

        Returns once the port no longer accepts and every client thread has ended.
        """
        with self._state:
            self._connected = False
            listener = self._listener
            clients = list(self._clients)
        if listener is not None:
            _shutdown(listener)  # from here on, connects are refused
        for conn in clients:
            _shutdown(conn)
        with self._state:
            done = self._state.wait_for(
                lambda: self._listener is None and not self._clients, self._join_timeout
            )
            if not done:
                raise TimeoutError(
                    f"{self!r}: after disconnect(), waited {self._join_timeout} s for the "
                    f"listener and {len(self._clients)} client thread(s) to close"
                )

    def reconnect(self) -> None:
        """Listen again on the same port."""
        with self._state:
            if self._connected:
                return
        try:
            listener = self._bind(self.port)
        except OSError as err:
            raise OSError(err.errno, f"{self!r}: cannot listen again: {err.strerror}") from err
        with self._state:
            self._listener = listener
            self._connected = True
            self._state.notify_all()

    # --- internals ---

    def _bind(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, port))
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        listener.settimeout(_POLL_S)
        return listener

    def _add_fault(self, fault: _Fault) -> None:
        with self._state:
            self._faults.append(fault)

    def _accept_loop(self) -> None:
        """Owns the listener: only this thread accepts on it and closes it."""
        while not self._stop.is_set():
            with self._state:
                listener = self._listener
                if listener is not None and (not self._connected or self._stop.is_set()):
                    listener.close()
                    self._listener = listener = None
                    self._state.notify_all()
                if listener is None:
                    self._state.wait(_POLL_S)
                    continue
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                # Shut down by disconnect() or close() (the next pass closes it), or a
                # transient failure (ECONNABORTED, EMFILE): retry without spinning.
                if self.connected:
                    self._stop.wait(0.05)
                continue
            self._start_client(conn)
        with self._state:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
                self._state.notify_all()

    def _start_client(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(_POLL_S)
            peer_port = conn.getpeername()[1]
        except OSError:
            conn.close()  # the client hung up before we got to it
            return
        with self._state:
            if not self._connected or self._stop.is_set():
                conn.close()
                return
            thread = threading.Thread(
                target=self._serve_client,
                args=(conn,),
                name=f"scpi-tcp-client-{self._port}-{peer_port}",
                daemon=True,
            )
            self._clients[conn] = thread
            thread.start()  # under the lock, so close() never joins an unstarted thread
            self._state.notify_all()

    def _serve_client(self, conn: socket.socket) -> None:
        """Read messages, execute them, reply. Closes ``conn`` itself when done."""
        buffer = bytearray()
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                _ack_now(conn)
                buffer += data
                while (cut := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:cut]).rstrip(b"\r")
                    del buffer[: cut + 1]
                    if not self._answer(conn, line):
                        return
                if len(buffer) > MAX_MESSAGE_BYTES:
                    break
        finally:
            conn.close()
            with self._state:
                self._clients.pop(conn, None)
                self._state.notify_all()

    def _answer(self, conn: socket.socket, line: bytes) -> bool:
        """Execute one message and send its reply; False when the connection is gone."""
        if not self._instrument_lock.acquire(timeout=self._join_timeout):
            raise TimeoutError(
                f"{self!r}: instrument lock not free after {self._join_timeout} s "
                "(held by another client thread or by locked())"
            )
        try:
            reply = self.instrument.handle(line.decode("latin-1"))
        finally:
            self._instrument_lock.release()
        if reply is None:
            return True
        payload = self._apply_fault(reply.encode("latin-1") + b"\n")
        if self._latency > 0 and self._stop.wait(self._latency):
            return False
        if not payload:
            return True
        try:
            conn.sendall(payload)
        except OSError:
            return False
        return True

    def _apply_fault(self, payload: bytes) -> bytes:
        with self._state:
            fault = self._faults.popleft() if self._faults else None
        if fault is None:
            return payload
        if fault.kind == "drop":
            return b""
        terminator = b"\n" if fault.terminate else b""
        if fault.kind == "garbage":
            return fault.data + terminator
        return payload[:-1][: fault.length] + terminator


def _ack_now(conn: socket.socket) -> None:
    """Acknowledge received data at once instead of after Linux's ~40 ms delayed ACK.

    pyvisa-py leaves Nagle on, so a command that gets no reply followed by another
    message would otherwise stall ~40 ms per message. Linux resets the option after
    use, hence once per recv; elsewhere this does nothing.
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:
            pass  # the connection is going away; recv will report it


def _shutdown(sock: socket.socket) -> None:
    """Wake any thread blocked on ``sock``; its owner closes it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m daqhub_sims.scpi_tcp",
        description="Serve a simulated SCPI instrument over TCP until SIGINT/SIGTERM.",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="dmm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=tcp_port, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reading noise")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args(argv)
    serve_until_signalled(
        ScpiTcpServer(args.profile, args.host, args.port, seed=args.seed, latency=args.latency)
    )
    return 0


def serve_until_signalled(server: Any) -> None:
    """Start ``server`` (a context manager with a ``resource``), print its resource name on
    one line, and serve until SIGINT or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with server:
            print(server.resource, flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
