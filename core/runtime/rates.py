"""Rate alarms: an instrument that polls well below its requested rate is named.

A lab asks for ``poll_hz`` and gets what the machine, the bus and the driver can
give; a v4 actor starved by a busy event loop, or a v2 thread by the GIL, does
not fail, it just records less than the lab thinks. So each running instrument's
achieved rate is compared with the requested one once a second, and one below
``fraction`` of it for ``after_s`` seconds raises an alarm (once per episode).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .health import InstrumentHealth

Alarm = Callable[[str, str], None]
DEFAULT_FRACTION = 0.8
DEFAULT_AFTER_S = 5.0


@dataclass
class RateWatch:
    on_alarm: Alarm
    fraction: float = DEFAULT_FRACTION
    after_s: float = DEFAULT_AFTER_S
    every_s: float = 1.0

    def __post_init__(self) -> None:
        self._below_since: dict[str, float] = {}
        self._alarmed: set[str] = set()
        self._last = 0.0

    def check(self, instruments: Iterable[tuple[InstrumentHealth, float]]) -> None:
        """``instruments``: (health, requested Hz) pairs; call as often as convenient."""
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        for h, wanted in instruments:
            rate = h.rate_hz()
            if h.state != "running" or rate >= self.fraction * wanted:
                self._below_since.pop(h.id, None)
                self._alarmed.discard(h.id)
                continue
            since = self._below_since.setdefault(h.id, now)
            hold = max(self.after_s, 3.0 / wanted)  # a slow poller needs a few periods
            if now - since >= hold and h.id not in self._alarmed:
                self._alarmed.add(h.id)
                msg = (f"{h.id} polls at {rate:.1f} Hz, {rate / wanted:.0%} of the "
                       f"{wanted:g} Hz asked, for {now - since:.0f} s")
                h.event("slow", msg)
                self.on_alarm(f"rate:{h.id}", msg)
