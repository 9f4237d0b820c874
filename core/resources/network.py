"""Serial ports on the network: pyserial's ``rfc2217://`` and ``socket://`` URLs.

A serial server (ser2net, a terminal server) makes a remote port look like a TCP service: raw
bytes (``socket://host:port``) or telnet with RFC 2217 line control
(``rfc2217://host:port``, baud rate and framing set from here). The shared-port manager opens
them like local ports; what differs is collected here, so :mod:`.serial` stays one code path:

- pyserial's RFC 2217 client refuses ``write_timeout`` ("not supported"), so it is dropped;
  a write to a dead link fails on its own (socket error) instead of hanging;
- a dropped link is a disconnect: ``socket://`` raises on EOF by itself, but the RFC 2217
  client only notices on the *next* read (its reader thread ended), so the read that was
  waiting looks like a reply timeout. :func:`link_lost` tells the two apart, and the port then
  takes the usual disconnect path (fail the queue, reopen with backoff: a restarted server
  is a reconnect);
- pyserial's RFC 2217 client talks to the server for what is local (read timeout, dropping
  received input), at 50-100 ms a time: :class:`Rfc2217Serial` keeps those local;
- exclusive ownership is the server's: ser2net lets one client in at a time (its default
  ``max-connections: 1``, without ``kickolduser``) and turns the next one away: it writes
  ``Port already in use`` and closes. The connection itself is accepted, so only that line
  tells the refusal from a device that has not spoken yet; :func:`refusal` reads it, and the
  open fails naming the server and why (:func:`refused_hint` adds what to check). pyserial's
  RFC 2217 reader thread, answering the negotiation of a server that has already closed,
  ends quietly (:meth:`Rfc2217Serial._internal_raw_write`) rather than with a traceback.
"""

from __future__ import annotations

import queue
import re
import select
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import serial
import serial.rfc2217
import serial.urlhandler.protocol_socket

SCHEMES = ("rfc2217", "socket")

#: The line ser2net (4.x; raw and telnet accepters alike) writes to a client it turns away,
#: just before it closes the connection, and what that means for the client.
REFUSALS = {
    b"Port already in use": "another client holds the port",
    b"Device open failure": "the server cannot open its serial device",
}
#: The telnet negotiation (IAC WILL/WONT/DO/DONT option) a telnet accepter sends first.
_NEGOTIATION = re.compile(rb"(?:\xff[\xfb-\xfe][\x00-\xff])*")
#: How long a ``socket://`` open waits for a refusal on top of twice the connect's own time.
#: ser2net writes the refusal as it accepts, so it arrives about one round trip after
#: connect() returns (the connect took one); this margin is for the server's scheduling (a
#: few ms on a busy machine). A device that has not spoken costs the open this much; one that
#: has ends the wait at its first byte.
REFUSAL_MARGIN_S = 0.05
#: The most a ``socket://`` open waits (a slow name lookup makes the connect look slow).
REFUSAL_WAIT_MAX_S = 0.5


def scheme_of(name: str) -> str:
    """``rfc2217`` for ``rfc2217://host:port``, ``""`` for a local device path."""
    return name.split("://", 1)[0].lower() if "://" in name else ""


def is_network_port(name: str) -> bool:
    return scheme_of(name) in SCHEMES


def open_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The pyserial settings ``name``'s handler accepts (a copy)."""
    out = dict(kwargs)
    if scheme_of(name) == "rfc2217":
        out.pop("write_timeout", None)
    return out


def link_lost(ser: serial.SerialBase) -> str | None:
    """Why the network link under ``ser`` is gone, or None while it stands (or not networked)."""
    if isinstance(ser, serial.rfc2217.Serial) and getattr(ser, "_thread", True) is None:
        return "the connection to the RFC 2217 server was closed (reader thread ended)"
    return None


class ServerRefused(serial.SerialException):  # type: ignore[misc]
    """The serial server turned this client away, and said why: the open's error needs no
    guess at what to check (:func:`refused_hint`)."""


def refusal(name: str, text: bytes) -> str | None:
    """Why the serial server behind ``name`` turned this client away, judged by the first
    data it sent (telnet negotiation taken off); None when that is not one of ser2net's
    refusals (a device's data, say)."""
    for banner, meaning in REFUSALS.items():
        if text.startswith(banner):
            said = text.split(b"\r", 1)[0].decode("ascii", "replace")
            return (f"the serial server at {urlsplit(name).netloc} turned this client away "
                    f"({said!r}): {meaning}")
    return None


