"""The reply router of one Elliptec bus: every line read from the port, filed by address.

Up to 16 modules share one serial line and a move answers only when motion
ends, seconds after its command. So the bus lock cannot be held for a whole
move, and whoever happens to read the line (device 1 polling its position)
may read device 0's deferred ``PO``. One :class:`BusRouter` per port (made
with ``port.shared(ROUTER_KEY, BusRouter)``) is what every transaction of every
Elliptec instrument, v2 or v4, reads through: each line lands in the inbox of
the address it came from, and a condition variable (plus futures for
coroutines) wakes whoever waits for that address. A waiter for whom nobody
else is reading drains the line itself, in short transactions (:meth:`pump`)
that let other instruments' traffic through in between.

Methods named ``exchange``/``send``/``pump`` are transaction functions: they
run with the port held. The others only touch the router's own state.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from . import status
from .frames import BadLine, Command, Frame, Line, parse_line, truncated

if TYPE_CHECKING:
    from daqhub.resources import SharedSerialPort

ROUTER_KEY = "elliptec.bus"

#: Longest wait of one read call, so a transaction re-checks its inbox and deadline often.
READ_SLICE_S = 0.05
#: Silence (while reading) after which bytes without an end of line count as a truncated reply.
#: At 9600 baud the characters of one reply are ~1 ms apart.
TRUNCATION_GAP_S = 0.2
#: How long a command's reply is still awaited after a garbled line nobody claims.
GARBAGE_GRACE_S = 0.1
#: Longest line kept; the longest reply (IN) is 35 bytes.
MAX_LINE = 256
#: Lines kept per address for nobody (stale or unsolicited) before the oldest are dropped.
INBOX_DEPTH = 16


class BusIO(Protocol):
    """What the router needs of the port handle a transaction gets (``PortIO``)."""

    timeout: float | None

    @property
    def in_waiting(self) -> int: ...

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes: ...


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


class BusRouter:
    """Inboxes per address, the bytes of a line not yet complete, and who owns which address.

    ``stats`` counts what a bus health check wants to see: ``lines`` read, ``taken`` by
    their waiter, ``routed`` (read by one address's transaction, filed for another),
    ``stale`` (left unclaimed and dropped at the address's next command), ``garbled``,
    ``truncated``, ``unsolicited`` (``BS``/``BO`` of handset moves) and ``overflow``.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._cond = threading.Condition()
        self._inbox: dict[str, deque[Line]] = {}
        self._partial = bytearray()
        self._silent_s = 0.0
        self._version = 0
        self._reading = False
        self._reading_for: str | None = None  # address whose reply the current reader wants
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._owners: dict[str, str] = {}
        self._damage: deque[tuple[float, BadLine]] = deque(maxlen=8)
        self.stats: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<BusRouter {self.name or hex(id(self))} owners={self._owners}>"

    # ------------------------------------------------------------------ ownership
    def claim(self, address: str, owner: str) -> None:
        """Reserve an address for one instrument; two on one address would steal replies."""
        with self._cond:
            holder = self._owners.get(address)
            if holder is not None and holder != owner:
                raise ValueError(f"address {address} on bus {self.name} is already used by "
                                 f"instrument {holder!r}")
            self._owners[address] = owner

    def release(self, address: str, owner: str) -> None:
        with self._cond:
            if self._owners.get(address) == owner:
                del self._owners[address]

    def owner_of(self, address: str) -> str | None:
        with self._cond:
            return self._owners.get(address)

    # ------------------------------------------------------------------ waiting (no port held)
    def poll(self, expect: Expectation) -> tuple[Line | None, int, bool]:
        """The reply if filed, else the state to wait on: (reply, version, someone reading)."""
        with self._cond:
            return self._take_locked(expect), self._version, self._reading

    def wait(self, version: int, timeout: float) -> None:
        """Block until a line is filed or a reader finishes (anything after ``version``)."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout)

    async def wait_async(self, version: int, timeout: float) -> None:
        """:meth:`wait` for coroutines: the filing thread wakes the loop through a future."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        with self._cond:
            if self._version != version:
                return
            self._async_waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            with self._cond:
                if entry in self._async_waiters:
                    self._async_waiters.remove(entry)

    def damage_since(self, since: float) -> list[str]:
        """Damaged lines seen since ``since`` (monotonic), for timeout messages."""
        with self._cond:
            return [bad.describe() for t, bad in self._damage if t >= since]

    # ------------------------------------------------------------------ transaction functions
    def send(self, io: BusIO, command: Command, drop_stale: bool = True) -> None:
        """Write a command whose reply is collected later (a move)."""
        self._prepare(io, command, drop_stale)
        io.write(command.wire())

    def exchange(self, io: BusIO, expect: Expectation, reply_timeout: float,
                 drop_stale: bool = True) -> Line | None:
        """Write a command and read until its reply is filed; None if none came in time.

        A garbled line that names no address may be this command's damaged
        reply, or noise before it: the reply is awaited a little longer
        (``GARBAGE_GRACE_S``) and the garbage returned only if none comes.
        ``drop_stale`` forgets what the address said before (nobody waits for
        it); not while a move of that address is pending, whose end may already
        be filed.
        """
        command = expect.command
        self._prepare(io, command, drop_stale)
        with self._cond:
            self._reading = True
            self._reading_for = expect.address
        try:
            io.write(command.wire())
            deadline = time.monotonic() + reply_timeout
            orphan: BadLine | None = None
            while True:
                with self._cond:
                    line = self._take_locked(expect)
                if line is not None:
                    return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return orphan or self._partial_reply(expect.address)
                orphans = self._read_once(io, min(remaining, READ_SLICE_S))
                if orphans and orphan is None:
                    orphan = orphans[0]
                    deadline = min(deadline, time.monotonic() + GARBAGE_GRACE_S)
        finally:
            self._done_reading()

    def pump(self, io: BusIO, expect: Expectation, budget: float,
             others_waiting: Callable[[], int]) -> Line | None:
        """Read the bus for up to ``budget`` s on behalf of a waiter; its reply or None.

        Returns early once other transactions queue for the port (and no reply is
        half-read), so a long wait never delays other instruments by more than one
        read slice.
        """
        with self._cond:
            line = self._take_locked(expect)
            if line is not None:
                return line
            self._reading = True
            self._reading_for = expect.address
        try:
            deadline = time.monotonic() + budget
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._read_once(io, min(remaining, READ_SLICE_S))
                with self._cond:
                    line = self._take_locked(expect)
                if line is not None:
                    return line
                if not self._partial and others_waiting() > 0:
                    return None
        finally:
            self._done_reading()

    # ------------------------------------------------------------------ internals
    def _partial_reply(self, address: str) -> BadLine | None:
        """The start of ``address``'s reply still being read when its waiter gives up.

        The bytes stay buffered: if the rest comes, the line is filed (and later
        dropped as stale) instead of garbling the next reply.
        """
        if self._partial[:1] == address.encode():
            bad = truncated(bytes(self._partial))
            if bad.address == address:
                return bad
        return None

    def _prepare(self, io: BusIO, command: Command, drop_stale: bool) -> None:
        """File what already arrived, then forget the address's unclaimed lines.

        Filing first matters: a reply that came after its waiter gave up would
        otherwise be read after the next command and taken as its answer.
        """
        waiting = io.in_waiting
        if waiting:
            self._absorb(io.read(waiting))
        if drop_stale:
            with self._cond:
                self._drop_locked(command)

    def _read_once(self, io: BusIO, timeout: float) -> list[BadLine]:
        """Read at most one line (or time out) and file it; returns orphan garbage."""
        if io.timeout != timeout:
            io.timeout = timeout  # a real port reprograms termios on every assignment
        t0 = time.monotonic()
        data = io.read_until(b"\n", MAX_LINE)
        if data:
            return self._absorb(data)
        if self._partial:
            self._silent_s += time.monotonic() - t0
            if self._silent_s >= TRUNCATION_GAP_S:
                line = truncated(bytes(self._partial))
                self._partial.clear()
                self._silent_s = 0.0
                return self._file([line])
        return []

    def _absorb(self, data: bytes) -> list[BadLine]:
        """Add bytes read; file every line they complete."""
        self._silent_s = 0.0
        self._partial += data
        lines: list[Line] = []
        while True:
            end = self._partial.find(b"\n")
            if end < 0:
                break
            lines += parse_line(bytes(self._partial[:end + 1]))
            del self._partial[:end + 1]
        if len(self._partial) >= MAX_LINE:
            lines.append(BadLine(None, bytes(self._partial), "garbled"))
            self._partial.clear()
        return self._file(lines) if lines else []

    def _file(self, lines: list[Line]) -> list[BadLine]:
        orphans: list[BadLine] = []
        now = time.monotonic()
        with self._cond:
            for line in lines:
                self.stats["lines"] += 1
                if isinstance(line, BadLine):
                    self.stats[line.reason] += 1
                    self._damage.append((now, line))
                    if line.address is None:
                        orphans.append(line)
                        continue
                    address = line.address
                else:
                    if line.mnemonic in ("BS", "BO"):
                        self.stats["unsolicited"] += 1  # front-panel / handset moves
                    address = line.address
                if self._reading_for is not None and address != self._reading_for:
                    self.stats["routed"] += 1  # read by one instrument, filed for another
                box = self._inbox.setdefault(address, deque(maxlen=INBOX_DEPTH))
                if len(box) == box.maxlen:
                    self.stats["overflow"] += 1
                box.append(line)
            self._bump_locked()
        return orphans

    def _take_locked(self, expect: Expectation) -> Line | None:
        """Remove and return the first line answering ``expect``.

        Other lines of the address stay: one may answer another expectation of
        the same address (``st`` is answered while the jog it ends still owes its
        ``PO``). Whatever nobody takes goes at the address's next command.
        """
        box = self._inbox.get(expect.address)
        if not box:
            return None
        for i, line in enumerate(box):
            if expect.matches(line):
                del box[i]
                self.stats["taken"] += 1
                return line
        return None

    def _drop_locked(self, command: Command) -> None:
        """Forget what an address said before this command: nobody is waiting for it."""
        for address in {command.address, command.answers_from}:
            box = self._inbox.get(address)
            if box:
                self.stats["stale"] += len(box)
                box.clear()

    def _done_reading(self) -> None:
        with self._cond:
            self._reading = False
            self._reading_for = None
            self._bump_locked()

    def _bump_locked(self) -> None:
        self._version += 1
        self._cond.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # that loop is closed; its waiter is gone with it
                pass


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def bus_router(port: SharedSerialPort) -> BusRouter:
    """The one router of ``port``, shared by every Elliptec instrument of both flavors on it."""
    return port.shared(ROUTER_KEY, lambda: BusRouter(port.name))
