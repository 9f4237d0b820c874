"""What a driver implements, per flavor, and the error it raises.

A driver writes its protocol once, as *transaction functions*: plain blocking
functions ``fn(io) -> result`` that write a command and read its reply on a
pyserial-like ``io`` (or a VISA resource). Both flavors run the very same
functions on the core's shared resource:

* v2: ``self.port.transaction(fn, owner=self.id)`` in the instrument's thread;
* v4: ``await self.port.atransaction(fn, owner=self.id)``, which runs ``fn`` on the
  resource's worker thread under the same lock, so the event loop never blocks.

So a flavor is a thin shell: it decides when to poll and how to package values
(``Measurement`` objects for v2, Arrow batches for v4), nothing more.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from .measurement import ChannelSpec, Columns, Measurement
from .specs import InstrumentContext


class DriverError(RuntimeError):
    """An instrument refused or garbled a command.

    Carries who (instrument id), what (the command sent) and the instrument's
    own error code and message, so a log line alone tells a technician what
    happened without a debugger.
    """

    def __init__(self, instrument_id: str, command: str, message: str,
                 code: str | int | None = None) -> None:
        self.instrument_id = instrument_id
        self.command = command
        self.code = code
        self.message = message
        where = f"{instrument_id}: {command!r}" if command else instrument_id
        codepart = f" [code {code}]" if code is not None else ""
        super().__init__(f"{where}{codepart}: {message}")


class DriverTimeoutError(DriverError, TimeoutError):
    """No reply (or no end of an operation) within a bounded wait, or the line stayed busy.

    Also a ``TimeoutError``, so generic timeout handling catches it, and so the core's port
    does not mistake it for a vanished device.
    """


class DriverDisconnectedError(DriverError, ConnectionError):
    """The port or VISA session was gone (or vanished) under a command; the core reopens it."""


class DriverReplyError(DriverError, ValueError):
    """The instrument answered, but not with what the command expects (garbled, truncated,
    an error reply, a value of the wrong form)."""


class CommandRejected(RuntimeError):
    """A command was not run: the instrument is shutting down, failed, or its queue is full.

    Both runtimes raise this one type (and :class:`UnknownCommandError`), so a script does
    not need to know the flavor of what it drives.
    """


class CommandOutcomeUnknown(RuntimeError):
    """A command was sent, and what it did is not known: the process running it (a worker
    process of ``[daqhub] workers = N``) died before it answered.

    Unlike :class:`CommandRejected` it may have had its effect (a move started, a setting
    taken), so a script must not simply send it again: ask the instrument where it is.
    """


class UnknownCommandError(CommandRejected, LookupError):
    """The instrument has no command of that name; the message lists the ones it has."""


#: Timestamp of a sample, in ns since the epoch (take it when the reply arrives). The clock
#: itself rather than a function around it: it is read once or twice per reading.
now_ns: Callable[[], int] = time.time_ns


class _Base:
    def __init__(self, ctx: InstrumentContext) -> None:
        self.ctx = ctx
        self.id = ctx.instrument_id
        self.config = ctx.config
        self.channels: Sequence[ChannelSpec] = ctx.channels
        self.port = ctx.port
        self.visa = ctx.visa

    def channel(self, name: str) -> ChannelSpec:
        for c in self.channels:
            if c.name == name:
                return c
        raise KeyError(f"{self.id} has no channel {name!r}")


class V2Instrument(_Base, ABC):
    """A v2 (direct) instrument: blocking methods, called from one thread.

    The V2 runtime calls ``connect()`` once, then ``read()`` at the configured
    rate, and runs commands (any public method, e.g. ``move_absolute``) queued
    by scripts between two reads, in the same thread. ``close()`` at the end.
    """

    def connect(self) -> None:
        """Check the instrument answers and set it up; raise DriverError if not."""

    @abstractmethod
    def read(self) -> Sequence[Measurement | Columns]:
        """One poll: the current samples of this instrument's channels.

        One :class:`Measurement` per sample, or, for a driver that reads many samples at
        once, a :class:`Columns` block of arrays per channel (no Python object per sample).
        """

    def close(self) -> None:
        """Leave the instrument safe; the core closes the port itself."""

    def settings(self) -> dict[str, Any]:
        """The instrument's current settings (model, serial number, units, range ...).

        Stored as the session's settings snapshot at start and after each command
        that changes a setting, so the data says how it was taken. Values must be
        JSON-serialisable. The default knows none.
        """
        return {}


class V4Actor(_Base, ABC):
    """A v4 (actor) instrument: async methods, run one at a time from its mailbox.

    The V4 runtime calls ``start()``, then ``read()`` on every poll tick and
    any public async method a script asks for (control messages such as
    ``stop`` jump the queue), and ``close()`` at the end. If ``start()`` or ``read()``
    raises (or overruns its timeout), the supervisor closes the actor and restarts it with
    backoff. A command that raises is the caller's error: the caller gets the exception,
    the instrument's health records it, and the actor keeps running unrestarted.
    (``stop`` is left free for the Motion capability's "halt the axis".)
    """

    async def start(self) -> None:
        """Check the instrument answers and set it up; raise DriverError if not."""

    @abstractmethod
    async def read(self) -> list[pa.RecordBatch]:
        """One poll: one batch per channel that has new samples."""

    async def close(self) -> None:
        """Leave the instrument safe; the core closes the port itself."""

    async def settings(self) -> dict[str, Any]:
        """The v4 twin of :meth:`V2Instrument.settings` (same keys, same meaning)."""
        return {}


#: Methods the runtimes call on every instrument themselves: never commands.
LIFECYCLE = frozenset({"connect", "read", "close", "start", "channel", "settings"})
#: Lifecycle methods a script may still send as commands (queries with no side effect).
QUERIES = frozenset({"read", "settings"})
NOT_COMMANDS = LIFECYCLE - QUERIES


def public_methods(obj: object) -> list[str]:
    """Commands a script may send: public methods that are not lifecycle methods.

    ``read`` (a fresh sample now, as the scan engine takes it) and ``settings`` (the
    snapshot) are queries a script may send too, run like any command.
    """
    return sorted(n for n in dir(obj) if is_command(obj, n))


def is_command(obj: object, name: str) -> bool:
    """Whether ``name`` is one of :func:`public_methods`, without listing them all (``dir``
    costs tens of microseconds, and this is asked of every command)."""
    return not name.startswith("_") and name not in NOT_COMMANDS and \
        callable(getattr(obj, name, None))
