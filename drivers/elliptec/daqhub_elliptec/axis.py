"""One Elliptec module as a motion axis: every operation, written once as a plan.

Both flavors drive an :class:`Axis` through :class:`.driver.ElliptecModule`; the
axis holds the module's identity, scaling, last known position and the move in
flight, and turns replies into values or DriverErrors.

Moves are started and then *collected*: the command is written in one short
transaction and its deferred ``PO`` (or ``GSxx``) picked up later, by
``wait_until_done``, ``is_moving`` or a poll (``read``), so the bus is never held
while a module moves. While a move is pending nothing else is sent to that
module (the manual says it answers ``GS09`` meanwhile, and a busy reply could
not be told apart from the move's interim one); polls report the last known
position with ``moving=True``.

A move that fails while only polls are watching it keeps its error, which the
next motion call (``wait_until_done``, ``is_moving``, ``move_*``, ``home``,
``jog_*``) raises once: a failure is never dropped, and a poll never raises
for a move it did not start. After a failed move the position is unknown
(``pulses`` None) until the module is asked again.

A reply the driver gave up on may still come: a query's that timed out, the
end of a move that outran its timeout (the module, still moving, answers a new
move with ``GS09`` and never runs it), or of a move whose send failed or was
cancelled once it may have been written (its position is then unknown until
asked again). The router then holds the address as
owing that reply (:meth:`~daqhub.driver.bus.BusRouter.owe`) and takes the late
line as it, never as a later command's answer; and before anything else is sent
to the address, :meth:`Axis._caught_up` asks ``in`` until the module answers
it, waiting out an earlier move still running (``GS09``) or refusing to send.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from daqhub.driver import (
    Arg,
    DriverDisconnectedError,
    DriverError,
    DriverTimeoutError,
    Pause,
    Plan,
    checked_wait,
    command,
)
from daqhub.driver.bus import Collect, Exchange, Send

from . import status
from .frames import BadLine, Command, Frame, Line, address_of, from_hex32, hex32
from .models import IN_REPLY_S, DeviceInfo, Model, Scale, parse_info, parse_motor_info, period_data
from .router import BusRouter, Expectation

#: How long an immediate command is retried while the module answers busy (GS09).
BUSY_TIMEOUT_S = 3.0
_BUSY_RETRY_S = (0.02, 0.05, 0.1, 0.2)


def check_velocity(percent: Any) -> int:
    if (isinstance(percent, bool) or not isinstance(percent, int | float)
            or not math.isfinite(percent) or percent != int(percent) or not 1 <= percent <= 100):
        raise ValueError(f"velocity is a whole percentage 1-100, got {percent!r}")
    return int(percent)


def check_minutes(minutes: int) -> None:
    if not 1 <= minutes <= 255:
        raise ValueError(f"isolate takes whole minutes 1-255, got {minutes!r}")


def check_motor(motor: int) -> None:
    if motor not in (1, 2):
        raise ValueError(f"motor is 1 or 2 (i2/f2/b2/s2 only on two-motor modules), got "
                         f"{motor!r}")


#: What the commands' arguments may be, checked before anything is sent and by ``daqhub
#: validate`` (``@command`` below: the module's :class:`.driver.ElliptecModule` forwards them).
DISTANCE = Arg(float)  # in the axis' unit; what fits 32 bits depends on the module's scale
VELOCITY = Arg(rule=check_velocity)
MINUTES = Arg(int, rule=check_minutes)
MOTOR = Arg(int, rule=check_motor)
FREQUENCY = Arg(rule=period_data)  # Hz, or None for the factory value


@dataclass
class Pending:
    """A move written to the bus whose end (``PO`` or ``GSxx``) has not been read yet."""

    expect: Expectation
    started: float
    deadline: float

    @property
    def command(self) -> Command:
        return self.expect.command


class Axis:
    """State and plans of one module; see the module docstring for the move model."""

    def __init__(self, instrument_id: str, model: Model, options: Any, router: BusRouter) -> None:
        """``options``: the block's own keys (:attr:`daqhub.driver.Session.options`)."""
        self.id = instrument_id
        self.model = model
        self.options = options
        self.busy_timeout = BUSY_TIMEOUT_S
        self.router = router
        #: the lab file's address, and the one the module answers at (moved by change_address)
        self.configured = address_of(options.address)
        self.address = router.current_address(instrument_id, self.configured)
        self.info: DeviceInfo | None = None
        self.scale: Scale | None = None
        self.pulses: int | None = None
        self.pending: Pending | None = None
        self.failure: DriverError | None = None
        self.claimed = False
        #: monotonic time until which the module ignores the bus (``is``)
        self.isolated_until = 0.0

    # ------------------------------------------------------------------ helpers
    @property
    def unit(self) -> str:
        return self.model.unit

    @property
    def is_slider(self) -> bool:
        return self.model.kind == "slider"

    def _command(self, mnemonic: str, data: str = "", reply: str = "GS",
                 deferred: bool = False, reply_address: str = "") -> Command:
        return Command(self.address, mnemonic, data, reply, deferred, reply_address)

    def _scale(self) -> Scale:
        if self.scale is None:
            raise DriverError(self.id, "", f"address {self.address} has not been identified "
                              f"yet (connect/start first)")
        return self.scale

    def position_units(self) -> float:
        if self.pulses is None:
            return float("nan")
        return self._scale().to_units(self.pulses)

    def check(self, command: Command, line: Line | None, waited: float) -> Frame:
        """The reply as a frame, or the DriverError it stands for."""
        where = f"address {command.answers_from}"
        if command.answers_from == self.address != self.configured:
            where += (f" (set by change_address in this session; the lab file says "
                      f"{self.configured})")
        if line is None:
            raise DriverTimeoutError(self.id, command.text,
                                  f"no reply from {where} within {waited:.2f} s")
        if isinstance(line, BadLine):
            raise DriverError(self.id, command.text, f"{line.describe()} from {where}")
        code = line.status if line.mnemonic == "GS" else None
        if code is not None and status.is_error(code):
            raise DriverError(self.id, command.text,
                              f"module at {where} reports {status.message(code)} "
                              f"(GS{status.code_text(code)})", status.code_text(code))
        if line.mnemonic != command.reply and not (code == status.OK and command.reply == "GS"):
            raise DriverError(self.id, command.text,
                              f"unexpected reply {line.text!r} from {where} (expected "
                              f"{command.reply})")
        return line

    def identity(self) -> dict[str, Any]:
        """What the `IN` reply said and how positions are scaled (empty before connecting)."""
        info, scale = self.info, self.scale
        if info is None or scale is None:
            return {}
        return {"model": info.model_name, "serial": info.serial, "year": info.year,
                "firmware": info.firmware, "hardware": info.hardware & 0x7F,
                "imperial": info.imperial, "travel": info.travel, "pulses": info.pulses,
                "address": self.address, "unit": self.unit,
                "pulses_per_unit": scale.pulses_per_unit}

    def _take_failure(self) -> None:
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure

    # ------------------------------------------------------------------ immediate commands
    def query(self, command: Command) -> Plan[Frame]:
        """One immediate command; retries while the module answers busy (``GS09``).

        A pending move is collected first: the module would only answer busy, and
        the command would drop the move's end if it had already been filed.
        """
        yield from self._idle()
        self._not_isolated(command)
        # `in` needs no `in` first: its own IN ends what the address owes (the router's rule)
        if command.reply != "IN" and not (yield from self._caught_up(command, self.busy_timeout)):
            raise self._still_busy(command, self.busy_timeout)
        busy_since: float | None = None
        retry = 0
        while True:
            expect = Expectation(command)
            line = yield Exchange(expect, self.options.reply_timeout)
            if isinstance(line, Frame) and line.mnemonic == "GS" and line.status == status.BUSY:
                now = time.monotonic()
                busy_since = now if busy_since is None else busy_since
                if now - busy_since >= self.busy_timeout:
                    raise DriverError(self.id, command.text,
                                      f"module at address {command.answers_from} still busy "
                                      f"(GS09) after {now - busy_since:.1f} s of retries",
                                      status.code_text(status.BUSY))
                yield Pause(_BUSY_RETRY_S[min(retry, len(_BUSY_RETRY_S) - 1)])
                retry += 1
                continue
            try:
                return self.check(command, line, self.options.reply_timeout)
            except DriverError as err:
                if err.code is not None:
                    yield from self._clear_status()
                raise

    def _clear_status(self) -> Plan[None]:
        """Read ``gs`` once: the manual's way to clear a sticky error code; best effort."""
        try:
            yield Exchange(Expectation(self._command("gs")), self.options.reply_timeout)
        except DriverError:
            pass

    def status(self) -> Plan[int]:
        """The module's status code, without raising for it (reading clears a sticky error)."""
        yield from self._idle()
        command = self._command("gs")
        if not (yield from self._caught_up(command, 0.0)):
            return status.BUSY
        line = yield Exchange(Expectation(command), self.options.reply_timeout)
        if isinstance(line, Frame) and line.status is not None:
            return line.status
        self.check(command, line, self.options.reply_timeout)
        raise DriverError(self.id, command.text, f"unexpected reply {line!r}")

    def identify(self) -> Plan[DeviceInfo]:
        command = self._command("in", reply="IN")
        frame = yield from self.query(command)
        try:
            info = parse_info(frame.data)
        except ValueError as exc:
            raise DriverError(self.id, command.text, f"bad IN reply {frame.text!r}: {exc}"
                              ) from None
        expected = self.model
        if info.model is None or info.model.name != expected.name:
            raise DriverError(self.id, command.text,
                              f"address {self.address} answers as {info.model_name} (serial "
                              f"{info.serial}), but this instrument is configured as "
                              f"{expected.name}")
        self.info = info
        self.scale = Scale.for_info(info)
        return info

    def connect(self) -> Plan[None]:
        if not self.claimed:
            try:
                self.router.claim(self.address, self.id)
            except ValueError as exc:
                raise DriverError(self.id, "", str(exc)) from None
            self.claimed = True
        yield from self.identify()
        if not self.is_slider and self.options.velocity is not None:
            yield from self.set_velocity(self.options.velocity)
        if self.options.home_on_start:
            yield from self.home(self.options.move_timeout)
        yield from self.refresh_position()

    def close(self) -> None:
        if self.claimed:
            self.router.release(self.address, self.id)
            self.claimed = False

    def refresh_position(self) -> Plan[float]:
        frame = yield from self.query(self._command("gp", reply="PO"))
        self.pulses = from_hex32(frame.data)
        return self.position_units()

    def velocity(self) -> Plan[int]:
        """Drive power in percent (``gv``)."""
        frame = yield from self.query(self._command("gv", reply="GV"))
        return int(frame.data, 16)

    @command(percent=VELOCITY)
    def set_velocity(self, percent: int) -> Plan[None]:
        """Drive power in percent, 1-100 (``sv``); below ~45 % a loaded stage may stall."""
        yield from self.query(self._command("sv", f"{check_velocity(percent):02X}"))

    def jog_step(self) -> Plan[float]:
        """Distance of one jog step in the axis' unit (``gj``)."""
        return (yield from self._distance("jog step", "gj", "GJ"))

    @command(step=DISTANCE)
    def set_jog_step(self, step: float) -> Plan[None]:
        """Distance of one jog step (``sj``); 0 makes ``fw``/``bw`` a continuous jog."""
        yield from self._set_distance("jog step", "sj", step)

    def home_offset(self) -> Plan[float]:
        """Where home is, from the mechanical home, in the axis' unit (``go``)."""
        return (yield from self._distance("home offset", "go", "HO"))

    @command(offset=DISTANCE)
    def set_home_offset(self, offset: float) -> Plan[None]:
        """Move home by ``offset`` (``so``); volatile until :meth:`save_user_data`."""
        yield from self._set_distance("home offset", "so", offset)

    def _distance(self, what: str, mnemonic: str, reply: str) -> Plan[float]:
        self._no_slider(what)
        frame = yield from self.query(self._command(mnemonic, reply=reply))
        return from_hex32(frame.data) / self._scale().pulses_per_unit

    def _set_distance(self, what: str, mnemonic: str, value: float) -> Plan[None]:
        self._no_slider(what)
        yield from self.query(self._command(mnemonic, self._pulses(value)))

    # ------------------------------------------------------------------ motor tuning
    @command(motor=MOTOR)
    def motor_info(self, motor: int = 1) -> Plan[dict[str, Any]]:
        """A motor's state (``i1``/``i2``): loop and motor flags, current (A), ramps, and
        its forward/backward drive frequencies (Hz)."""
        command = self._command(f"i{motor}", reply=f"I{motor}")
        frame = yield from self.query(command)
        try:
            return parse_motor_info(frame.data)
        except ValueError as exc:
            raise DriverError(self.id, command.text, f"bad reply {frame.text!r}: {exc}",
                              "garbled") from None

    @command(motor=MOTOR)
    def frequency(self, motor: int = 1) -> Plan[tuple[float | None, float | None]]:
        """A motor's forward and backward drive frequencies in Hz (from ``i1``/``i2``)."""
        info = yield from self.motor_info(motor)
        return info["forward_hz"], info["backward_hz"]

    @command(forward_hz=FREQUENCY, backward_hz=FREQUENCY, motor=MOTOR)
    def set_frequency(self, forward_hz: float | None, backward_hz: float | None,
                      motor: int = 1) -> Plan[None]:
        """Set a motor's drive frequencies in Hz (``f1``, ``b1``; None: the factory value).
        Volatile until :meth:`save_user_data`."""
        yield from self.query(self._command(f"f{motor}", period_data(forward_hz)))
        yield from self.query(self._command(f"b{motor}", period_data(backward_hz)))

    @command(motor=MOTOR)
    def search_frequency(self, motor: int = 1, timeout: float = 30.0
                         ) -> Plan[tuple[float | None, float | None]]:
        """Let the module search a motor's resonance (``s1``/``s2``: seconds, and the part
        may move), collected like a move; the frequencies it settled on."""
        limit = checked_wait(self.id, timeout)
        yield from self._start(self._command(f"s{motor}", deferred=True), limit)
        yield from self.wait_until_done(timeout)
        return (yield from self.frequency(motor))

    @command(minutes=MINUTES)
    def isolate(self, minutes: int) -> Plan[None]:
        """Make the module ignore the bus for ``minutes`` (``is``, 1-255). It answers nothing
        meanwhile, so polls report the last known position and commands are refused."""
        command = self._command("is", f"{minutes:02X}")
        yield from self._idle()
        self._not_isolated(command)
        if not (yield from self._caught_up(command, self.busy_timeout)):
            raise self._still_busy(command, self.busy_timeout)
        yield Send(command)
        self.isolated_until = time.monotonic() + 60.0 * minutes

    def _not_isolated(self, command: Command) -> None:
        left = self.isolated_until - time.monotonic()
        if left > 0:
            raise DriverError(self.id, command.text,
                              f"module at address {self.address} is isolated (is) for another "
                              f"{left:.0f} s and answers nothing until then", "isolated")

    @command(new=Arg(rule=address_of))
    def change_address(self, new: int | str) -> Plan[str]:
        """Re-address the module (``ca``; the reply comes from the new address).

        The new address is asked first (``in``): a module there that no instrument of the lab
        claims would, after ``ca``, execute every command with this one, and their replies
        would collide (a position of 0.0, garbled replies). The instrument keeps the new
        address when it reconnects (its bus router remembers it, :meth:`.BusRouter.
        current_address`); a restarted worker process, or the next run, starts from the lab
        file's. Volatile in the module until :meth:`save_user_data`; so save it and name the
        new address in the lab file.
        """
        target = address_of(new)
        yield from self._idle()
        if target == self.address:
            return target
        text = f"{self.address}ca{target}"
        try:
            self.router.claim(target, self.id)
        except ValueError as exc:
            raise DriverError(self.id, text, str(exc)) from None
        try:
            there = yield from self._answer_at(target)
            if there is not None:
                raise DriverError(self.id, text,
                                  f"address {target} is in use: it answered 'in' {there}, and "
                                  f"no instrument of this lab uses it; choose another address, "
                                  f"or re-address that module first (with only it connected)")
            yield from self.query(self._command("ca", target, reply_address=target))
        except DriverError:
            self.router.release(target, self.id)
            raise
        self.router.release(self.address, self.id)
        self.router.moved(self.id, target)
        self.address = target
        return target

    def _answer_at(self, address: str) -> Plan[str | None]:
        """How ``address`` answers ``in`` ("as ELL9 (serial ...)", "with <damaged bytes>", or
        any other line of it), or None when nothing does in the time a module takes."""
        expect = Expectation(Command(address, "in", reply="IN"))
        line = yield Exchange(expect, IN_REPLY_S)
        if line is None:
            return f"with {', '.join(map(repr, expect.skipped))}" if expect.skipped else None
        if isinstance(line, BadLine):
            return f"with {line.describe()}"
        if line.mnemonic == "IN":
            try:
                info = parse_info(line.data)
            except ValueError:
                return f"with {line.text!r}"
            return f"as {info.model_name} (serial {info.serial})"
        return f"with {line.text!r}"

    def save_user_data(self) -> Plan[None]:
        """Persist address, frequencies and the other user data in the module (``us``)."""
        yield from self.query(self._command("us"))

    def _no_slider(self, what: str) -> None:
        if self.is_slider:
            raise ValueError(f"{self.id}: {self.model.name} is a slider; it has no "
                             f"{what}")

    def _pulses(self, value: float) -> str:
        """``value`` in the axis' units as the module's 32-bit pulse count, in hex; what does
        not fit is refused naming the instrument, before anything is sent."""
        try:
            return hex32(self._scale().to_pulses(value))
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"{self.id}: cannot move by {value!r} {self.unit}: {exc}") from None

    # ------------------------------------------------------------------ moves
    @command(position=DISTANCE)
    def move_absolute(self, position: float) -> Plan[None]:
        """Start a move to ``position`` (``ma``; sliders: a slot index); collect it with
        wait_until_done."""
        scale = self._scale()
        try:
            pulses = scale.slot_pulses(position) if self.is_slider else scale.to_pulses(position)
            data = hex32(pulses)
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"{self.id}: cannot move to {position!r} {self.unit}: {exc}"
                             ) from None
        yield from self._start(self._command("ma", data, reply="PO", deferred=True))

    @command(distance=DISTANCE)
    def move_relative(self, distance: float) -> Plan[None]:
        """Start a move by ``distance`` (``mr``; sliders: slots)."""
        if self.is_slider:
            # A slot offset becomes an absolute slot, checked against the slider's slots.
            yield from self._idle()
            if self.pulses is None:
                yield from self.refresh_position()
            yield from self.move_absolute(self.position_units() + distance)
            return
        data = self._pulses(distance)
        yield from self._start(self._command("mr", data, reply="PO", deferred=True))

    @command(direction=Arg(int, choices=(0, 1)))  # 0 clockwise, 1 counter-clockwise
    def home(self, timeout: float = 30.0, direction: int = 0) -> Plan[float]:
        """Home and wait for the end; sliders (which ignore ``ho``) go to slot 0."""
        checked_wait(self.id, timeout)
        if self.is_slider:
            yield from self.move_absolute(0)
        else:
            yield from self._start(self._command("ho", str(direction), reply="PO",
                                                 deferred=True), timeout)
        return (yield from self.wait_until_done(timeout))

    def jog(self, forward: bool = True) -> Plan[None]:
        """One jog step (sliders: next or previous slot); collect it like a move."""
        yield from self._start(self._command("fw" if forward else "bw", reply="PO",
                                             deferred=True))

    def stop(self) -> Plan[None]:
        """End a continuous jog (``st``, ELL14/16/21).

        The manual says bounded moves cannot be aborted (they end within the
        2.5 s drive time-out), so on other models, or with nothing to stop, this
        sends nothing.
        """
        if not self.model.can_stop:
            return
        command = self._command("st")
        line = yield Exchange(Expectation(command), self.options.reply_timeout, urgent=True,
                              drop_stale=self.pending is None)
        if isinstance(line, Frame) and line.status == status.BUSY:
            return  # "GS09 and/or GS00": the jog is ending
        self.check(command, line, self.options.reply_timeout)

    def _start(self, command: Command, timeout: float | None = None) -> Plan[None]:
        limit = self.options.move_timeout if timeout is None else timeout
        yield from self._idle()
        self._not_isolated(command)
        self._take_failure()
        if not (yield from self._caught_up(command, limit)):
            raise self._still_busy(command, limit)
        expect = Expectation(command)
        # A send that fails or is cancelled may have been written: the module may be moving
        # now, so its end is owed (the bus does that) and where it is, unknown until asked.
        last, self.pulses = self.pulses, None
        yield Send(command, reply=expect)
        self.pulses = last  # the last known position, which polls report during the move
        now = time.monotonic()
        self.pending = Pending(expect, now, now + limit)

    def _idle(self) -> Plan[None]:
        """Let a pending move end first (bounded by its own deadline)."""
        while self.pending is not None:
            yield from self._settle(self.pending.deadline - time.monotonic())

    def _caught_up(self, command: Command, limit: float) -> Plan[bool]:
        """Whether ``command`` may be sent: the module has answered all the driver gave up on.

        While the router says the address owes a reply (module doc), ``in`` is asked: its IN
        answers nothing else and the module answers in order, so once IN comes everything it
        owed came before (taken as late) or was lost, and the router ends the debt. ``GS09``
        (busy: an earlier move still running) is asked again until ``limit`` s have passed,
        False then. Silence raises a timeout naming ``command``, which was not sent.
        """
        owed = self.router.owed(self.address)
        deadline = time.monotonic() + limit
        retry = 0
        while owed is not None:
            line = yield Exchange(Expectation(self._command("in", reply="IN")),
                                  self.options.reply_timeout)
            if self.router.owed(self.address) is None:  # IN, or the late reply, came
                return True
            if line is None:
                raise DriverTimeoutError(
                    self.id, command.text,
                    f"no reply from address {self.address} to 'in' within "
                    f"{self.options.reply_timeout:.2f} s (asked first, since its reply to "
                    f"{owed.command.text!r} was given up on and may still come); not sent")
            if time.monotonic() >= deadline:
                return False
            yield Pause(_BUSY_RETRY_S[min(retry, len(_BUSY_RETRY_S) - 1)])
            retry += 1
            owed = self.router.owed(self.address)
        return True

    def _still_busy(self, command: Command, waited: float) -> DriverError:
        """The refusal of a command the module was too busy to take (never sent)."""
        owed = self.router.owed(self.address)
        what = f"still busy (GS09) after {waited:.1f} s of retries"
        if owed is not None and owed.command.deferred:
            what = (f"still running an earlier move ({owed.command.text!r}, given up on) "
                    f"after waiting {waited:.1f} s")
        return DriverError(self.id, command.text,
                           f"module at address {self.address} {what}; {command.text!r} was "
                           f"not sent", status.code_text(status.BUSY))

    def _settle(self, timeout: float) -> Plan[None]:
        """Collect the pending move's end if it arrives within ``timeout``."""
        pending = self.pending
        if pending is None:
            return
        wait = max(0.0, min(timeout, pending.deadline - time.monotonic()))
        try:
            line = yield Collect(pending.expect, wait)
        except DriverDisconnectedError:
            self.pulses = None  # its end may come while the link is down: ask again after
            raise
        if line is None:
            if time.monotonic() < pending.deadline:
                return
            self.pending = None
            self._failed(self._move_timeout(pending))
            self.router.owe(pending.expect, math.inf)  # the module may still be moving
            return
        self.pending = None
        try:
            frame = self.check(pending.command, line, time.monotonic() - pending.started)
        except DriverError as err:
            self._failed(err)
            if err.code is not None:
                yield from self._clear_status()
            return
        # a move ends with PO and where it got to; a frequency search with GS00 (moved, maybe)
        self.pulses = from_hex32(frame.data) if frame.mnemonic == "PO" else None

    def _failed(self, err: DriverError) -> None:
        """A move failed: keep its error for the next motion call; where the module got to
        is unknown, so the next position is asked, not the one from before the move."""
        self.failure = err
        self.pulses = None

    def _move_timeout(self, pending: Pending) -> DriverTimeoutError:
        notes = []
        if pending.expect.seen_busy:
            notes.append("the module answered busy (GS09) and never reported the end")
        if pending.expect.skipped:
            notes.append(f"skipped {', '.join(pending.expect.skipped)}")
        damage = self.router.damage_since(pending.started)
        if damage:
            notes.append(f"damaged lines on the bus meanwhile: {'; '.join(damage)}")
        outages = self.router.outages_since(pending.started)
        if outages:
            notes.append(f"the link to the bus {', then '.join(outages)}: the end may have "
                         f"been sent while it was down")
        extra = f" ({'; '.join(notes)})" if notes else ""
        return DriverTimeoutError(
            self.id, pending.command.text,
            f"move at address {pending.command.address} did not report its end (PO) within "
            f"{pending.deadline - pending.started:.1f} s{extra}")

    def wait_until_done(self, timeout: float = 30.0) -> Plan[float]:
        """Wait for the move in flight to end; raise how it failed; the position."""
        deadline = time.monotonic() + checked_wait(self.id, timeout)
        while self.pending is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DriverTimeoutError(self.id, self.pending.command.text,
                                      f"move at address {self.address} still running after "
                                      f"waiting {timeout:.1f} s")
            yield from self._settle(remaining)
        self._take_failure()
        if self.pulses is None:
            return (yield from self.refresh_position())
        return self.position_units()

    def is_moving(self) -> Plan[bool]:
        """Whether a move is still in flight (raises how a finished one failed); after one
        given up on, whether the module still answers busy."""
        yield from self._settle(0.0)
        if self.pending is not None:
            return True
        self._take_failure()
        return not (yield from self._caught_up(self._command("in", reply="IN"), 0.0))

    def position(self) -> Plan[float]:
        """Current position; during a move, the last known one (the module is not asked)."""
        yield from self._settle(0.0)
        if self.pending is not None:
            return self.position_units()
        return (yield from self.refresh_position())

    def poll(self) -> Plan[tuple[float, bool]]:
        """One sample for the position channel: (position, moving); never raises a move's
        failure (it is kept for the next motion call)."""
        if self.pending is not None:
            yield from self._settle(0.0)
            if self.pending is not None:
                return self.position_units(), True
            if self.failure is None and self.pulses is not None:
                return self.position_units(), False
        if self.isolated_until > time.monotonic():
            return self.position_units(), False
        return (yield from self.refresh_position()), False

