"""Ctrl-C deferral while the main thread has a transaction on the wire.

CPython runs signal handlers only in the main thread, between bytecodes. While the main thread
runs a transaction, SIGINT is deferred by a handler that only records it; as soon as the
transaction is finished the signal is raised again (``signal.raise_signal``) and handled as the
handler found before the transaction handles it, so a command is never split from its reply.
While the main thread is merely *queued* (``interruptible``, set around that wait by
:mod:`.inline`) that handler runs at once, so the interrupt is honoured and the gate withdraws
the queued job. Other threads never receive KeyboardInterrupt in CPython.

The deferring handler stays installed after the transaction when the handler it found is a
Python function (Python's own ``default_int_handler`` or the program's), and passes every
interrupt outside a transaction straight to it. Installing a handler is a ``sigaction`` system
call, and swapping the handler in and out cost two per transaction: 2.1 us of CPU, and in
``bench/serial_overhead.py`` (a main-thread caller on a pty) 1.159-1.163 of raw pyserial's
time against 1.084-1.095 without them (2026-12-07). What stays visible: outside a transaction
``signal.getsignal(SIGINT)`` returns the deferring handler, so ``asyncio.run`` started in the
main thread after a transaction there does not install its own Ctrl-C handling (which it does
only over ``default_int_handler``), and Ctrl-C raises ``KeyboardInterrupt`` inside the loop, as
on Python 3.10. A handler the program installs later is found by the next transaction and
deferred to in its turn. ``SIG_DFL`` and ``SIG_IGN`` (the kernel's own actions, which a Python
handler cannot imitate) are put back after each transaction.
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
        current = _get_handler(_SIGINT_NUM)  # the stored object: no system call
        if current is not self.handler:  # the first transaction, or replaced since the last
            if current is None:  # installed from C: we could not restore it, so leave it alone
                return False
            try:
                _set_handler(_SIGINT_NUM, self.handler)
            except ValueError:  # not the main interpreter
                return False
            self.previous = current
        self.pending = False
        self.interruptible = False
        self.depth = 1
        return True

    def exit(self) -> None:
        self.depth -= 1
        if self.depth:
            return
        self.interruptible = False
        if not callable(self.previous) and _get_handler(_SIGINT_NUM) is self.handler:
            _set_handler(_SIGINT_NUM, self.previous)  # SIG_DFL, SIG_IGN (see module doc)
        if self.pending:
            self.pending = False
            signal.raise_signal(_SIGINT_NUM)  # handled as the handler found handles it

    def _handler(self, signum: int, frame: Any) -> None:
        if self.depth == 0:  # between transactions, or put back by code that saved it:
            # deferring would lose the interrupt, with nobody left to raise it
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
