"""The few bus operations a driver plan asks for, and the errors it raises.

Every Elliptec operation (identify, move, poll, jog...) is written once, in
:mod:`.axis`, as a generator that *yields* these steps and receives their
results. The toolkit runs a plan blocking (v2) or awaited (v4), and
:class:`.driver.ElliptecBus` executes these steps for it; the protocol logic itself never knows
which flavor runs it. That is how "the protocol is written once" holds even
though a move spans many transactions and some waiting in between.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from daqhub.driver import DriverDisconnectedError, DriverTimeoutError, Pause

from .frames import Command
from .router import Expectation

T = TypeVar("T")


@dataclass(frozen=True)
class Exchange:
    """Write a command and read its immediate reply (one transaction). Result: Line or None."""

    expect: Expectation
    reply_timeout: float
    urgent: bool = False
    #: forget earlier unclaimed lines of the address first (not while a move of it is pending)
    drop_stale: bool = True


@dataclass(frozen=True)
class Send:
    """Write a command whose reply comes later (one transaction). Result: None."""

    command: Command
    urgent: bool = False
    drop_stale: bool = True


@dataclass(frozen=True)
class Collect:
    """Wait up to ``timeout`` s for a deferred reply, reading the bus if nobody else is.

    Result: Line or None. ``timeout=0`` still reads once what has already arrived.
    """

    expect: Expectation
    timeout: float


Step: TypeAlias = Exchange | Send | Collect | Pause
Plan: TypeAlias = Generator[Step, Any, T]


def command_of(step: Step) -> str:
    """The command a step is about, for error messages."""
    if isinstance(step, Exchange | Collect):
        return step.expect.command.text
    if isinstance(step, Send):
        return step.command.text
    return ""


#: The core's driver errors under the names this driver has always documented.
ElliptecTimeout = DriverTimeoutError
ElliptecPortError = DriverDisconnectedError
