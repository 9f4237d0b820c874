"""What the ESP300's errors mean for one axis, and the router that gets them to it.

The ESP300 reports problems only through its controller-wide error FIFO, and some of them
arrive long after the command that caused them: a move into a hardware limit is accepted
silently and logs ``x04`` when the stage gets there. Whoever drains the FIFO next (a poll of
this axis, or an exchange of another axis sharing the controller) must get each error to the
axis it belongs to. So:

* every command and query ends by draining the FIFO; entries of other axes go to the
  controller's :class:`ErrorRouter` (one per port), entries of this axis and general errors
  are ours;
* a poll (``TP?``, ``MD?``) drains it only when an error can be waiting that no command
  drained: while the axis moves, on the poll that sees it stop, and otherwise once per
  :data:`IDLE_ERROR_CHECK_S` since anyone last drained the controller's FIFO (a fault of an
  idle axis, a stage unplugged). An idle poll is two exchanges, not three;
* an error drained right after a set command is that command's failure and raises at once;
* an error that shows up otherwise (during a poll, or routed from another axis' exchange) is
  a *fault* of the running motion: it is reported once in the poll's metadata and raised by
  the next :meth:`wait_until_done` or :meth:`home`, which is where a script learns that its
  move did not end where it asked;
* a new motion command starts with a clean slate (faults nobody waited for are logged).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque

from .esp300_protocol import FIFO_DEPTH, EspError

#: Longest time an idle axis' polls go without the error FIFO being read (by any axis).
IDLE_ERROR_CHECK_S = 1.0


def raw_axis(text: str) -> int | None:
    """The axis a raw command line addresses (its numeric prefix), if any."""
    match = re.match(r"\s*(\d+)", text)
    return int(match.group(1)) if match else None


class ErrorRouter:
    """Errors of one controller drained by one axis' exchange but belonging to another axis.

    Shared per port (``port.shared(ErrorRouter.KEY, ErrorRouter)``) by every axis instrument
    of either flavor. Bounded per axis like the controller's own FIFO, so errors of an axis
    that no instrument drives cannot pile up.
    """

    KEY = "daqhub_newport.esp300.error_router"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, deque[EspError]] = {}
        #: monotonic time of the last drain of the controller's FIFO (by any axis)
        self.drained_at = 0.0

    def split(self, axis: int, errors: list[EspError], *, also: int | None = None
              ) -> list[EspError]:
        """Keep the errors of other axes for them; return this axis' and the general ones.

        ``also``: a further axis whose errors are claimed (a raw command addressed to it).
        """
        own: list[EspError] = []
        with self._lock:
            self.drained_at = time.monotonic()
            for err in errors:
                if err.axis in (0, axis) or err.axis == also:
                    own.append(err)
                else:
                    self._pending.setdefault(err.axis, deque(maxlen=FIFO_DEPTH)).append(err)
        return own

    def pending(self, axis: int) -> int:
        """How many errors wait for ``axis`` (diagnostics)."""
        with self._lock:
            return len(self._pending.get(axis, ()))

    def take(self, axis: int) -> list[EspError]:
        with self._lock:
            queue = self._pending.pop(axis, None)
        return list(queue) if queue else []
