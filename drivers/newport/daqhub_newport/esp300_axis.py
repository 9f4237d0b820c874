"""One ESP300 axis, flavor-neutral: the transactions both flavors run, and what errors mean.

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

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from daqhub.driver import DriverError, DriverTimeoutError, parse_reply
from daqhub.driver.lines import begin, integer, no_reply, number, read_line, send
from daqhub.measurement import MetaValue

from .esp300_protocol import (
    COMMAND_END,
    FIFO_DEPTH,
    REPLY_END,
    UNIT_CODES,
    UNIT_NAMES,
    EspError,
    as_driver_error,
    command,
    describe,
    drain_errors,
    format_number,
)

T = TypeVar("T")
log = logging.getLogger(__name__)
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


class AxisSession:
    """Everything about one axis that does not depend on the flavor.

    Methods named ``*_fn`` return transaction functions for ``port.transaction`` /
    ``port.atransaction``; they run on whichever thread holds the port, so the fault list is
    guarded by a lock.
    """

    def __init__(self, instrument_id: str, settings: Any, router: ErrorRouter) -> None:
        self.id = instrument_id
        self.settings = settings
        self.axis = settings.axis
        self.unit = settings.units
        self.router = router
        self._lock = threading.Lock()
        self._faults: list[EspError] = []
        self._motion_command = ""
        self._was_moving = True  # the first poll reads the FIFO

    def cmd(self, mnemonic: str, parameter: str = "") -> str:
        return command(self.axis, mnemonic, parameter)

    def number(self, value: float, mnemonic: str) -> str:
        return format_number(value, self.id, self.cmd(mnemonic))

    # ------------------------------------------------------------------ building blocks
    def _own_errors(self, io: Any, also: int | None = None) -> list[EspError]:
        return self.router.split(self.axis, drain_errors(io, self.id), also=also)

    def _add_faults(self, errors: list[EspError]) -> None:
        """Keep faults for the next wait; bounded, keeping the oldest (the first cause)."""
        if errors:
            with self._lock:
                self._faults = (self._faults + errors)[:FIFO_DEPTH]

    def _ask(self, io: Any, cmd: str, parse: Callable[[str], T], also: int | None) -> T:
        """Send a query and parse its reply; silence is explained from the error FIFO."""
        send(io, cmd, COMMAND_END)
        text = read_line(io, self.id, cmd, REPLY_END)
        if text is None:
            try:
                own = self._own_errors(io, also)
            except DriverTimeoutError:
                raise no_reply(io, self.id, cmd) from None  # silent altogether
            if own:
                raise as_driver_error(self.id, cmd, own)
            raise no_reply(io, self.id, cmd)
        return parse(text)

    def _set(self, io: Any, cmd: str, also: int | None = None) -> None:
        send(io, cmd, COMMAND_END)
        own = self._own_errors(io, also)
        if own:
            raise as_driver_error(self.id, cmd, own)

    def parse_float(self, cmd: str) -> Callable[[str], float]:
        return lambda text: parse_reply(number, text, self.id, cmd)

    def parse_done(self, cmd: str) -> Callable[[str], bool]:
        """``MD?``: ``1`` = motion done, ``0`` = moving (the protocol reference)."""
        return lambda text: parse_reply(integer(0, 1), text, self.id, cmd) == 1

    # ------------------------------------------------------------------ transactions
    def connect_fn(self) -> Callable[[Any], None]:
        """Check the axis answers, agree on units, power the motor, apply the lab's settings."""
        s = self.settings

        def connect(io: Any) -> None:
            begin(io, s.reply_timeout)
            stale = self._own_errors(io)
            if stale:
                log.info("%s: discarded errors left from before connect: %s", self.id,
                         describe(stale))
            sn = self.cmd("SN?")
            code = self._ask(io, sn, lambda t: parse_reply(integer(0, 11), t, self.id, sn), None)
            reported = UNIT_NAMES[code]
            if reported != s.units:
                if not s.set_units:
                    raise DriverError(
                        self.id, sn,
                        f"axis {self.axis} works in {reported} (SN {code}) but the lab file "
                        f"declares units = {s.units!r}; declare units = {reported!r}, or set "
                        f"set_units = true to switch the axis to {s.units}", code="units")
                self._set(io, self.cmd("SN", str(UNIT_CODES[s.units])))
            if s.motor_on:
                self._set(io, self.cmd("MO"))
            if s.velocity is not None:
                self._set(io, self.cmd("VA", self.number(s.velocity, "VA")))
            if s.acceleration is not None:
                self._set(io, self.cmd("AC", self.number(s.acceleration, "AC")))
            if s.limits is not None:
                self._set(io, self.cmd("SL", self.number(s.limits[0], "SL")))
                self._set(io, self.cmd("SR", self.number(s.limits[1], "SR")))

        return connect

    def set_fn(self, cmd: str, *, also: int | None = None) -> Callable[[Any], None]:
        """A set command: errors it causes raise; faults routed to us meanwhile are kept."""

        def set_command(io: Any) -> None:
            begin(io, self.settings.reply_timeout)
            self._add_faults(self.router.take(self.axis))
            self._set(io, cmd, also)

        return set_command

    def motion_fn(self, cmd: str) -> Callable[[Any], None]:
        """Start a motion (PA, PR, OR): forget earlier faults, remember what we asked for."""

        def start_motion(io: Any) -> None:
            begin(io, self.settings.reply_timeout)
            with self._lock:
                old, self._faults = self._faults, []
                self._motion_command = cmd
            self._was_moving = True  # a short move may end before the next poll sees it
            old += self.router.take(self.axis)
            if old:
                log.warning("%s: faults of an earlier motion nobody waited for: %s", self.id,
                            describe(old))
            self._set(io, cmd)

        return start_motion

    def query_fn(self, cmd: str, parse: Callable[[str], T], *, also: int | None = None
                 ) -> Callable[[Any], T]:
        def query(io: Any) -> T:
            begin(io, self.settings.reply_timeout)
            value = self._ask(io, cmd, parse, also)
            self._add_faults(self._own_errors(io, also) + self.router.take(self.axis))
            return value

        return query

    def write_fn(self, cmd: str) -> Callable[[Any], None]:
        """Write only, no FIFO drain: for ST/AB, which must be on the wire as fast as possible.

        Whatever they cause (``x20 HOMING ABORTED``) is drained by the next exchange and
        becomes a fault of the motion they interrupted.
        """

        def write(io: Any) -> None:
            send(io, cmd, COMMAND_END)

        return write

    def poll_fn(self) -> Callable[[Any], tuple[float, dict[str, MetaValue]]]:
        """One sample: actual position, whether the axis moves, faults seen since last time
        (the FIFO read only when one can be waiting: see the module docstring)."""
        tp, md = self.cmd("TP?"), self.cmd("MD?")

        def poll(io: Any) -> tuple[float, dict[str, MetaValue]]:
            begin(io, self.settings.reply_timeout)
            position = self._ask(io, tp, self.parse_float(tp), None)
            done = self._ask(io, md, self.parse_done(md), None)
            drain = (self._was_moving or not done
                     or time.monotonic() - self.router.drained_at >= IDLE_ERROR_CHECK_S)
            self._was_moving = not done
            new = (self._own_errors(io) if drain else []) + self.router.take(self.axis)
            self._add_faults(new)
            meta: dict[str, MetaValue] = {"moving": not done}
            if new:
                meta["error_code"] = new[0].code
                meta["error"] = describe(new)
            return position, meta

        return poll

    # ------------------------------------------------------------------ after a motion
    def raise_faults(self) -> None:
        """Raise (once) the faults of the motion just finished, naming its command."""
        with self._lock:
            faults, self._faults = self._faults, []
            cmd = self._motion_command
        if faults:
            raise as_driver_error(self.id, cmd or self.cmd("MD?"), faults)

    def motion_timeout(self, waited: float, homing: bool) -> DriverTimeoutError:
        with self._lock:
            cmd = self._motion_command or self.cmd("MD?")
        what = "homing" if homing else "the motion"
        after = "; the axis was stopped (ST)" if homing else ""
        return DriverTimeoutError(
            self.id, cmd,
            f"axis {self.axis}: {what} did not finish within {waited:.3g} s (MD? still "
            f"reported moving){after}", code="timeout")

    def home_command(self) -> str:
        mode = self.settings.home_mode
        return self.cmd("OR", "" if mode is None else str(mode))
