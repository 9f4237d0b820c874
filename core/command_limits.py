"""How long a caller waits for an instrument command it sent: one rule for every caller.

A command's wait is bounded: the driver method's own ``timeout`` argument plus a margin
(the driver reports its own timeout first, with its own words), else a default. The
value a caller gives is read from the method's signature, so ``wait_until_done(0.5)`` and
``wait_until_done(timeout=0.5)`` wait alike, and a wait that could not end (None, NaN,
inf, 1e12) is not taken: the default bounds it, and the driver refuses such a value and
says so.

The Lab API (:meth:`daqhub.lab.Instrument.wait_limit`) and the live data service's remote
``call`` use these numbers; a remote caller cannot choose how long the service waits.

How a caller tells its own wait running out from the driver's timeout: :func:`result_within`
(:func:`aresult_within` in a coroutine) raises :class:`NoResult`, which no driver raises. A
driver's ``DriverTimeoutError`` is a ``TimeoutError`` too, and so is
``concurrent.futures.TimeoutError`` since Python 3.11, so ``except TimeoutError`` around
``fut.result(limit)`` took an Elliptec module's "no reply from address 2 within 1.00 s"
for the caller's own wait and replaced it with "no result within 60 s".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Mapping
from typing import Any, TypeVar

from .commands import command_signature
from .resources.timeouts import MAX_TIMEOUT_S

T = TypeVar("T")

#: How long a command may take when the driver method has no ``timeout`` of its own.
COMMAND_TIMEOUT_S = 60.0
#: Added to a driver method's own ``timeout`` argument: the driver reports its timeout first.
TIMEOUT_MARGIN_S = 10.0


def wait_limit(cls: type | None, method: str, args: tuple[Any, ...],
               kwargs: Mapping[str, Any]) -> float:
    """Seconds to wait for ``cls.method(*args, **kwargs)`` (``cls`` None: the driver class is
    unknown until it runs, so the default)."""
    sig = command_signature(cls, method)
    if sig is None or "timeout" not in sig.parameters:  # (a timeout= would land in **kw)
        return COMMAND_TIMEOUT_S
    try:
        bound = sig.bind(None, *args, **kwargs)
    except TypeError:
        return COMMAND_TIMEOUT_S
    bound.apply_defaults()
    return limit_for(bound.arguments.get("timeout"))


def limit_for(own: Any) -> float:
    """The wait for a command whose own ``timeout`` argument is ``own`` (None: it has none)."""
    if isinstance(own, int | float) and 0 <= own <= MAX_TIMEOUT_S:  # not NaN, inf, 1e12
        return float(own) + TIMEOUT_MARGIN_S
    return COMMAND_TIMEOUT_S


class NoResult(TimeoutError):
    """The caller's wait for a command's result ran out (raised by :func:`result_within`,
    never by a driver)."""


def result_within(fut: concurrent.futures.Future[T], limit: float) -> T:
    """``fut``'s result, or what it raised (a driver's own timeout error among them); a
    :class:`NoResult` when it has not finished within ``limit`` seconds."""
    try:
        return fut.result(limit)
    except TimeoutError as exc:
        if _raised_by(fut, exc):
            raise  # the command's own (a DriverTimeoutError)
        raise NoResult(f"no result within {limit:g} s") from None


async def aresult_within(fut: concurrent.futures.Future[T], limit: float) -> T:
    """:func:`result_within` for a coroutine: the loop is not blocked meanwhile, and a
    cancelled caller cancels the command if it has not started."""
    wrapped = asyncio.wrap_future(fut)
    try:
        return await asyncio.wait_for(wrapped, limit)
    except TimeoutError as exc:
        if _raised_by(wrapped, exc):
            raise
        raise NoResult(f"no result within {limit:g} s") from None


def _raised_by(fut: concurrent.futures.Future[Any] | asyncio.Future[Any],
               exc: BaseException) -> bool:
    """Whether ``exc`` is what the finished command raised (not the wait running out)."""
    return fut.done() and not fut.cancelled() and fut.exception() is exc