class SocketSerial(serial.urlhandler.protocol_socket.Serial):  # type: ignore[misc]
    """pyserial's ``socket://`` client, whose open fails when the server turns it away.

    ser2net accepts the TCP connection it refuses, so without a look at what it sends first
    the open succeeds and the refusal shows only at the first query, as a garbled reply or a
    broken pipe: a second daqhub would start and sit in ``reconnecting``. The look comes
    between the connect and pyserial's clean start (which drops whatever has arrived), is a
    peek (device data is left to that clean start, as before), and lasts until the first
    byte arrives: a device that talks unasked ends it at once, a quiet one costs the open
    :data:`REFUSAL_MARGIN_S` plus two connect times. A telnet accepter's negotiation is
    dropped there and the look goes on for what follows. Its limit: a refusal that arrives
    later (a server stalled for longer than that) is missed, and the open fails on its first
    query instead, as a disconnect.
    """

    _socket: socket.socket | None  # pyserial's connection (it leaves the type to inference)

    def open(self) -> None:
        self._connect_started = time.monotonic()
        super().open()

    def _reconfigure_port(self) -> None:
        super()._reconfigure_port()
        if self.is_open:  # a setting changed on the open port (nothing to do on a socket)
            return
        # pyserial 3.5's open(): connect, this, then is_open and the clean start
        sock = self._socket
        assert sock is not None
        connect_s = time.monotonic() - self._connect_started
        why = self._turned_away(sock, min(REFUSAL_MARGIN_S + 2 * connect_s,
                                          REFUSAL_WAIT_MAX_S))
        if why is not None:
            sock.close()
            self._socket = None
            raise ServerRefused(why)

    def _turned_away(self, sock: socket.socket, wait_s: float) -> str | None:
        """The server's refusal, if what it sends within ``wait_s`` is one."""
        deadline = time.monotonic() + wait_s
        try:
            while select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                first = sock.recv(256, socket.MSG_PEEK)
                negotiation = _NEGOTIATION.match(first)
                told = negotiation.end() if negotiation else 0
                if not told or told < len(first):
                    return refusal(self.portstr, first[told:])
                sock.recv(told)  # telnet negotiation only, so far: the line would follow
        except OSError:
            pass  # a reset link: the first read reports it, as a disconnect
        return None


class Rfc2217Serial(serial.rfc2217.Serial):  # type: ignore[misc]
    """pyserial's RFC 2217 client, with two client-side matters kept on the client, and a
    refusal by the server named as one.

    The base class renegotiates every line setting with the server (waiting for each ack in
    50 ms sleeps) when the *read timeout* changes, and asks the server to purge and waits for
    its ack on ``reset_input_buffer``: 50-100 ms per query for drivers that set a per-query
    timeout or clear stale input. Neither concerns the server: the timeout is how long this
    process waits, and clearing input means dropping what has arrived here (ser2net with
    ``chardelay: false`` forwards at once).

    A server that turns the client away sends its telnet negotiation, its refusal line, and
    closes: the open fails (a broken pipe, or no negotiation within pyserial's 3 s), and the
    line its reader thread queued says why.
    """

    def open(self) -> None:
        try:
            super().open()
        except (serial.SerialException, OSError) as exc:
            why = refusal(self.portstr, self._received())
            if why is None:
                raise
            raise ServerRefused(why) from exc

    def _received(self) -> bytes:
        """The data the reader thread queued; after a failed open (pyserial closed the port
        and joined the thread) that is all the server sent."""
        got = bytearray()
        while self._read_buffer is not None:
            try:
                byte = self._read_buffer.get_nowait()
            except queue.Empty:
                break
            if byte is None:  # the reader's mark for the end of the link
                break
            got += byte
        return bytes(got)

    def _internal_raw_write(self, data: bytes) -> None:
        """Send telnet commands; from the reader thread, a link that is gone is no error.

        The reader thread answers the server's negotiation. On a link the server has closed
        (ser2net's refusal: negotiation, its line, close) the answer fails, and pyserial lets
        that OSError end the thread with a traceback on stderr, before it has queued the line
        that follows. Swallowed here, the thread reads on to the end of the stream and ends
        as pyserial ends it on a lost link: quietly, with the mark that tells readers.
        """
        try:
            super()._internal_raw_write(data)
        except OSError:
            if threading.current_thread() is not self._thread:
                raise

    @property
    def timeout(self) -> float | None:
        return self._timeout  # type: ignore[no-any-return]

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        if value is not None and value < 0:
            raise ValueError(f"not a valid timeout: {value!r}")
        self._timeout = value

    def reset_input_buffer(self) -> None:
        waiting = self.in_waiting
        while waiting:
            self.read(waiting)
            waiting = self.in_waiting


def serial_for_url(name: str, **kwargs: Any) -> serial.SerialBase:
    """An unopened pyserial object for ``name``, as ``serial.serial_for_url`` gives it (the
    network schemes with this module's changes)."""
    kinds: dict[str, type[serial.SerialBase]] = {"rfc2217": Rfc2217Serial,
                                                 "socket": SocketSerial}
    kind = kinds.get(scheme_of(name))
    if kind is None:
        return serial.serial_for_url(name, do_not_open=True, **kwargs)
    ser = kind(None, **kwargs)
    ser.port = name
    return ser


def refused_hint(name: str, exc: BaseException | None = None) -> str:
    """What to add to a failed open of a network port (``exc``: why it failed): nothing when
    the server said why itself (:class:`ServerRefused`)."""
    if not is_network_port(name) or isinstance(exc, ServerRefused):
        return ""
    return ("; is the serial server running, and is the port free? (ser2net serves one client "
            "at a time and turns the next away)")
