"""The v4 event loop's selector: it counts the loop's passes, and a busy loop's passes keep
the GIL.

asyncio selects once per pass of its loop, with a zero timeout whenever callbacks are ready,
which is every pass while actors poll flat out. CPython's ``epoll.poll`` lets go of the GIL
around every call, even one that cannot block, and each release wakes a thread waiting for
the GIL (a v2 instrument's worker, the bridge, a storage writer) and restarts its
switch-interval wait (CPython asks the holder to hand the GIL over only after a whole
interval, 5 ms, passed without it changing hands). The loop takes the GIL back before the
woken thread runs, so that thread lost every race and never asked: measured with two 1830-C
meters per flavor over ``sim://`` polling flat out (``bench/dual_overhead.py``), the v2 ones
made 85-345 polls/s in all next to the v4 ones instead of 17,000-18,000 alone, and the
futile wake-ups of the runtime's other threads cost the v4-only run 7 % of its CPU.

Here a pass with nothing to wait for polls epoll without letting go of the GIL (``epoll_wait``
called through :class:`ctypes.PyDLL`, which keeps it; with a zero timeout it never blocks),
so a busy loop is to the other threads what any thread that computes is: they get the GIL
after one switch interval, as CPython meant. Measured: the v2 meters got 4,300-4,800
polls/s in all next to the v4 ones, the v4-only run 18,800-20,000 polls/s for 0.99 core
instead of 15,800-16,200 for 1.07. A pass that may wait (a positive or no timeout)
selects as asyncio does; where ``epoll_wait`` cannot be called so (not Linux, no ctypes),
every pass does.
"""

from __future__ import annotations

import ctypes
import platform
import select
import selectors
import struct
from typing import Any

#: events one zero-timeout pass takes at most; more stay ready for the next pass (epoll as
#: asyncio uses it is level-triggered)
MAX_EVENTS = 256


def _gil_keeping_epoll_wait() -> tuple[Any, Any] | None:
    """``(epoll_wait, event buffer)`` called without releasing the GIL, or None where that
    cannot be had."""
    if selectors.DefaultSelector is not getattr(selectors, "EpollSelector", None):
        return None
    try:
        wait = ctypes.PyDLL(None).epoll_wait  # PyDLL: the call keeps the GIL
    except (OSError, AttributeError):
        return None
    # no ``argtypes``: its checks cost more than the syscall; the arguments are three ints
    # (passed as C ints) and the buffer (passed as its address)
    wait.restype = ctypes.c_int

    class Data(ctypes.Union):
        _fields_ = [("fd", ctypes.c_int), ("u64", ctypes.c_uint64)]

    # glibc's struct epoll_event is packed on x86-64 only (12 bytes; 16 elsewhere)
    packed = platform.machine() == "x86_64" and struct.calcsize("P") == 8

    class Event(ctypes.Structure):
        if packed:
            _pack_ = 1
        _fields_ = [("events", ctypes.c_uint32), ("data", Data)]

    return wait, (Event * MAX_EVENTS)()


_EPOLL_WAIT = _gil_keeping_epoll_wait()
#: whether a zero-timeout pass keeps the GIL here (else every pass selects as asyncio does)
KEEPS_GIL = _EPOLL_WAIT is not None
_NOT_IN = ~select.EPOLLIN if _EPOLL_WAIT else 0
_NOT_OUT = ~select.EPOLLOUT if _EPOLL_WAIT else 0


class LoopPasses(selectors.DefaultSelector):
    """The V4 loop's selector, counting the loop's passes (each pass selects once), so a
    runner can tell whether a read let the loop run (see ``ActorRunner._serve``); a pass
    that need not wait keeps the GIL (see the module's docstring)."""

    passes = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.passes += 1
        if timeout != 0 or _EPOLL_WAIT is None:
            return super().select(timeout)
        wait, events = _EPOLL_WAIT
        n = wait(self.fileno(), events, MAX_EVENTS, 0)
        if n <= 0:
            # 0: nothing ready; -1 (EINTR, say): let the standard path retry or raise it
            return [] if n == 0 else super().select(timeout)
        ready = []
        keys = self.get_map()
        for i in range(n):
            ev = events[i]
            key = keys.get(ev.data.fd)
            if key is not None:  # as EpollSelector maps epoll's bits to selectors' events
                bits = ev.events
                mask = ((selectors.EVENT_WRITE if bits & _NOT_IN else 0)
                        | (selectors.EVENT_READ if bits & _NOT_OUT else 0))
                ready.append((key, mask & key.events))
        return ready
