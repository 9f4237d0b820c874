"""The contract every simulated serial instrument follows.

A simulated device is a byte-level state machine plus a clock. Transports (the
``sim://`` URL handler, a pseudo-terminal, a TCP socket) own the threading and
the waiting; the device itself never blocks and never sleeps, so a test can run
it on a :class:`ManualClock` and step time exactly.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from daqhub_sims.model_options import SimOption, option_problem


class Clock(ABC):
    """Time source of a simulated device, in seconds."""

    @abstractmethod
    def now(self) -> float: ...


class RealClock(Clock):
    def now(self) -> float:
        return time.monotonic()


class ManualClock(Clock):
    """A clock that only moves when a test moves it (deterministic motion tests)."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        with self._lock:
            self._t += seconds


class SimDevice(ABC):
    """A simulated instrument on one serial line.

    Subclasses implement the protocol from the protocol reference. All methods are
    called with the transport's lock held, so a device needs no locking of its own.
    """

    #: Baud rate of the real link; transports use it for wire-speed emulation.
    baudrate: int = 9600
    #: One line on what the model simulates, for ``daqhub sim models``.
    summary: ClassVar[str] = ""
    #: The ``sim://`` options the model takes, with their defaults (``daqhub sim models``).
    OPTIONS: ClassVar[tuple[SimOption, ...]] = ()

    @classmethod
    def reference_tables(cls) -> list[tuple[str, list[str], list[list[str]]]]:
        """Extra tables a lab needs to write options (title, headers, rows), e.g. models."""
        return []

    def __init__(self, options: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        """Raises ValueError for an option outside :attr:`OPTIONS` when it declares any; a
        model that declares none reads its own from :attr:`options` and takes what it is
        given (``daqhub validate`` reads the same declaration: registry.declared_options)."""
        self.options: dict[str, str] = dict(options or {})
        problem = option_problem(type(self).__name__, self.OPTIONS, self.options)
        if problem:
            raise ValueError(problem)
        self.clock: Clock = clock or RealClock()

    @abstractmethod
    def feed(self, data: bytes) -> None:
        """Bytes written by the host, received at ``self.clock.now()``."""

    @abstractmethod
    def read(self) -> bytes:
        """Output that is due by ``self.clock.now()``; returned bytes are removed."""

    @abstractmethod
    def next_output_in(self) -> float | None:
        """Seconds until more output is due: 0 if some is due now, None if none is scheduled."""
