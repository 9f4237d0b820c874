"""Per-resource transaction counters, shown by the runtime's health report and the benches."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

A = TypeVar("A")
T = TypeVar("T")
_now = time.monotonic


class TransactionStats:
    """Counters of one resource. Updated by whoever holds its gate, so no lock of their own.

    The gate counts and times every transaction through :meth:`run_counted`, wherever it
    runs (inline, inside a lease, on the worker); the resource adds its disconnects and
    reconnects.
    """

    __slots__ = ("transactions", "errors", "timeouts", "urgent", "wait_total", "wait_max",
                 "io_total", "io_max", "disconnects", "reconnects")

    def __init__(self) -> None:
        self.transactions = 0
        self.errors = 0
        self.timeouts = 0
        self.urgent = 0
        self.wait_total = 0.0
        self.wait_max = 0.0
        self.io_total = 0.0
        self.io_max = 0.0
        self.disconnects = 0
        self.reconnects = 0

    def run_counted(self, runner: Callable[[A], T], arg: A, start: float) -> T:
        """Run one transaction, counting it as done or failed and timing its I/O.

        ``start`` is the caller's ``time.monotonic()`` of the moment it took the gate (it has
        one already; a clock read is measurable on the inline path).
        """
        try:
            result = runner(arg)
        except BaseException:
            self.errors += 1
            raise
        finally:
            io = _now() - start
            self.io_total += io
            if io > self.io_max:
                self.io_max = io
        self.transactions += 1
        return result

    def snapshot(self) -> dict[str, Any]:
        done = self.transactions + self.errors
        return {
            "transactions": self.transactions,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "urgent": self.urgent,
            "wait_mean_s": self.wait_total / done if done else 0.0,
            "wait_max_s": self.wait_max,
            "io_mean_s": self.io_total / done if done else 0.0,
            "io_max_s": self.io_max,
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
        }
