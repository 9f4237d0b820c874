"""Helpers of the Newport driver tests (named apart from conftest so tests can import them)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from daqhub.specs import InstrumentType
from daqhub_newport import plugin
from daqhub_sims import registry
from daqhub_sims.device import ManualClock

_line_numbers = itertools.count()


def instrument_type(name: str, flavor: str) -> InstrumentType:
    for t in plugin.daqhub_instrument_types():
        if t.name == name and t.flavor == flavor:
            return t
    raise LookupError(f"{name} {flavor} not registered")


def sim_url(model: str, **options: Any) -> str:
    """A ``sim://`` URL on a line no other test uses (``name=`` makes it unique)."""
    query = "&".join(f"{k}={v}" for k, v in {"name": f"t{next(_line_numbers)}",
                                                **options}.items())
    return f"sim://{model}?{query}"


def manual_clock_sim(model: str, **options: Any) -> tuple[str, ManualClock]:
    """A fresh simulated line whose device time moves only when the test says so."""
    url = sim_url(model, **options)
    clock = ManualClock()
    registry.endpoint(url, clock=clock)
    return url, clock


def advance(url: str, clock: ManualClock, seconds: float) -> None:
    clock.advance(seconds)
    registry.endpoint(url).poke()


Build = Callable[..., Any]


def run(coro: Any, timeout: float = 10.0) -> Any:
    """Drive a v4 actor coroutine to completion, bounded."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())
