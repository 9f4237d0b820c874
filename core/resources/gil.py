"""The resource managers need the GIL; this module says where, and refuses to run without it.

Where correctness rests on the GIL
----------------------------------
Every other module in this package points here instead of repeating it.

* **The mutex-free release** (:meth:`.inline.InlineGate.run` and ``_let_go``): an inline
  holder gives the gate back with one lock release and then reads the queue lanes without the
  gate's mutex, while a queuer appends to a lane (under the mutex) and then tries the gate.
  Nothing is stranded only because the two sides' steps interleave whole, in program order,
  as bytecodes do under the GIL.
* **Reads without the mutex**: the fast path's look at the lanes, a waiter's double-checked
  ``entry.state``, the worker's look at its finished batch, ``holder_description`` reading the
  holder record, and ``TransactionStats`` fields read by the health report while the holder
  updates them: each is one bytecode-atomic load of a reference or an int.
* **Turns for event loops** (:mod:`.handback`): an inline holder reads the gate's ``_notice``,
  ``_turns`` and ``_posts`` without a lock, and the ``_ready`` and ``_scheduled`` of loops
  running in other threads (a truth test, then the earliest timer: a miss only costs or skips
  one bounded hand-over).
* **The inline held set** (:mod:`.ordering` ``INLINE_HELD``): a dict every thread writes its
  own key of, without a lock.
* **A subscription's offer** (:meth:`daqhub.runtime.broadcast.Subscription.offer`): while
  there is room a producer appends without the lock, then reads the depth the consumer
  published (under the lock, before its own look at the queue) that it waits for. Either the
  consumer's look sees the item or the producer's read sees the wish and wakes it; the consumer
  takes items one ``popleft`` at a time, so an append between two of its steps is never lost.

On a free-threaded build with the GIL disabled (``sys._is_gil_enabled()`` False) those would
race silently, so importing the gate fails instead, with the way out in the message.
"""

from __future__ import annotations

import sys


def gil_enabled() -> bool:
    """True unless this is a free-threaded interpreter running with the GIL disabled."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


def require_gil() -> None:
    """Called at import of :mod:`.gate`: fail loudly rather than race (see the module doc)."""
    if not gil_enabled():
        raise ImportError(
            "daqhub.resources relies on the GIL for the correctness of its gates (see "
            "daqhub/resources/gil.py) and this free-threaded interpreter runs with the GIL "
            "disabled; run Python with PYTHON_GIL=1 or -X gil=1")
