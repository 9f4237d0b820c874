"""Leases: exclusive use of several resources, without interleaving, across transactions.

A lease takes its gates in the global order (:mod:`.ordering`), waiting at most its timeout in
total; a wait that times out releases what the lease already holds. Gates are handed over
directly: the releasing side grants the gate to the next waiter in FIFO order (urgent lane
first), so a lease never races a newcomer for it. An async lease whose own transaction still
runs on a gate's worker when it exits (the coroutine was cancelled, or its wait overran) keeps
that gate until the transaction has finished: the worker then hands it on (see
:meth:`.Gate.release`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from contextvars import Token
from types import TracebackType
from typing import Protocol

from .errors import ResourceTimeoutError
from .gate import Gate
from .ordering import (
    Holding,
    context_held,
    current_held,
    gate_order,
    reset_context_held,
    set_context_held,
)
from .timeouts import DEFAULT_TIMEOUT_S, checked_timeout

_now = time.monotonic
_running_loop = asyncio.events._get_running_loop


class _HasGate(Protocol):
    @property
    def gate(self) -> Gate: ...


Leasable = Gate | _HasGate


class Lease:
    """Exclusive use of several resources, acquired in the global order, released in reverse.

    Usable once, with ``with`` from a thread or ``async with`` from a coroutine. Transactions
    made by the same thread or task inside the lease run without queueing (the lease already
    holds the gate); async ones still run on the gate's worker thread so the loop never blocks.
    A task (or a thread run in a copy of the context) started inside the lease runs its
    transactions so too while the lease lasts; once it has ended, they queue like anyone's.
    """

    def __init__(self, resources: Iterable[Leasable], *, owner: str | None = None,
                 timeout: float | None = None, urgent: bool = False) -> None:
        gates: dict[int, Gate] = {}
        for res in resources:
            gate = res if isinstance(res, Gate) else res.gate
            gates[id(gate)] = gate
        self.gates = sorted(gates.values(), key=gate_order)
        self.owner = owner
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else checked_timeout(timeout)
        self.urgent = urgent
        self._acquired: list[Gate] = []
        self._token: Token[tuple[Holding, ...]] | None = None

    def _plan(self, owner: str) -> tuple[tuple[Holding, ...], list[Gate]]:
        if self._token is not None:
            raise RuntimeError("a Lease object can be entered only once at a time")
        held = current_held()
        # a gate still held is skipped (a record copied from a lease that has ended holds
        # nothing); the gates are sorted, so if the first one left to take is in order
        # with what the caller holds, so are the rest
        todo = [g for g in self.gates if not g.holds(held)] if held else list(self.gates)
        if todo:
            todo[0].check_order(held, owner)
        return held, todo

    def _failed(self, exc: BaseException) -> BaseException:
        names = [g.name for g in self._acquired]
        for gate in reversed(self._acquired):
            gate.release()
        self._acquired.clear()
        if isinstance(exc, ResourceTimeoutError) and names:
            new = type(exc)(f"{exc}; the lease released what it already held: "
                            f"[{', '.join(names)}]", resource=exc.resource,
                            waited_s=exc.waited_s, holder=exc.holder, owner=exc.owner)
            new.__cause__ = exc
            return new
        return exc

    def __enter__(self) -> Lease:
        owner = self.owner or threading.current_thread().name
        if _running_loop() is not None:
            raise RuntimeError(f"blocking lease by {owner!r} inside a running event loop; "
                               f"use 'async with'")
        held, todo = self._plan(owner)
        deadline = _now() + self.timeout
        holdings: list[Holding] = []
        try:
            for gate in todo:
                holding = Holding(gate, owner, "lease", held, self._acquired)
                gate.acquire(holding, deadline - _now(), self.urgent)
                self._acquired.append(gate)
                holdings.append(holding)
        except BaseException as exc:
            err = self._failed(exc)
            if err is exc:
                raise
            raise err from exc
        self._token = set_context_held((*context_held(), *holdings))
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._release()

    async def __aenter__(self) -> Lease:
        task = asyncio.current_task()
        owner = self.owner or (task.get_name() if task is not None else "coroutine")
        held, todo = self._plan(owner)
        deadline = _now() + self.timeout
        holdings: list[Holding] = []
        try:
            for gate in todo:
                holding = Holding(gate, owner, "lease", held, self._acquired)
                await gate.aacquire(holding, deadline - _now(), self.urgent)
                self._acquired.append(gate)
                holdings.append(holding)
        except BaseException as exc:
            err = self._failed(exc)
            if err is exc:
                raise
            raise err from exc
        self._token = set_context_held((*context_held(), *holdings))
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._release()

    def _release(self) -> None:
        if self._token is not None:
            reset_context_held(self._token)
            self._token = None
        for gate in reversed(self._acquired):
            gate.release()
        self._acquired.clear()


def lease(resources: Iterable[Leasable], *, owner: str | None = None,
          timeout: float | None = None, urgent: bool = False) -> Lease:
    """Exclusive use of several resources (any mix of serial ports and VISA resources)."""
    return Lease(resources, owner=owner, timeout=timeout, urgent=urgent)
