"""What a crash costs an instrument, the same in both flavors.

A crash is an exception from the driver that is not a device error (a bug: ``KeyError``,
``AttributeError`` ... in ``connect``/``start`` or ``read``; see
:data:`~daqhub.runtime.health.DEVICE_ERRORS`). The instrument is closed and started again
after a backoff that doubles up to ``backoff_max_s`` (and starts over after a start that
worked); more than ``max_restarts`` crashes within ``window_s`` mark it ``failed`` and it
is not started again. A lab sets the policy in ``[daqhub.restart]``, an instrument in its
``restart`` table.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .health import EventSink, InstrumentHealth, failure_text


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5
    window_s: float = 60.0
    backoff_first_s: float = 0.2
    backoff_max_s: float = 5.0
    start_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    call_timeout_s: float = 60.0

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> RestartPolicy:
        """From a lab's ``[daqhub.restart]`` merged with an instrument's ``restart`` table."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class Restarts:
    """One instrument's crashes, counted against its policy."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.times: collections.deque[float] = collections.deque()
        self.backoff = policy.backoff_first_s

    def started(self) -> None:
        """A start worked: the next crash waits the first backoff again."""
        self.backoff = self.policy.backoff_first_s

    def crashed(self, now: float) -> float | None:
        """The wait before the next start, or None: too many crashes, the instrument failed."""
        self.times.append(now)
        while self.times and now - self.times[0] > self.policy.window_s:
            self.times.popleft()
        if len(self.times) > self.policy.max_restarts:
            return None
        wait, self.backoff = self.backoff, min(self.backoff * 2, self.policy.backoff_max_s)
        return wait

    def crash(self, health: InstrumentHealth, events: EventSink, what: str,
              exc: BaseException, stopping: bool) -> float | None:
        """Record the crash of ``health``'s instrument in ``what`` and say so (its health,
        its events): the wait before its next start, or None when it is not started again
        (it failed, or the runtime is ``stopping``)."""
        why = failure_text(exc)
        health.error(f"{what} failed: {why}")
        if stopping:
            return None
        backoff = self.crashed(time.monotonic())
        if backoff is None:
            text = (f"{self.policy.max_restarts} restarts within {self.policy.window_s:g} s; "
                    f"last error: {why}")
            health.set_state("failed", text)
            events(health.id, "failed", text)
            return None
        health.set_state("restarting", f"crashed: {why}")
        health.restarts += 1
        events(health.id, "restarted", f"after error: {why}; retry in {backoff:.2f} s")
        return backoff
