"""A base for simulators of line-oriented instruments: one command line in, replies out.

Most instruments read ASCII lines and answer each with one line. :class:`LineDevice` keeps
the receive buffer and the output queue, so a simulator only says what a line means
(:meth:`answer`). Replies are due at once (``next_output_in`` is 0 while any wait); a
latency or fault is the transport's business (``sim_endpoint(url).faults``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from daqhub_sims.device import Clock, SimDevice


def number_option(options: Mapping[str, str], name: str, default: float | None = None,
                  device: str = "device") -> float:
    """A finite number from a ``sim://`` option (strings, as the URL carries them); without
    a ``default`` the option must be there (options already merged with their defaults)."""
    text = options.get(name)
    if text is None:
        if default is None:
            raise KeyError(f"{device} option {name} is missing")
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{device} option {name}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{device} option {name}={text!r} must be finite")
    return value


class LineDevice(SimDevice):
    """Splits the host's bytes at ``line_end`` and queues ``answer(line) + reply_end``.

    ``max_line`` bytes before the end of a line make it overlong: :meth:`overlong` answers
    instead of :meth:`answer`. Blank lines (after stripping) get no reply.
    """

    line_end: bytes = b"\n"
    reply_end: bytes = b"\r\n"
    encoding: str = "latin-1"
    max_line: int | None = None
    #: bytes dropped at the start of a line (``b"\n"``: the LF of a CR LF when lines end in CR)
    skip_leading: bytes = b""

    def __init__(self, options: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(options, clock)
        self._rx = bytearray()
        self._too_long = False
        self._out = bytearray()

    def answer(self, line: str) -> str | None:
        """The reply to one stripped, non-empty line (None: no reply)."""
        raise NotImplementedError

    def overlong(self) -> str | None:
        """The reply to a line longer than ``max_line`` (discarded unread)."""
        return None

    def feed(self, data: bytes) -> None:
        for byte in data:
            if bytes([byte]) == self.line_end:
                line, too_long = self._rx.decode(self.encoding).strip(), self._too_long
                self._rx.clear()
                self._too_long = False
                reply = self.overlong() if too_long else (self.answer(line) if line else None)
                if reply is not None:
                    self._out += reply.encode(self.encoding) + self.reply_end
            elif not self._rx and byte in self.skip_leading:
                continue
            elif self.max_line is not None and len(self._rx) >= self.max_line:
                self._too_long = True
            else:
                self._rx.append(byte)

    def read(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_output_in(self) -> float | None:
        return 0.0 if self._out else None
