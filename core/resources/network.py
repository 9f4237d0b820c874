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
  ``max-connections: 1``, without ``kickolduser``) and turns the next one away, which the
  opener sees as a failed open (:func:`refused_hint` says why).
"""

from __future__ import annotations

from typing import Any

import serial
import serial.rfc2217

SCHEMES = ("rfc2217", "socket")


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


class Rfc2217Serial(serial.rfc2217.Serial):  # type: ignore[misc]
    """pyserial's RFC 2217 client, with two client-side matters kept on the client.

    The base class renegotiates every line setting with the server (waiting for each ack in
    50 ms sleeps) when the *read timeout* changes, and asks the server to purge and waits for
    its ack on ``reset_input_buffer``: 50-100 ms per query for drivers that set a per-query
    timeout or clear stale input. Neither concerns the server: the timeout is how long this
    process waits, and clearing input means dropping what has arrived here (ser2net with
    ``chardelay: false`` forwards at once).
    """

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
    """An unopened pyserial object for ``name``, as ``serial.serial_for_url`` gives it."""
    if scheme_of(name) != "rfc2217":
        return serial.serial_for_url(name, do_not_open=True, **kwargs)
    ser = Rfc2217Serial(None, **kwargs)
    ser.port = name
    return ser


def refused_hint(name: str) -> str:
    """What to add to a failed open of a network port."""
    if not is_network_port(name):
        return ""
    return ("; is the serial server running, and is the port free? (ser2net serves one client "
            "at a time and turns the next away)")
