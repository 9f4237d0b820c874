"""A thread that moves bytes between an OS-level link (pty master, TCP client) and an endpoint.

Shared by :class:`~daqhub_sims.pty_server.PtyServer` and
:class:`~daqhub_sims.tcp_server.TcpServer`. The link follows the endpoint: when the line is
unplugged the thread tears the link down (so the client sees its OS's real errors), and when
it is plugged back in the thread brings a new link up. Plug and unplug return only once the
thread has done so, which makes fault tests deterministic.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from abc import ABC, abstractmethod
from types import TracebackType

from daqhub_sims.device import SimDevice
from daqhub_sims.endpoint import Endpoint, EndpointDisconnected, Session

log = logging.getLogger(__name__)

#: How long a caller waits for the bridge thread to act on a plug/unplug or to stop.
ACK_TIMEOUT_S = 2.0
#: Longest poll, so a lost wake-up costs at most this much.
_MAX_POLL_S = 1.0


class BridgeError(RuntimeError):
    pass


class Bridge(ABC):
    """Base of the servers: lifecycle, wake pipe, state following and the output pump."""

    def __init__(self, target: SimDevice | Endpoint, label: str) -> None:
        self.endpoint = target if isinstance(target, Endpoint) else Endpoint(target, label)
        self._label = label
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._ack = threading.Condition()
        self._change_seq = 0
        self._handled_seq = 0
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._session: Session | None = None
        self._link_up_now = False
        self._pending = bytearray()  # taken from the endpoint, not yet written to the link
        self.error: BaseException | None = None  # what killed the thread, if anything

    # -- public lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise BridgeError(f"{self._label} already started")
        self.endpoint.watch(self._on_change)
        self._follow_line()  # bring the link up in the caller so its address is known
        self._thread = threading.Thread(target=self._run, name=self._label, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (joined with a time-out) and release every descriptor."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(ACK_TIMEOUT_S)
            if thread.is_alive():
                raise BridgeError(
                    f"{self._label}: pump thread did not stop within {ACK_TIMEOUT_S} s"
                )
        self.endpoint.unwatch(self._on_change)
        self._take_down()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def disconnect(self) -> None:
        """Unplug the line (``endpoint.faults.disconnect()``); returns once the link is down."""
        self.endpoint.faults.disconnect()

    def reconnect(self) -> None:
        """Plug the line back in; returns once a new link is up."""
        self.endpoint.faults.reconnect()

    def __enter__(self) -> Bridge:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- subclass interface ---------------------------------------------------------------
    @abstractmethod
    def _link_up(self) -> None:
        """Create the OS link (called with the line plugged in)."""

    @abstractmethod
    def _link_down(self) -> None:
        """Destroy the OS link so the client sees a vanished device."""

    @abstractmethod
    def _poll_fds(self) -> list[tuple[int, int]]:
        """Descriptors and poll masks besides the wake pipe."""

    @abstractmethod
    def _on_event(self, fd: int, events: int) -> None:
        """Handle readiness of one of :meth:`_poll_fds`."""

    @abstractmethod
    def _send(self, data: bytes) -> int:
        """Write to the link without blocking; bytes written (0 if it would block)."""

    @abstractmethod
    def _has_peer(self) -> bool:
        """Whether output has somewhere to go now (otherwise it stays on the line)."""

    # -- for subclasses -----------------------------------------------------------------
    def _deliver(self, data: bytes) -> None:
        """Bytes from the client to the device."""
        session = self._session
        if session is None:
            return
        try:
            session.write(data)
        except EndpointDisconnected:
            self._wake()  # the line went away meanwhile; the loop takes the link down
        self._pump_out()

    # -- thread ---------------------------------------------------------------------------
    def _on_change(self, line_changed: bool) -> None:
        with self._ack:
            self._change_seq += 1
            target = self._change_seq
        self._wake()
        if not line_changed or threading.current_thread() is self._thread or self._stopping:
            return
        with self._ack:
            if not self._ack.wait_for(lambda: self._handled_seq >= target, ACK_TIMEOUT_S):
                raise BridgeError(
                    f"{self._label}: pump thread did not act on a line plug/unplug within "
                    f"{ACK_TIMEOUT_S} s (thread alive: {self._thread_alive()}, "
                    f"error: {self.error!r})"
                )

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        registered: list[tuple[int, int]] = []
        woken = True  # a timeout or the wake pipe: look at the line and the device
        try:
            while not self._stopping:
                if woken:
                    seq = self._change_seq  # an int read; the lock orders the ack below
                    self._follow_line()
                    self._pump_out()
                    if seq != self._handled_seq:
                        with self._ack:
                            self._handled_seq = seq
                            self._ack.notify_all()
                wanted = self._poll_fds()
                if wanted != registered:
                    for fd, _ in registered:
                        poller.unregister(fd)
                    for fd, mask in wanted:
                        poller.register(fd, mask)
                    registered = wanted
                events = poller.poll(self._poll_timeout_ms())
                woken = not events
                for fd, mask in events:
                    if fd == self._wake_r:
                        woken = True
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                    else:
                        self._on_event(fd, mask)
        except BaseException as exc:  # noqa: BLE001 - recorded, reported by close()/acks
            self.error = exc
            log.exception("%s: pump thread died", self._label)
            with self._ack:
                self._handled_seq = self._change_seq
                self._ack.notify_all()

    def _poll_timeout_ms(self) -> int:
        wait = _MAX_POLL_S
        session = self._session
        if session is not None:
            event = session.next_event_in()
            if event is not None:
                wait = min(wait, event)
            # next_event_in may itself have collected the last bytes of a reply (then no event
            # is left to wake us): a transport that takes them must not sleep on them
            if self._has_peer():
                with contextlib.suppress(EndpointDisconnected):
                    if session.in_waiting():
                        wait = 0.0
        return max(0, int(wait * 1000 + 0.999))  # round up: never wake before the bytes are due

    def _follow_line(self) -> None:
        """Make the link match the line: down when unplugged, up (anew) when plugged in."""
        session = self._session
        if session is not None and not session.alive:
            self._take_down()
        if self._session is None and self.endpoint.connected and not self._stopping:
            try:
                self._session = self.endpoint.open_session(self._on_change)
            except EndpointDisconnected:
                return
            self._link_up()
            self._link_up_now = True

    def _take_down(self) -> None:
        if self._link_up_now:
            self._link_down()
            self._link_up_now = False
        if self._session is not None:
            self._session.close()
            self._session = None
        self._pending.clear()

    def _pump_out(self) -> None:
        session = self._session
        if session is None or not self._has_peer():
            return  # leave the bytes to another transport sharing the line, if any
        try:
            self._pending += session.take()
        except EndpointDisconnected:
            self._wake()
            return
        while self._pending:
            sent = self._send(bytes(self._pending))
            if sent <= 0:
                break
            del self._pending[:sent]
