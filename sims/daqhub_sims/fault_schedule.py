"""Faults on a timetable, so a lab can rehearse failures from the command line.

``daqhub sim serve ... --garbage-every 5 --disconnect-every 60 --disconnect-for 3`` turns the
endpoint's :class:`~daqhub_sims.faults.Faults` knobs on a schedule: every N seconds it arms one
burst of garbage before the next reply, cuts the next reply short, or pulls the adapter for a
while. The schedule is a pure function of the time it is given, so tests step it exactly; the
serve loop only asks it how long to wait and calls :meth:`FaultSchedule.run_due`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from daqhub_sims.faults import Faults

#: Bytes injected by ``--garbage-every`` unless ``--garbage`` says otherwise: not ASCII, not a
#: terminator, so a driver that mistakes them for a reply fails to parse rather than hangs.
DEFAULT_GARBAGE = b"\xfe\x00~\x81"


@dataclass(frozen=True)
class FaultPlan:
    """Periods in seconds (None: that fault is off)."""

    garbage_every: float | None = None
    garbage: bytes = DEFAULT_GARBAGE
    truncate_every: float | None = None
    truncate_to: int = 2
    disconnect_every: float | None = None
    disconnect_for: float = 1.0

    def __post_init__(self) -> None:
        for name in ("garbage_every", "truncate_every", "disconnect_every"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name.replace('_', '-')} must be a number of seconds > 0, "
                                 f"got {value}")
        if not self.garbage:
            raise ValueError("garbage must be at least one byte")
        if self.truncate_to < 0:
            raise ValueError(f"truncate-to must be >= 0 bytes, got {self.truncate_to}")
        if not self.disconnect_for > 0:
            raise ValueError(f"disconnect-for must be > 0 s, got {self.disconnect_for}")
        if self.disconnect_every is not None and self.disconnect_for >= self.disconnect_every:
            raise ValueError(f"disconnect-for ({self.disconnect_for} s) must be shorter than "
                             f"disconnect-every ({self.disconnect_every} s)")

    @property
    def active(self) -> bool:
        return any(p is not None for p in (self.garbage_every, self.truncate_every,
                                           self.disconnect_every))


def _next(at: float, period: float, now: float) -> float:
    """The first time on the period's grid after ``now``: periods missed are skipped, not
    fired in a burst (a late serve loop must not pile up faults)."""
    return at + period * (math.floor((now - at) / period) + 1)


class FaultSchedule:
    """Fires the plan's faults on ``faults``; each period counts from ``start``."""

    def __init__(self, faults: Faults, plan: FaultPlan, start: float) -> None:
        self._faults = faults
        self._plan = plan
        self._due: dict[str, float] = {}
        if plan.garbage_every is not None:
            self._due["garbage"] = start + plan.garbage_every
        if plan.truncate_every is not None:
            self._due["truncate"] = start + plan.truncate_every
        if plan.disconnect_every is not None:
            self._due["disconnect"] = start + plan.disconnect_every

    def due_in(self, now: float) -> float | None:
        """Seconds until the next fault (0 if one is due), None if the plan has none."""
        if not self._due:
            return None
        return max(0.0, min(self._due.values()) - now)

    def run_due(self, now: float) -> list[str]:
        """Fire each fault due by ``now`` once; one line per fault fired, for the operator."""
        fired: list[str] = []
        plan = self._plan
        while self._due and min(self._due.values()) <= now:
            kind = min(self._due, key=self._due.__getitem__)
            at = self._due[kind]
            if kind == "garbage":
                assert plan.garbage_every is not None
                self._faults.inject_garbage(plan.garbage)
                fired.append(f"garbage: {plan.garbage!r} armed before the next reply")
                self._due[kind] = _next(at, plan.garbage_every, now)
            elif kind == "truncate":
                assert plan.truncate_every is not None
                self._faults.truncate_next(plan.truncate_to)
                fired.append(f"truncation: the next reply is cut to {plan.truncate_to} bytes")
                self._due[kind] = _next(at, plan.truncate_every, now)
            elif kind == "disconnect":
                assert plan.disconnect_every is not None
                self._faults.disconnect()
                fired.append(f"disconnected for {plan.disconnect_for:g} s")
                self._due[kind] = _next(at, plan.disconnect_every, now)
                self._due["reconnect"] = at + plan.disconnect_for
            else:
                self._faults.reconnect()
                fired.append("reconnected")
                del self._due[kind]
        return fired
