"""Ctrl-C deferral while the main thread has a transaction on the wire.

CPython runs signal handlers only in the main thread, between bytecodes. While the main thread
runs a transaction, SIGINT is deferred by a temporary handler that only records it; the previous
handler is restored and the signal re-raised (``signal.raise_signal``) as soon as the
transaction is finished, so a command is never split from its reply. While the main thread is
merely *queued* (``interruptible``, set around that wait by :mod:`.inline`) the previous
handler runs at once, so the interrupt is honoured and the gate withdraws the queued job.
Other threads never receive KeyboardInterrupt in CPython.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

try:  # the C module: signal.signal/getsignal convert to enums and cost ~25 us per transaction
    import _signal

    _set_handler: Callable[[int, Any], Any] = _signal.signal
    _get_handler: Callable[[int], Any] = _signal.getsignal
except ImportError:  # pragma: no cover - other interpreters
    _set_handler = signal.signal
    _get_handler = signal.getsignal
_SIGINT_NUM = int(signal.SIGINT)


class _SigintGuard:
    """Defers SIGINT in the main thread while a transaction is on the wire (see module doc)."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self.interruptible = False
        self.previous: Any = None
        self.handler = self._handler  # one bound method, so "is ours?" is an identity test

    def enter(self) -> bool:
        if self.depth:
            self.depth += 1
            return True
        previous = _get_handler(_SIGINT_NUM)
        if previous is None:  # installed from C: we could not restore it, so leave it alone
            return False
        try:
            _set_handler(_SIGINT_NUM, self.handler)
        except ValueError:  # not the main interpreter
            return False
        self.previous = previous
        self.pending = False
        self.interruptible = False
        self.depth = 1
        return True

    def exit(self) -> None:
        self.depth -= 1
        if self.depth:
            return
        self.interruptible = False
        if _get_handler(_SIGINT_NUM) is self.handler:  # unless replaced meanwhile
            _set_handler(_SIGINT_NUM, self.previous)
        if self.pending:
            self.pending = False
            signal.raise_signal(_SIGINT_NUM)  # now handled by the restored handler

    def _handler(self, signum: int, frame: Any) -> None:
        if self.depth == 0:  # installed outside a transaction (code that saved it and put it
            # back later): deferring would lose the interrupt, with nobody left to raise it
            if callable(self.previous):
                self.previous(signum, frame)
            elif self.previous != signal.SIG_IGN:
                raise KeyboardInterrupt
            return
        if self.interruptible and self.depth == 1:
            previous = self.previous
            if callable(previous):
                previous(signum, frame)
                return
        self.pending = True


# The one guard of the process (signal handlers are per process): public within the package,
# used by the gate around every transaction the main thread makes.
SIGINT_GUARD = _SigintGuard()
