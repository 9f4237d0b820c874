"""A multi-drop bus: many devices on one serial line, replies filed by the address they
come from, and replies that come seconds after their command.

On such a bus (the Thorlabs Elliptec's, RS-485 multi-drop instruments) a move answers only
when motion ends, so the port cannot be held for a whole command, and whoever happens to read
the line (device 1 polling its position) may read device 0's deferred reply. One
:class:`BusRouter` per port is what every transaction of every instrument on it, v2 or v4,
reads through: each line lands in the inbox of the address it came from, and a condition
variable (plus futures for coroutines) wakes whoever waits for that address. A waiter for
whom nobody else is reading drains the line itself, in short transactions (:meth:`~BusRouter.
pump`) that let other instruments' traffic through in between.

An exchange holds the port only to write its command and while nobody else wants it; the
rest of its wait is a collect's, so one address that stays silent does not hold up the
others. A reply given up on may still come: the address then owes it (:meth:`BusRouter.owe`)
and the next line of that address it matches is taken as that late reply, never as the answer
to a later command.

A driver's plans yield the bus steps (:class:`Exchange`, :class:`Send`, :class:`Collect`)
besides the toolkit's; :class:`BusSession` is the flavor hook that runs them. Router methods
named ``exchange``/``send``/``pump`` are transaction functions (they run with the port
held); the others only touch the router's own state.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeAlias

from ..resources import ResourceEvent
from ..specs import InstrumentContext
from .session import Session, arun, run
from .transaction import Pause, Transaction

#: Longest wait of one read call, so a transaction re-checks its inbox and deadline often.
READ_SLICE_S = 0.05
#: Silence (while reading) after which bytes without an end of line count as a truncated reply.
#: At 9600 baud the characters of one reply are ~1 ms apart.
TRUNCATION_GAP_S = 0.2
#: How long a command's reply is still awaited after a garbled line nobody claims.
GARBAGE_GRACE_S = 0.1
#: Lines kept per address for nobody (stale or unsolicited) before the oldest are dropped.
INBOX_DEPTH = 16
#: How long a reply given up on is still looked for, in reply timeouts: it may come late, or
#: never (answers get lost too, so a debt cannot keep an address out of step for good).
OWED_TIMEOUTS = 10
#: Link outages remembered per bus, for the timeout messages of replies lost in one.
OUTAGES_KEPT = 8


class BusIO(Protocol):
    """What the router needs of the port handle a transaction gets (``PortIO``)."""

    timeout: float | None

    @property
    def in_waiting(self) -> int: ...

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes: ...


class BusCommand(Protocol):
    """What the router needs of a command: its bytes, and which addresses it concerns."""

    @property
    def address(self) -> str: ...

    @property
    def answers_from(self) -> str:
        """The address whose line answers it (another one for a readdressing command)."""

    @property
    def text(self) -> str: ...

    def wire(self) -> bytes: ...


class Expectation(Protocol):
    """A waiter: the command it waits on, the address, and which lines answer it."""

    @property
    def command(self) -> BusCommand: ...

    @property
    def address(self) -> str: ...

    def matches(self, line: Any) -> bool: ...


@dataclass(frozen=True)
class BadLine:
    """Bytes that are not a reply: ``garbled`` or ``truncated`` (no end of line came).

    ``address`` is set when the bytes start like a reply of that address, so the
    waiter of that address learns its reply was damaged instead of timing out; without
    one it is noise nobody can claim.
    """

    address: str | None
    raw: bytes
    reason: str

    def describe(self) -> str:
        return f"{self.reason} reply {self.raw!r}"


@dataclass(frozen=True)
class Exchange:
    """Write a command and wait up to ``reply_timeout`` s for its immediate reply. Result:
    the reply line; a :class:`BadLine` (garbage that may be its reply damaged, or the start
    of its reply); or None (the reply is then owed, :meth:`BusRouter.give_up` says when).

    The port is held to write, and to read only while nobody else queues for it; the rest
    of the wait is a :class:`Collect`'s, so a silent address does not hold up the others.
    """

    expect: Expectation
    reply_timeout: float
    urgent: bool = False
    #: forget earlier unclaimed lines of the address first (not while a move of it is pending)
    drop_stale: bool = True


@dataclass(frozen=True)
class Send:
    """Write a command whose reply comes later (one transaction). Result: None.

    ``reply`` is that later reply (a move's end). If the plan stops waiting once the command
    may have been written (cancelled, closed, an error thrown in), nobody will collect it,
    so it is owed for good (:meth:`BusRouter.owe`: it comes whenever what the command
    started ends), never taken as a later command's answer.
    """

    command: BusCommand
    urgent: bool = False
    drop_stale: bool = True
    reply: Expectation | None = None


@dataclass(frozen=True)
class Collect:
    """Wait up to ``timeout`` s for a deferred reply, reading the bus if nobody else is.

    Result: the reply line, or None. ``timeout=0`` still reads once what has already arrived.
    """

    expect: Expectation
    timeout: float


@dataclass(frozen=True)
class Asked:
    """An exchange's command on the wire: what answers it, when it was written, and until
    when its reply is awaited."""

    expect: Expectation
    at: float
    deadline: float


@dataclass(frozen=True)
class _Debt:
    """A reply given up on, looked for until ``until`` (monotonic)."""

    expect: Expectation
    until: float


def _nobody() -> int:
    return 0


Step: TypeAlias = Exchange | Send | Collect | Pause
#: The router's own steps, as a tuple: ``isinstance`` against a union written in place
#: builds the union anew at every call, which costs three times the check itself.
_BUS_STEPS = (Exchange, Send, Collect)


def command_of(step: Step) -> str:
    """The command a step is about, for error messages."""
    if isinstance(step, Exchange | Collect):
        return step.expect.command.text
    if isinstance(step, Send):
        return step.command.text
    return ""


class BusRouter:
    """Inboxes per address, the bytes of a line not yet complete, and who owns which address.

    A protocol subclasses it with its line format: :meth:`parse_line`, :meth:`truncated`,
    :meth:`unsolicited`, :attr:`end` and :attr:`max_line`. ``stats`` counts what a bus health
    check wants to see: ``lines`` read, ``taken`` by their waiter, ``routed`` (read by one
    address's transaction, filed for another), ``stale`` (left unclaimed and dropped at the
    address's next command, a late reply an address owed, or an unfinished line nobody
    waits for, below), ``garbled``, ``truncated``, ``unsolicited`` (lines no command asked
    for, e.g. a handset move's) and ``overflow``.

    A reply given up on (an exchange's that did not come in time, a move's end its driver
    stopped waiting for) leaves its address owing it (:meth:`owe`): the first line of that
    address it matches (:meth:`late_reply`) is that reply coming late, counted ``stale`` and
    never filed, so it cannot answer a later command of the same kind. A debt ends there,
    at its expiry, or at a line that shows the address is in step again (:meth:`in_step`).

    Bytes without an end of line yet are joined with the bytes read next: one reply often
    arrives in several reads, and its waiter may give up (getting them as a truncated reply)
    before the rest comes. Two things the router sees end that:

    * the port failing (an exception out of a transaction function, e.g. a disconnect; the
      port is reopened with none of the old byte stream): the bytes are dropped (counted
      ``stale`` and ``truncated``);
    * the next command to the address whose line they start, when it forgets what the
      address said before (``drop_stale``): nobody waits for that reply any more, so the
      bytes are set aside. If with what follows they make exactly one well-formed line, that
      line is the late rest of the old reply; otherwise (a new reply began after a cut-off
      one) they are a piece of it. Either way they are counted (``stale``, and ``truncated``
      for a piece) and never filed, so they can neither answer nor spoil the new command;
      only what follows them is filed.

    A silence of ``TRUNCATION_GAP_S`` while reading ends them too, as a truncated line.
    Without ``drop_stale`` (a move of that address is pending), or when they start another
    address's line, they stay joined: they may be a deferred reply still coming in.
    """

    #: the end of every line a device sends
    end: ClassVar[bytes] = b"\n"
    #: longest line kept; more is noise
    max_line: ClassVar[int] = 256

    def __init__(self, name: str = "") -> None:
        self.name = name
        # the condition's lock, taken directly (cheaper) by a step's handover, whose state
        # changes under it (see _Handover)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._inbox: dict[str, deque[Any]] = {}
        self._partial = bytearray()
        self._aside = 0  # leading bytes of _partial that no waiter wants (see the class doc)
        self._silent_s = 0.0
        self._version = 0
        self._reading = False
        self._reading_for: str | None = None  # address whose reply the current reader wants
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._owners: dict[str, str] = {}
        self._damage: deque[tuple[float, BadLine]] = deque(maxlen=8)
        self._garbage_taken: deque[BadLine] = deque(maxlen=8)  # given to an exchange each
        self._debts: dict[str, _Debt] = {}
        self._absorbed_at: dict[str, float] = {}  # when a debt of the address last took a line
        self._outages: deque[list[float]] = deque(maxlen=OUTAGES_KEPT)  # [lost, back or inf]
        self.stats: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<BusRouter {self.name or hex(id(self))} owners={self._owners}>"

    # ------------------------------------------------------------------ the line format
    def parse_line(self, raw: bytes) -> list[Any]:
        """One line read up to :attr:`end`: the replies and :class:`BadLine` pieces in it."""
        raise NotImplementedError

    def truncated(self, raw: bytes) -> BadLine:
        """Bytes without an end of line: a line that fell silent, or one whose address the
        router needs to know (its ``address``; None when the bytes name none)."""
        return BadLine(None, raw, "truncated")

    def unsolicited(self, line: Any) -> bool:
        """Whether a well-formed line is one no command asks for (counted, then filed)."""
        return False

    def late_reply(self, expect: Expectation, line: Any) -> bool:
        """Whether ``line`` is the reply to ``expect``, owed since its waiter gave up."""
        return expect.matches(line)

    def owes_reply(self, expect: Expectation) -> bool:
        """Whether a reply given up on leaves a debt; not for a command whose reply answers
        no other (a late one harms nobody), the kind a driver asks to get back in step."""
        return True

    def in_step(self, line: Any) -> bool:
        """Whether ``line`` shows its address has answered everything asked before it (the
        reply to a query only it answers, from a device that answers in order): what the
        address owed came before it, or was lost, so its debt ends."""
        return False

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
    def poll(self, expect: Expectation) -> tuple[Any, int, bool]:
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

    # ------------------------------------------------------------------ replies owed
    def owe(self, expect: Expectation, until: float) -> None:
        """``expect``'s reply was given up on: look for it until ``until`` (monotonic; inf for
        a move's end, which comes whenever the motion ends). One debt per address: a newer
        one replaces it."""
        with self._cond:
            self._debts[expect.address] = _Debt(expect, until)

    def forgive(self, expect: Expectation) -> None:
        """``expect``'s reply, owed, was taken after all (by a transaction whose plan had
        stopped waiting): the debt is void, and must not take the address's next reply."""
        with self._cond:
            debt = self._debts.get(expect.address)
            if debt is not None and debt.expect is expect:
                del self._debts[expect.address]

    def put_back(self, expect: Expectation, line: Any) -> None:
        """``line``, taken for ``expect`` by a transaction whose plan had stopped waiting,
        reached nobody: it is filed again, first in the address's inbox, for the next wait
        for it (a move's end the driver still expects)."""
        with self._cond:
            box = self._inbox.setdefault(expect.address, deque(maxlen=INBOX_DEPTH))
            if len(box) == box.maxlen:
                self.stats["overflow"] += 1
            box.appendleft(line)
            self.stats["taken"] -= 1
            self._bump_locked()

    def owed(self, address: str) -> Expectation | None:
        """The reply ``address`` still owes (its expectation), or None."""
        with self._cond:
            debt = self._live_debt_locked(address, time.monotonic())
            return None if debt is None else debt.expect

    def give_up(self, asked: Asked, partial: BadLine | None = None) -> Any:
        """An exchange's reply did not come by its deadline. It gets its reply if that was
        filed after all (by another transaction, since the waiter last looked), else garbage
        that no address names and no other exchange took since its command (maybe its reply,
        damaged; one piece of garbage is one exchange's), else ``partial`` (the start of its
        reply, read with the port held), else nothing: the reply is then owed, unless a debt
        of the address took a line meanwhile (which may have been this reply: owing again
        would keep the address out of step for good). One look under the lock: a reply
        filed between a last look and the debt was kept and owed too, and the debt then
        swallowed the next command's answer."""
        address = asked.expect.address
        with self._cond:
            line = self._take_locked(asked.expect)
            if line is not None:
                return line
            found = self._garbage_locked(asked.at)
            if found is not None:
                self._garbage_taken.append(found[1])
                return found[1]
            if partial is not None:
                return partial
            absorbed = self._absorbed_at.get(address, -math.inf) >= asked.at
            if self.owes_reply(asked.expect) and not absorbed:
                self._debts[address] = _Debt(
                    asked.expect, time.monotonic() + OWED_TIMEOUTS * (asked.deadline - asked.at))
        return None

    def reply_deadline(self, asked: Asked) -> float:
        """When an exchange stops waiting: its deadline, or soon after garbage nobody claims
        (``GARBAGE_GRACE_S``: it may be this reply damaged, or noise before it)."""
        with self._cond:
            found = self._garbage_locked(asked.at)
        return asked.deadline if found is None else min(asked.deadline,
                                                         found[0] + GARBAGE_GRACE_S)

    def _garbage_locked(self, since: float) -> tuple[float, BadLine] | None:
        """The first garbage since ``since`` that names no address and no exchange took."""
        taken = self._garbage_taken
        return next(((t, bad) for t, bad in self._damage if t >= since and bad.address is None
                     and not any(bad is x for x in taken)), None)

    # ------------------------------------------------------------------ the link
    def port_event(self, event: ResourceEvent) -> None:
        """Listener of the port's disconnect/reconnect events: replies sent while the link was
        down are lost, and a timeout message should say so (:meth:`outages_since`)."""
        now = time.monotonic()
        with self._cond:
            if event.kind == "disconnected":
                self._outages.append([now, math.inf])
            elif self._outages and self._outages[-1][1] == math.inf:
                self._outages[-1][1] = now

    def outages_since(self, since: float) -> list[str]:
        """When the link was down since ``since`` (monotonic), as text for timeout messages
        ("went down 2.1 s in and was back 0.7 s later"; down from when the port noticed)."""
        with self._cond:
            spans = [(lost, back) for lost, back in self._outages if back >= since]
        return [f"went down {max(0.0, lost - since):.1f} s in and "
                + ("is not back yet" if back == math.inf else f"was back {back - lost:.1f} s later")
                for lost, back in spans]

    # ------------------------------------------------------------------ transaction functions
    def send(self, io: BusIO, command: BusCommand, drop_stale: bool = True) -> None:
        """Write a command whose reply is collected later (a move)."""
        with self._port_io():
            self._prepare(io, command, drop_stale)
            io.write(command.wire())

    def exchange(self, io: BusIO, expect: Expectation, reply_timeout: float,
                 drop_stale: bool = True, others_waiting: Callable[[], int] = _nobody,
                 budget: float = math.inf) -> Any:
        """Write a command and read until its reply is filed.

        Returns the reply; None once ``reply_timeout`` passed without one (:meth:`give_up`:
        a garbled line that names no address may be this command's damaged reply, or noise
        before it, so the reply is awaited ``GARBAGE_GRACE_S`` longer and the garbage
        returned only if none comes); or an :class:`Asked` when other transactions queued
        for the port, or ``budget`` s passed, first: the caller waits for the rest
        (:class:`BusSession` does, like a :class:`Collect`). ``drop_stale`` forgets what
        the address said before (nobody waits for it); not while a move of that address is
        pending, whose end may already be filed.
        """
        command = expect.command
        with self._port_io():
            self._prepare(io, command, drop_stale)
            self._begin_reading(expect.address)
            try:
                io.write(command.wire())
                now = time.monotonic()
                asked = Asked(expect, now, now + reply_timeout)
                return self._read(io, expect, now + budget, others_waiting, asked)
            finally:
                self._done_reading()

    def pump(self, io: BusIO, expect: Expectation, budget: float,
             others_waiting: Callable[[], int], asked: Asked | None = None) -> Any:
        """Read the bus for up to ``budget`` s on behalf of a waiter; its reply or None.

        Returns early once other transactions queue for the port (and no reply is
        half-read), so a long wait never delays other instruments by more than one
        read slice. For an exchange's wait (``asked``), "not yet" is ``asked`` itself, and
        None that it gave up (as :meth:`exchange`).
        """
        with self._cond:
            line = self._take_locked(expect)
            if line is not None:
                return line
        self._begin_reading(expect.address)
        try:
            with self._port_io():
                return self._read(io, expect, time.monotonic() + budget, others_waiting, asked)
        finally:
            self._done_reading()

    # ------------------------------------------------------------------ internals
    def _read(self, io: BusIO, expect: Expectation, until: float,
              others_waiting: Callable[[], int], asked: Asked | None) -> Any:
        """Read (the port held) until ``expect``'s reply is filed, ``until``, or others queue
        with no line half-read; then ``asked`` (not yet). An exchange's wait (``asked``)
        that reaches its deadline here gives up with the port held (:meth:`give_up`)."""
        read = False
        while True:
            with self._cond:
                line = self._take_locked(expect)
            if line is not None:
                return line
            if read and not self._partial and others_waiting() > 0:
                return asked
            now = time.monotonic()
            stop = until
            if asked is not None:
                give_up = self.reply_deadline(asked)
                if now >= give_up:
                    return self.give_up(asked, self._partial_reply(expect.address))
                stop = min(stop, give_up)
            if now >= stop:
                return asked
            self._read_once(io, min(stop - now, READ_SLICE_S))
            read = True

    @contextmanager
    def _port_io(self) -> Iterator[None]:
        """The I/O of a transaction function. An exception out of it is the port failing
        (a disconnect: the port is reopened with none of the old byte stream), so the
        unfinished line is dropped, counted as stale, rather than joined with the first
        bytes the reopened port reads."""
        try:
            yield
        except BaseException:
            if self._partial:
                self._count_stale(self.truncated(bytes(self._partial)))
            self._partial.clear()
            self._aside = 0
            self._silent_s = 0.0
            raise

    def _partial_reply(self, address: str) -> BadLine | None:
        """The start of ``address``'s reply still being read when its waiter gives up.

        The bytes stay buffered: if the rest comes before the address's next command, the
        line is filed (and dropped as stale there); at that command they are set aside
        (class doc). Bytes set aside before this command are not this reply's start.
        """
        head = bytes(self._partial[self._aside:])
        if head[:1] == address.encode():
            bad = self.truncated(head)
            if bad.address == address:
                return bad
        return None

    def _prepare(self, io: BusIO, command: BusCommand, drop_stale: bool) -> None:
        """File what already arrived, then forget what the address said before.

        Filing first matters: a reply that came after its waiter gave up would
        otherwise be read after the next command and taken as its answer.
        """
        waiting = io.in_waiting
        if waiting:
            self._absorb(io.read(waiting))
        if drop_stale:
            with self._cond:
                self._drop_locked(command)

    def _read_once(self, io: BusIO, timeout: float) -> None:
        """Read at most one line (or time out) and file it."""
        if io.timeout != timeout:
            io.timeout = timeout  # a real port reprograms termios on every assignment
        t0 = time.monotonic()
        data = io.read_until(self.end, self.max_line)
        if data:
            self._absorb(data)
        elif self._partial:
            self._silent_s += time.monotonic() - t0
            if self._silent_s >= TRUNCATION_GAP_S:
                lines = self._pieces(bytes(self._partial), ended=False)
                self._partial.clear()
                self._silent_s = 0.0
                self._file(lines)

    def _absorb(self, data: bytes) -> None:
        """Add bytes read; file every line they complete."""
        self._silent_s = 0.0
        self._partial += data
        lines: list[Any] = []
        while True:
            end = self._partial.find(self.end)
            if end < 0:
                break
            stop = end + len(self.end)
            lines += self._pieces(bytes(self._partial[:stop]), ended=True)
            del self._partial[:stop]
        if len(self._partial) >= self.max_line:
            lines.append(BadLine(None, bytes(self._partial), "garbled"))
            self._partial.clear()
            self._aside = 0
        self._file(lines)

    def _pieces(self, raw: bytes, ended: bool) -> list[Any]:
        """The lines to file from ``raw``: bytes read up to an end of line (``ended``), or
        up to a silence of ``TRUNCATION_GAP_S`` (a truncated line).

        Bytes set aside at its start are counted and left out, with what follows them if
        together they make one well-formed line (the rule is in the class doc).
        """
        aside, self._aside = self._aside, 0
        if aside:
            whole = self.parse_line(raw) if ended else []
            if len(whole) == 1 and not isinstance(whole[0], BadLine):
                self._count_stale(whole[0])
                return []
            self._count_stale(self.truncated(raw[:aside]))
            raw = raw[aside:]
        if ended:
            return self.parse_line(raw)
        return [self.truncated(raw)] if raw else []

    def _count_stale(self, line: Any) -> None:
        """Count a line nobody waits for that is not filed (see the class doc)."""
        with self._cond:
            self._count_locked(line, time.monotonic())
            self.stats["stale"] += 1

    def _count_locked(self, line: Any, now: float) -> None:
        self.stats["lines"] += 1
        if isinstance(line, BadLine):
            self.stats[line.reason] += 1
            self._damage.append((now, line))

    def _file(self, lines: list[Any]) -> None:
        """File lines in their address's inbox; a late reply an address owes is counted
        instead (class doc); garbage that names no address is only counted (an exchange
        waiting meanwhile may get it: :meth:`give_up`)."""
        if not lines:
            return
        now = time.monotonic()
        with self._cond:
            for line in lines:
                self._count_locked(line, now)
                address = line.address
                if address is None:
                    continue  # garbage no address claims (in _damage)
                if not isinstance(line, BadLine) and self.unsolicited(line):
                    self.stats["unsolicited"] += 1
                if self.in_step(line):
                    self._debts.pop(address, None)
                elif self._owed_locked(address, line, now):
                    continue
                if self._reading_for is not None and address != self._reading_for:
                    self.stats["routed"] += 1  # read by one instrument, filed for another
                box = self._inbox.setdefault(address, deque(maxlen=INBOX_DEPTH))
                if len(box) == box.maxlen:
                    self.stats["overflow"] += 1
                box.append(line)
            self._bump_locked()

    def _live_debt_locked(self, address: str, now: float) -> _Debt | None:
        """``address``'s debt, dropped once it has lapsed (answers get lost too)."""
        debt = self._debts.get(address)
        if debt is not None and now >= debt.until:
            del self._debts[address]
            return None
        return debt

    def _owed_locked(self, address: str, line: Any, now: float) -> bool:
        """Whether ``line`` is the late reply ``address`` owes (then counted, not filed)."""
        debt = self._live_debt_locked(address, now)
        if debt is None or not self.late_reply(debt.expect, line):
            return False
        del self._debts[address]
        self._absorbed_at[address] = now
        self.stats["stale"] += 1
        return True

    def _take_locked(self, expect: Expectation) -> Any:
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

    def _drop_locked(self, command: BusCommand) -> None:
        """Forget what an address said before this command: nobody is waiting for it.

        That is its unclaimed lines, and the unfinished line it was sending, which is set
        aside (what becomes of it is in the class doc).
        """
        addresses = {command.address, command.answers_from}
        for address in addresses:
            box = self._inbox.get(address)
            if box:
                self.stats["stale"] += len(box)
                box.clear()
        if len(self._partial) > self._aside and \
                self.truncated(bytes(self._partial[self._aside:])).address in addresses:
            self._aside = len(self._partial)

    def _begin_reading(self, address: str) -> None:
        with self._cond:
            self._reading = True
            self._reading_for = address

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


#: Longest share of the bus one waiter takes before queued traffic gets its turn.
PUMP_BUDGET_S = 0.25
#: Read budget of a Collect with no time to wait (a poll during a move).
PEEK_S = 0.01


@dataclass(frozen=True)
class _Wait:
    """Block until the router files a line or a reader finishes (after ``version``)."""

    version: int
    timeout: float


class _Handover:
    """One step of a bus plan, and what it leaves to settle if the plan stops waiting.

    A plan stops waiting when it is cancelled (a v4 call past ``call_timeout_s`` or a read
    past ``read_timeout_s``, ``asyncio.wait_for``), closed, or gets an error thrown in (the
    port too busy, a transaction overrun). The step's transaction function may still be
    running on the port's worker then, or have ended with a result that reaches nobody;
    one that had not begun does not run (nothing is written). What is left depends on the
    step:

    * an exchange's reply (``owed``; from when its function runs, ``ask``: the command is
      then written; nothing once the function took the reply). Were it simply forgotten,
      it would come late and answer the address's next command; so it is given up on there
      and then (:meth:`BusRouter.give_up`: taken if it already arrived, else owed), as at a
      deadline, and a driver that checks :meth:`BusRouter.owed` before its next command
      sees the debt. If the function ends still awaiting the reply, that is given up on
      again; if it took the reply before the plan gave it up, the debt is void.
    * a line a collect's function took (``collect``): the driver still expects it (a move's
      end, for its next wait), so it goes back to the address's inbox
      (:meth:`BusRouter.put_back`).
    * a send's later reply (``send``, :attr:`Send.reply`): once its function began, the
      command may be on the wire and nobody will collect the reply, so it is owed for good.

    A step that can leave nothing has no handover, so the common path pays for none: a send
    without a later reply, and a collect's wait on the router (it takes no line). A handover
    is itself its step's transaction function (the router's ``fn(io, *args)``, with no
    wrapper between), and its state changes under the router's lock: the plan's thread
    settles while the port's worker may be running the function.
    """

    __slots__ = ("router", "fn", "args", "owed", "ask", "collect", "send", "began", "ended",
                 "abandoned", "taken")

    def __init__(self, router: BusRouter, fn: Callable[..., Any] | None = None,
                 args: tuple[Any, ...] = (), *, owed: Asked | None = None,
                 ask: Exchange | None = None, collect: Expectation | None = None,
                 send: Expectation | None = None) -> None:
        self.router = router
        self.fn = fn  # None: a wait on the router, no transaction (owed is all it has)
        self.args = args
        self.owed = owed
        self.ask = ask
        self.collect = collect
        self.send = send
        self.began: float | None = None  # when the function began (monotonic)
        self.ended = False
        self.abandoned = False
        self.taken: Any = None  # the collect's line its plan has not received

    def __call__(self, io: BusIO) -> Any:
        """The transaction function: ``fn``, unless its plan stopped waiting before it began
        (then nothing is written)."""
        fn, lock = self.fn, self.router._lock
        assert fn is not None
        with lock:
            if self.abandoned:
                return None
            self.began = time.monotonic()
        result: Any = None
        try:
            result = fn(io, *self.args)
            return result
        finally:
            with lock:
                given_up, self.owed = self.owed, result if isinstance(result, Asked) else None
                self.ended = True
                if self.collect is not None:
                    self.taken = result
                if self.abandoned:
                    self._settle_late(result, given_up)

    def _awaited(self) -> Asked | None:
        """The reply the step awaits now: ``owed``, or an exchange's while its function runs
        (its command is written when the function begins). Made when the plan stops waiting,
        not as the function begins: an uninterrupted exchange never needs it."""
        ask, began = self.ask, self.began
        if self.owed is None and ask is not None and began is not None and not self.ended:
            self.owed = Asked(ask.expect, began, began + ask.reply_timeout)
        return self.owed

    def _settle_late(self, result: Any, given_up: Asked | None) -> None:
        """What the function's result leaves when its plan stopped waiting before it ended."""
        if isinstance(result, Asked):
            self.router.give_up(result)
        elif result is not None and given_up is not None:
            self.router.forgive(given_up.expect)
        elif self.collect is not None and result is not None:
            self.router.put_back(self.collect, result)

    def abandon(self) -> None:
        """The plan stopped waiting: settle what its step awaits (the class doc)."""
        with self.router._lock:
            self.abandoned = True
            owed = self._awaited()
            if owed is not None:
                self.router.give_up(owed)
            if self.collect is not None and self.taken is not None:
                self.router.put_back(self.collect, self.taken)
            if self.send is not None and self.began is not None:
                self.router.owe(self.send, math.inf)


class BusSession(Session):
    """A session on a multi-drop bus: runs the router's steps as well as the toolkit's.

    ``router_class`` is the protocol's :class:`BusRouter`; one is shared per port (under
    ``router_key``) by every instrument on it, of either flavor, and told of the port's
    disconnects. A :class:`Send` is one transaction; an :class:`Exchange` (:meth:`ask`) is one
    to write (and read while nobody else wants the port), then a wait like a
    :class:`Collect`'s (:meth:`collect`), whose only flavor-specific step is the wait on the
    router (a condition variable in v2, a future in v4). A step whose plan stops waiting
    (cancelled, closed) settles what it awaited (:class:`_Handover`): an exchange's reply,
    once its command was written, is owed as one whose deadline passed; a line a collect
    took goes back to the inbox; a send's later reply (:attr:`Send.reply`), once its
    command may have been written, is owed.
    """

    router_class: ClassVar[type[BusRouter]] = BusRouter
    router_key: ClassVar[str] = ""

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        port = self.resource

        def new_router() -> BusRouter:
            router = self.router_class(port.name)
            port.add_listener(router.port_event)
            return router

        self.router: BusRouter = port.shared(self.router_key or self.router_class.__qualname__,
                                             new_router)
        self.lock_timeout: float = port.default_timeout

    def step_command(self, step: Any) -> str:
        return command_of(step) if isinstance(step, _BUS_STEPS) else \
            super().step_command(step)

    def _others_waiting(self) -> int:
        return self.resource.gate.queue_depth  # type: ignore[no-any-return]

    def send(self, step: Send) -> Transaction[Any] | Generator[Any, Any, Any]:
        """A :class:`Send`: one transaction to write the command. Its later reply
        (:attr:`Send.reply`) is owed if the plan stops waiting once the command may be
        written; without one, nothing is left to settle, and the bare transaction is the plan.
        """
        router = self.router
        if step.reply is None:
            return self._write(step, lambda io: router.send(io, step.command, step.drop_stale))
        handover = _Handover(router, router.send, (step.command, step.drop_stale),
                             send=step.reply)
        return self._awaiting(handover, self._write(step, handover))

    def _write(self, step: Send, fn: Callable[[BusIO], Any]) -> Transaction[Any]:
        """The transaction of a :class:`Send` (``fn`` writes its command)."""
        return Transaction(command_of(step), urgent=step.urgent, timeout=self.lock_timeout,
                           fn=fn)

    def ask(self, step: Exchange) -> Generator[Any, Any, Any]:
        """An :class:`Exchange`: write the command and read while nobody else wants the port
        (at most ``PUMP_BUDGET_S``); wait for the rest of the reply as :meth:`collect` does."""
        router = self.router
        budget = min(step.reply_timeout, PUMP_BUDGET_S)
        handover = _Handover(router, router.exchange, (
            step.expect, step.reply_timeout, step.drop_stale, self._others_waiting, budget),
            ask=step)
        result = yield from self._awaiting(handover, Transaction(
            command_of(step), urgent=step.urgent, timeout=self.lock_timeout + budget,
            fn=handover))
        if isinstance(result, Asked):
            result = yield from self._wait(result.expect, result.deadline, result)
        return result

    def collect(self, step: Collect) -> Generator[Any, Any, Any]:
        """The wait for a deferred reply: on the router while someone else reads the bus,
        else reading it in short transactions; the line, or None at the deadline."""
        return (yield from self._wait(step.expect, time.monotonic() + step.timeout, None))

    def _wait(self, expect: Expectation, deadline: float,
              asked: Asked | None) -> Generator[Any, Any, Any]:
        """Wait for ``expect``'s line until ``deadline``; for an exchange (``asked``, whose
        transaction already read) giving up at its end as :meth:`BusRouter.give_up` says."""
        router = self.router
        pumped = asked is not None
        while True:
            line, version, reading = router.poll(expect)
            if line is not None:
                return line
            if asked is not None:
                deadline = router.reply_deadline(asked)
            remaining = deadline - time.monotonic()
            if remaining <= 0 and (pumped or reading):
                return None if asked is None else router.give_up(asked)
            if reading:  # someone else reads the bus: wait for what it files
                wait = _Wait(version, min(remaining, PUMP_BUDGET_S))
                if asked is None:  # a collect's wait takes no line: nothing to settle
                    yield wait
                else:
                    yield from self._awaiting(_Handover(router, owed=asked), wait)
                continue
            # nobody reads: a short read of the bus, on behalf of this waiter
            pumped = True
            budget = min(max(remaining, PEEK_S), PUMP_BUDGET_S)
            handover = _Handover(router, router.pump,
                                 (expect, budget, self._others_waiting, asked), owed=asked,
                                 collect=expect if asked is None else None)
            line = yield from self._awaiting(handover, Transaction(
                expect.command.text, timeout=self.lock_timeout + budget, fn=handover))
            if line is not asked:
                return line

    @staticmethod
    def _awaiting(handover: _Handover, step: Any) -> Generator[Any, Any, Any]:
        """Yield ``step``; if the plan stops waiting for its result (an exception thrown in,
        or the plan closed), what ``handover`` awaits is settled first."""
        try:
            return (yield step)
        except BaseException:
            handover.abandon()
            raise

    def _plan(self, step: Send | Exchange | Collect
              ) -> Transaction[Any] | Generator[Any, Any, Any]:
        """A bus step as the plan that runs it: a generator (closed by the caller when
        interrupted), or a bare transaction when it leaves nothing to settle."""
        if isinstance(step, Exchange):
            return self.ask(step)
        return self.send(step) if isinstance(step, Send) else self.collect(step)

    def run_step(self, step: Any) -> Any:
        if isinstance(step, _BUS_STEPS):
            plan = self._plan(step)
            if isinstance(plan, Transaction):
                return super().run_step(plan)
            try:
                return run(self, plan)
            except BaseException:
                plan.close()  # interrupted, it settles what it awaited
                raise
        if isinstance(step, _Wait):
            return self.router.wait(step.version, step.timeout)
        return super().run_step(step)

    async def arun_step(self, step: Any) -> Any:
        if isinstance(step, _BUS_STEPS):
            plan = self._plan(step)
            if isinstance(plan, Transaction):
                return await super().arun_step(plan)
            try:
                return await arun(self, plan)
            except BaseException:
                plan.close()  # cancelled, it settles what it awaited
                raise
        if isinstance(step, _Wait):
            return await self.router.wait_async(step.version, step.timeout)
        return await super().arun_step(step)
