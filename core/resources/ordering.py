"""The global acquisition order, the lock-order checker and the held-resource registry.

Deadlock freedom comes from one global order: every resource has an ``order_key`` (serial ports
``(SERIAL_ORDER, name)`` before VISA ``(VISA_ORDER, name)``). Leases acquire their gates sorted
by it (:mod:`.lease`), and the :class:`LockOrderChecker` raises :class:`LockOrderError` *before
waiting* whenever a context that holds a gate asks for one that orders before it. The held set
(one :class:`Holding` per gate) is tracked in a ``ContextVar``, so it is per thread and per
asyncio task alike.

The gates themselves live in :mod:`.gate`; this module imports it only for type checking, so
the gate can depend on the checker and the registry without an import cycle. The registry's
names (``context_held``, ``set_context_held``, ``reset_context_held``, ``INLINE_HELD``,
``current_held``) are the package's internal API for it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

from .errors import LockOrderError

if TYPE_CHECKING:
    from .gate import Gate

# What a holder is doing, for messages: a description, or (verb, argument) formatted lazily so
# the hot path does not build strings.
What = str | tuple[str, object]

SERIAL_ORDER = 0
VISA_ORDER = 1

_now = time.monotonic
_running_loop = asyncio.events._get_running_loop


class Holding:
    """Who holds (or waits for) a gate, and since when: the facts timeout errors report."""

    __slots__ = ("gate", "owner", "what", "since", "held", "group")

    def __init__(self, gate: Gate, owner: str, what: What, held: tuple[Holding, ...],
                 group: list[Gate] | None = None) -> None:
        self.gate = gate
        self.owner = owner
        self.what = what
        self.since = 0.0
        self.held = held
        self.group = group

    def holds(self) -> list[str]:
        """Names of every gate this owner holds through the context it acquired from."""
        names = [h.gate.name for h in self.held]
        extra = [*self.group, self.gate] if self.group is not None else [self.gate]
        for gate in extra:
            if gate.name not in names:
                names.append(gate.name)
        return names

    def describe(self, now: float) -> str:
        what = self.what if isinstance(self.what, str) else f"{self.what[0]} {self.what[1]!r}"
        return (f"{self.owner!r} for {now - self.since:.3f} s ({what}), "
                f"holding [{', '.join(self.holds())}]")


# The held-resource registry, in two parts. Its names are public within the package (the gate,
# the worker and leases use them) and not exported by ``daqhub.resources``.
#
# What the current context holds through leases and queued transactions (per thread and per
# asyncio task alike): read with context_held(), replaced with set_context_held() (which
# returns the token for reset_context_held()). Bound methods, so the hot path pays no wrapper.
_HELD: ContextVar[tuple[Holding, ...]] = ContextVar("daqhub_resources_held", default=())
context_held = _HELD.get
set_context_held = _HELD.set
reset_context_held = _HELD.reset
# ... and, per thread, through the sync transactions it is running inline (thread ident -> their
# holdings, outermost first). A dict entry is far cheaper than a ContextVar set and reset, and
# an inline transaction never runs on an event loop's thread, so it needs no per-task copy.
# Only the thread whose ident is the key writes its entry.
INLINE_HELD: dict[int, tuple[Holding, ...]] = {}
_get_ident = threading.get_ident


def current_held() -> tuple[Holding, ...]:
    """Every gate the current thread or task holds."""
    held = _HELD.get()
    inline = INLINE_HELD.get(_get_ident())
    return (*held, *inline) if inline else held


def held_resources() -> list[str]:
    """Names of the gates the current thread or task holds (for diagnostics and tests)."""
    return [h.gate.name for h in current_held()]


class LockOrderChecker:
    """Raises on any acquisition against the global order.

    The check is a comparison with the highest gate the caller's context already holds, so it
    costs well under a microsecond and stays on in production. ``violations`` counts what it
    caught (also when a caller swallowed the error).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.violations = 0

    def check(self, gate: Gate, held: Sequence[Holding], owner: str) -> None:
        if not self.enabled or not held:
            return
        top = max(held, key=_holding_order)
        if gate.order_key > top.gate.order_key:
            return
        self.violations += 1
        now = _now()
        stack = ", ".join(f"{h.gate.name} (as {h.owner!r}, {now - h.since:.3f} s)" for h in held)
        current = gate.holder_description(now)
        raise LockOrderError(
            f"lock order violation: {owner!r} asked for {gate.name} while holding {top.gate.name},"
            f" which orders after it (serial ports before VISA, then by name). "
            f"{owner!r} holds [{stack}]; {gate.name} is "
            f"{'held by ' + current if current else 'free'}. Take both in one lease([...]) so "
            f"they are acquired in order.")


def _holding_order(h: Holding) -> tuple[int, str]:
    return h.gate.order_key


DEFAULT_CHECKER = LockOrderChecker(enabled=True)


def gate_order(gate: Gate) -> tuple[int, str]:
    """Sort key of the global acquisition order."""
    return gate.order_key


def default_owner() -> str:
    """The current task's name in a coroutine, else the thread's name."""
    if _running_loop() is not None:
        task = asyncio.current_task()
        if task is not None:
            return task.get_name()
    return threading.current_thread().name
