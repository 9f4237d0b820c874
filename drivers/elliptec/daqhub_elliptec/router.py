"""The reply router of one Elliptec bus: the toolkit's multi-drop router
(:mod:`daqhub.driver.bus`) with Elliptec's line format and reply matching.

Up to 16 modules share one serial line and a move answers only when motion ends, seconds
after its command, so whoever reads the line may read another module's deferred ``PO``;
every Elliptec instrument of either flavor on a port reads through one :class:`BusRouter`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from daqhub.driver import bus

from . import status
from .frames import BadLine, Command, Frame, Line, parse_line, truncated

ROUTER_KEY = "elliptec.bus"


@dataclass
class Expectation:
    """Which lines of an address answer a command, and what was skipped on the way.

    A ``GS09`` before a deferred ``PO`` is interim (the manual says one may
    precede it); to an immediate command it is the answer (the module is busy).
    ``GS00`` never answers a data query or a move, so one seen while waiting
    for those is a stale acknowledgement of an earlier command; it is the end of a
    deferred command whose answer is a status (``s1``, the frequency search).
    """

    command: Command
    seen_busy: bool = False
    skipped: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.command.answers_from

    def matches(self, line: Line) -> bool:
        if isinstance(line, BadLine):
            return True
        reply = self.command.reply
        if line.mnemonic == "GS":
            code = line.status
            assert code is not None
            if reply == "GS" and not self.command.deferred:
                return True
            if code == status.BUSY:
                self.seen_busy = True
                return not self.command.deferred
            if code == status.OK and reply != "GS":
                self._skip(line)
                return False
            return True
        if line.mnemonic == reply:
            return True
        self._skip(line)
        return False

    def _skip(self, line: Frame) -> None:
        if len(self.skipped) < 8 and line.text not in self.skipped:
            self.skipped.append(line.text)


class BusRouter(bus.BusRouter):
    """Lines of an Elliptec bus: ``<CR><LF>``-terminated, parsed strictly (:mod:`.frames`);
    ``BS``/``BO`` are a handset's moves, which no command asked for. ``IN`` answers ``in``
    alone, so a late one harms nobody and owes nothing, and a module answers in order, so an
    ``IN`` ends what its address owed: ``in`` is how the driver gets an address back in step
    (:mod:`.axis`). It also keeps where ``change_address`` moved each instrument's module
    (:meth:`current_address`), since it outlives the instrument's sessions."""

    max_line = 256  # the longest reply (IN) is 35 bytes

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._moved_lock = threading.Lock()
        self._moved: dict[str, str] = {}

    def current_address(self, owner: str, configured: str) -> str:
        """The address instrument ``owner``'s module answers at: where ``change_address``
        last moved it in this process, else ``configured`` (the lab file's). The router
        outlives an instrument's sessions (one per connect), so a reconnect after a
        re-address asks the module where it is, not where it was when the run began."""
        with self._moved_lock:
            return self._moved.get(owner, configured)

    def moved(self, owner: str, address: str) -> None:
        """``owner``'s module answers at ``address`` now (``ca`` done): :meth:`current_address`."""
        with self._moved_lock:
            self._moved[owner] = address

    def parse_line(self, raw: bytes) -> list[Any]:
        return parse_line(raw)

    def truncated(self, raw: bytes) -> BadLine:
        return truncated(raw)

    def unsolicited(self, line: Any) -> bool:
        return isinstance(line, Frame) and line.mnemonic in ("BS", "BO")

    def late_reply(self, expect: Any, line: Any) -> bool:
        """Never ``GS09``: busy says nothing a late reply could, and one coming now is more
        likely the module telling a later command (the sync's ``in``) it is busy."""
        busy = isinstance(line, Frame) and line.status == status.BUSY
        return not busy and bool(expect.matches(line))

    def owes_reply(self, expect: Any) -> bool:
        return bool(expect.command.reply != "IN")

    def in_step(self, line: Any) -> bool:
        return isinstance(line, Frame) and line.mnemonic == "IN"
