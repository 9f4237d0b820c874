"""Per-resource transaction counters, shown by the runtime's health report and the benches."""

from __future__ import annotations

from typing import Any


class TransactionStats:
    """Counters of one resource. Updated by whoever holds its gate, so no lock of their own.

    The gate counts and times every transaction (:meth:`.gate.Gate.run`); the resource adds
    its disconnects and reconnects.
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
