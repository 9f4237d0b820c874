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

A driver's plans yield the bus steps (:class:`Exchange`, :class:`Send`, :class:`Collect`)
besides the toolkit's; :class:`BusSession` is the flavor hook that runs them. Router methods
named ``exchange``/``send``/``pump`` are transaction functions (they run with the port
held); the others only touch the router's own state.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeAlias

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
    """Write a command and read its immediate reply (one transaction). Result: the
    reply line, or None."""

    expect: Expectation
    reply_timeout: float
    urgent: bool = False
    #: forget earlier unclaimed lines of the address first (not while a move of it is pending)
    drop_stale: bool = True


@dataclass(frozen=True)
class Send:
    """Write a command whose reply comes later (one transaction). Result: None."""

    command: BusCommand
    urgent: bool = False
    drop_stale: bool = True


@dataclass(frozen=True)
class Collect:
    """Wait up to ``timeout`` s for a deferred reply, reading the bus if nobody else is.

    Result: the reply line, or None. ``timeout=0`` still reads once what has already arrived.
    """

    expect: Expectation
    timeout: float


Step: TypeAlias = Exchange | Send | Collect | Pause


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
    address's next command, or an unfinished line nobody waits for, below), ``garbled``,
    ``truncated``, ``unsolicited`` (lines no command asked for, e.g. a handset move's) and
    ``overflow``.

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
        self._cond = threading.Condition()
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

    # ------------------------------------------------------------------ transaction functions
    def send(self, io: BusIO, command: BusCommand, drop_stale: bool = True) -> None:
        """Write a command whose reply is collected later (a move)."""
        with self._port_io():
            self._prepare(io, command, drop_stale)
            io.write(command.wire())

    def exchange(self, io: BusIO, expect: Expectation, reply_timeout: float,
                 drop_stale: bool = True) -> Any:
        """Write a command and read until its reply is filed; None if none came in time.

        A garbled line that names no address may be this command's damaged
        reply, or noise before it: the reply is awaited a little longer
        (``GARBAGE_GRACE_S``) and the garbage returned only if none comes.
        ``drop_stale`` forgets what the address said before (nobody waits for
        it); not while a move of that address is pending, whose end may already
        be filed.
        """
        command = expect.command
        with self._port_io():
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
             others_waiting: Callable[[], int]) -> Any:
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
            with self._port_io():
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

    def _read_once(self, io: BusIO, timeout: float) -> list[BadLine]:
        """Read at most one line (or time out) and file it; returns orphan garbage."""
        if io.timeout != timeout:
            io.timeout = timeout  # a real port reprograms termios on every assignment
        t0 = time.monotonic()
        data = io.read_until(self.end, self.max_line)
        if data:
            return self._absorb(data)
        if self._partial:
            self._silent_s += time.monotonic() - t0
            if self._silent_s >= TRUNCATION_GAP_S:
                lines = self._pieces(bytes(self._partial), ended=False)
                self._partial.clear()
                self._silent_s = 0.0
                return self._file(lines) if lines else []
        return []

    def _absorb(self, data: bytes) -> list[BadLine]:
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
        return self._file(lines) if lines else []

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

    def _file(self, lines: list[Any]) -> list[BadLine]:
        orphans: list[BadLine] = []
        now = time.monotonic()
        with self._cond:
            for line in lines:
                self._count_locked(line, now)
                if isinstance(line, BadLine):
                    if line.address is None:
                        orphans.append(line)
                        continue
                elif self.unsolicited(line):
                    self.stats["unsolicited"] += 1
                address = line.address
                if self._reading_for is not None and address != self._reading_for:
                    self.stats["routed"] += 1  # read by one instrument, filed for another
                box = self._inbox.setdefault(address, deque(maxlen=INBOX_DEPTH))
                if len(box) == box.maxlen:
                    self.stats["overflow"] += 1
                box.append(line)
            self._bump_locked()
        return orphans

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


class BusSession(Session):
    """A session on a multi-drop bus: runs the router's steps as well as the toolkit's.

    ``router_class`` is the protocol's :class:`BusRouter`; one is shared per port (under
    ``router_key``) by every instrument on it, of either flavor. An :class:`Exchange` or
    :class:`Send` is one transaction; a :class:`Collect` is a plan of its own (:meth:`collect`)
    whose only flavor-specific step is the wait on the router (a condition variable in v2,
    a future in v4).
    """

    router_class: ClassVar[type[BusRouter]] = BusRouter
    router_key: ClassVar[str] = ""

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        port = self.resource
        self.router: BusRouter = port.shared(self.router_key or self.router_class.__qualname__,
                                             lambda: self.router_class(port.name))
        self.lock_timeout: float = port.default_timeout

    def step_command(self, step: Any) -> str:
        return command_of(step) if isinstance(step, Exchange | Send | Collect) else \
            super().step_command(step)

    def transaction(self, step: Exchange | Send) -> Transaction[Any]:
        router, text = self.router, command_of(step)
        if isinstance(step, Exchange):
            return Transaction(text, urgent=step.urgent,
                               timeout=self.lock_timeout + step.reply_timeout,
                               fn=lambda io: router.exchange(io, step.expect, step.reply_timeout,
                                                             step.drop_stale))
        return Transaction(text, urgent=step.urgent, timeout=self.lock_timeout,
                           fn=lambda io: router.send(io, step.command, step.drop_stale))

    def _pump(self, expect: Expectation, remaining: float) -> Transaction[Any]:
        """A short read of the bus on behalf of a waiter nobody else is reading for."""
        budget = min(max(remaining, PEEK_S), PUMP_BUDGET_S)
        router, gate = self.router, self.resource.gate
        return Transaction(expect.command.text, timeout=self.lock_timeout + budget,
                           fn=lambda io: router.pump(io, expect, budget,
                                                     lambda: gate.queue_depth))

    def collect(self, step: Collect) -> Generator[Any, Any, Any]:
        """The wait for a deferred reply: on the router while someone else reads the bus,
        else reading it in short transactions; the line, or None at the deadline."""
        deadline = time.monotonic() + step.timeout
        pumped = False
        while True:
            line, version, reading = self.router.poll(step.expect)
            if line is not None:
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 and (pumped or reading):
                return None
            if reading:
                yield _Wait(version, min(remaining, PUMP_BUDGET_S))
                continue
            pumped = True
            line = yield self._pump(step.expect, remaining)
            if line is not None:
                return line

    def run_step(self, step: Any) -> Any:
        if isinstance(step, Exchange | Send):
            step = self.transaction(step)
        elif isinstance(step, Collect):
            return run(self, self.collect(step))
        elif isinstance(step, _Wait):
            return self.router.wait(step.version, step.timeout)
        return super().run_step(step)

    async def arun_step(self, step: Any) -> Any:
        if isinstance(step, Exchange | Send):
            step = self.transaction(step)
        elif isinstance(step, Collect):
            return await arun(self, self.collect(step))
        elif isinstance(step, _Wait):
            return await self.router.wait_async(step.version, step.timeout)
        return await super().arun_step(step)
