"""Routines: small command sequences a lab file can run without writing Python.

A scan is the commonest thing a lab does while it records, e.g. step a stage
and let the meters poll meanwhile::

    [[routines]]
    instrument = "stage"
    repeat = true
    steps = [["move_absolute", 5.0], ["wait_until_done", 10],
             ["move_absolute", 0.0], ["wait_until_done", 10], ["sleep", 0.5]]

Each step calls a command of the instrument (either flavor) through the
runtime and waits for its result; ``sleep`` pauses the routine. A step that
fails is reported and the routine stops (a scan that lost its stage must not
carry on as if it had moved).

Routines are closed-loop: a ``move_absolute`` or ``move_relative`` step waits
until the move is done before the next step runs, and a ``record`` (or
``measure``) step takes fresh readings of the instruments or channels it names
(``["record", "power", "dmm.voltage"]``) and writes a row to the session's
points table (``routine-<instrument>-<n>``, the same engine and columns as
``Lab.scan``, see :mod:`daqhub.scan`). Mistakes in steps (an unknown command, one
the instrument's type lacks, a wrong number of arguments, a ``timeout`` no wait may
take, ``sleep`` without a duration, a record step naming nothing known) are found by
``daqhub validate`` (:func:`routine_problems`), before anything runs.

A step and a cycle count as done only when they ran to their end: the shutdown's stop
cuts a sleep or a wait short, and that step and its cycle are not counted.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .commands import argument_problem, command_names, command_signature, driver_class
from .instrument import CommandRejected
from .resources.timeouts import MAX_TIMEOUT_S, checked_timeout

if TYPE_CHECKING:
    from .scan import RoutinePoints
    from .specs import InstrumentType

ROUTINE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["instrument", "steps"],
    "properties": {
        "instrument": {"type": "string", "description": "id of the instrument to command"},
        "steps": {"type": "array", "minItems": 1,
                  "items": {"type": "array", "minItems": 1,
                            "prefixItems": [{"type": "string"}]},
                  "description": "[command, arg, ...] lists; 'sleep' pauses for N seconds"},
        "repeat": {"type": "boolean", "default": False},
        "start_delay_s": {"type": "number", "minimum": 0, "maximum": 1e7, "default": 0},
        "step_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S,
                           "default": 60, "description": "seconds each step may take, a "
                           "move step's wait for the move included"},
    },
}

Call = Callable[..., Any]
#: Steps the routine runs itself, not commands of the instrument.
RECORD_STEPS = ("record", "measure")
#: Commands after which a closed-loop routine waits until the move is done.
MOVE_COMMANDS = ("move_absolute", "move_relative")
#: seconds between is_moving() checks while a routine waits for a move
MOTION_CHECK_S = 0.05


@dataclass
class RoutineState:
    instrument: str
    steps_done: int = 0
    cycles: int = 0
    state: str = "waiting"
    error: str = ""
    log: list[str] = field(default_factory=list)
    #: progress: the step running now (1-based; 0 before the first), of how many, its name
    step: int = 0
    steps_total: int = 0
    step_name: str = ""
    #: monotonic start of the running cycle, and how long the last whole cycle took
    cycle_started: float = 0.0
    last_cycle_s: float = 0.0
    #: seconds of 'sleep' steps from the running step to the end of the cycle
    sleep_left_s: float = 0.0

    def progress(self) -> str:
        """``step 2 of 6 (wait_until_done), cycle 3, ~1.2 s left``: what a long scan is at.

        Time left comes from the previous cycle's duration; before a cycle has ended it
        is the sleeps still ahead (a lower bound: moves take time too).
        """
        if not self.step or self.state != "running":
            return f"{self.state} ({self.cycles} cycle{'s' if self.cycles != 1 else ''})"
        text = f"step {self.step} of {self.steps_total} ({self.step_name}), cycle {self.cycles + 1}"
        if self.last_cycle_s:
            left = self.last_cycle_s - (time.monotonic() - self.cycle_started)
            text += f", ~{max(0.0, left):.1f} s left in this cycle"
        elif self.sleep_left_s:
            text += f", at least {self.sleep_left_s:.1f} s left"
        return text


class RoutineRunner:
    """Runs one routine in its own thread until it ends, fails or is stopped."""

    def __init__(self, spec: Mapping[str, Any], call: Call, stop: threading.Event) -> None:
        self.spec = spec
        self.call = call
        self.stop = stop
        self.state = RoutineState(str(spec["instrument"]))
        self.thread = threading.Thread(target=self._main, name=f"daqhub-routine:"
                                       f"{spec['instrument']}", daemon=True)
        #: where record steps write (set by the session's records; None: record steps fail)
        self.points: RoutinePoints | None = None
        #: last move target and where the last wait said the axis ended, for points rows
        self.setpoint: float | None = None
        self.readback: float | None = None

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        try:
            self._run()
        finally:
            if self.points is not None:
                self.points.end(self.state.state, self.state.error)

    def _step(self, name: str, args: Sequence[Any], timeout: float, sleep: float) -> bool:
        """Run one step (``sleep``: its seconds, for a sleep step); False when the stop cut
        it short (a sleep or a wait it ended early, a move it left unwaited for): such a
        step is not done, nor is its cycle."""
        if name == "sleep":
            return not self.stop.wait(sleep)
        if name in RECORD_STEPS:
            if self.points is None:
                raise RuntimeError("record steps need the session's records (daqhub run or "
                                   "daqhub.open_lab start them)")
            self.points.row([str(a) for a in args])
            return True
        if name == "wait_until_done":
            return self._wait_until_done(args, timeout)
        self.call(self.state.instrument, name, *args, timeout=timeout)
        if name == "move_absolute":
            self.setpoint = float(args[0])
        elif name == "move_relative" and self.setpoint is not None:
            self.setpoint += float(args[0])
        if name in MOVE_COMMANDS:
            return not self.stop.is_set() and self._wait_until_done([timeout], timeout)
        return True

    def _run(self) -> None:
        st = self.state
        if self.stop.wait(float(self.spec.get("start_delay_s", 0))):
            st.state = "stopped"
            return
        steps: Sequence[Sequence[Any]] = self.spec["steps"]
        timeout = float(self.spec.get("step_timeout_s", 60))
        st.state = "running"
        st.steps_total = len(steps)
        sleeps = [sleep_s(s) for s in steps]
        while True:
            st.cycle_started = time.monotonic()
            for i, step in enumerate(steps, start=1):
                name, *args = step
                st.step, st.step_name, st.sleep_left_s = i, str(name), sum(sleeps[i - 1:])
                try:
                    done = not self.stop.is_set() and self._step(name, args, timeout, sleeps[i - 1])
                except Exception as exc:
                    if not self.stop.is_set():
                        st.state = "failed"
                        st.error = f"step {name}{tuple(args)!r} failed: {exc}"
                        return
                    done = False  # a step cut short by the shutdown did not fail
                if not done:
                    st.state = "stopped"
                    return
                st.steps_done += 1
            st.cycles += 1
            st.last_cycle_s = time.monotonic() - st.cycle_started
            if not self.spec.get("repeat", False):
                st.state = "done" if not self.stop.is_set() else "stopped"
                return

    def _wait_until_done(self, args: Sequence[Any], timeout: float) -> bool:
        """Wait for a move in short ``is_moving()`` calls, then ``wait_until_done``, whose
        result is the readback; False when the stop ended the wait first.

        One ``wait_until_done`` call holds a v2 instrument's thread for the whole move,
        and its polls (the position during the move, at the configured rate) stop
        meanwhile. The final call still raises what went wrong during the motion. An
        instrument without ``is_moving`` gets the plain call.
        """
        iid = self.state.instrument
        deadline = time.monotonic() + (float(args[0]) if args else 30.0)
        try:
            while self.call(iid, "is_moving", timeout=timeout):
                if time.monotonic() > deadline or self.stop.wait(MOTION_CHECK_S):
                    break  # past its timeout the call below raises the driver's own error
        except (LookupError, CommandRejected) as exc:
            if "has no command" not in str(exc):
                raise
        if self.stop.is_set():
            return False
        # the driver's own wait gives up first and says why; the call's timeout is the backstop
        result = self.call(iid, "wait_until_done", *args, timeout=timeout + 10)
        if isinstance(result, int | float):
            self.readback = float(result)
        return True

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def sleep_s(step: Sequence[Any]) -> float:
    """How long a step pauses the routine: a 'sleep' its argument (default 1 s), others 0."""
    if step[0] != "sleep":
        return 0.0
    return float(step[1]) if len(step) > 1 else 1.0


def wait_all(runners: Sequence[RoutineRunner], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for r in runners:
        r.join(max(0.0, deadline - time.monotonic()))


# --- validation (daqhub validate) ------------------------------------------------------


def step_lines(text: str, steps_line: int, count: int) -> list[int]:
    """The line of each step of a ``steps = [[...], ...]`` array starting at ``steps_line``.

    tomllib gives no positions; this follows brackets (outside strings and
    comments) from the ``steps`` key, so a mistake is reported on its own line.
    Steps it cannot place get the ``steps`` line.
    """
    lines = text.splitlines()
    out: list[int] = []
    depth = 0
    started = False
    for n in range(max(steps_line, 1), len(lines) + 1):
        line = lines[n - 1]
        if not started:
            line = line.partition("=")[2]
        quote = ""
        for ch in line:
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                break
            elif ch == "[":
                depth += 1
                started = True
                if depth == 2:
                    out.append(n)
            elif ch == "]":
                depth -= 1
                if started and depth == 0:
                    return (out + [steps_line] * count)[:count]
    return (out + [steps_line] * count)[:count]


def routine_problems(routine: Mapping[str, Any],
                     instruments: Mapping[str, tuple[InstrumentType, Sequence[str]]],
                     all_commands: Sequence[str], lines: Sequence[int],
                     idle: Mapping[str, str] | None = None
                     ) -> list[tuple[int, str, str]]:
    """Mistakes in a routine's steps as ``(line, message, suggestion)``.

    ``instruments`` maps each valid instrument id to its type and channel names;
    ``all_commands`` is every command of every installed type (to tell a typo
    from a command of another kind of instrument); ``lines`` is each step's line;
    ``idle`` names the instruments that will not run, and why (a record step cannot read
    them).
    """
    iid = str(routine["instrument"])
    if iid not in instruments:
        return []
    itype, _ = instruments[iid]
    commands = command_names(itype)
    out: list[tuple[int, str, str]] = []
    for k, step in enumerate(routine["steps"]):
        line = lines[k] if k < len(lines) else lines[-1] if lines else 1
        name, *args = step
        where = f"routine of {iid}, step {k + 1} {list(step)!r}"
        if name == "sleep":
            if len(args) != 1 or not isinstance(args[0], int | float) or isinstance(args[0], bool):
                out.append((line, f"{where}: sleep needs one duration in seconds",
                            'write ["sleep", 0.5]'))
        elif name in RECORD_STEPS:
            out += [(line, f"{where}: {why}", hint) for why, hint in
                    _record_problems(args, instruments, idle or {})]
        elif commands is not None and name not in commands:
            near = difflib.get_close_matches(name, commands, n=2, cutoff=0.6)
            if name in all_commands:
                out.append((line, f"{where}: {itype.name} has no command {name!r} (other "
                            "instrument types do)",
                            f"did you mean {' or '.join(map(repr, near))}?" if near else
                            f"{iid} has: {', '.join(commands)}"))
            else:
                out.append((line, f"{where}: unknown command {name!r}",
                            f"did you mean {' or '.join(map(repr, near))}?" if near else
                            f"{iid} has: {', '.join(commands)}"))
        else:
            problem = argument_problem(itype, name, tuple(args)) or \
                _timeout_problem(itype, name, args)
            if problem:
                out.append((line, f"{where}: {problem[0]}", problem[1]))
    return out


def _timeout_problem(itype: InstrumentType, command: str, args: Sequence[Any]
                     ) -> tuple[str, str] | None:
    """A ``timeout`` argument outside the core's bound on every wait (``checked_timeout``,
    which drivers apply): refused only when the step runs, after the steps before it ran."""
    sig = command_signature(driver_class(itype), command)
    try:
        timeout = sig.bind(None, *args).arguments.get("timeout", 0.0) if sig else 0.0
    except TypeError:
        return None  # the number of arguments is argument_problem's to report
    try:
        checked_timeout(timeout)
    except (TypeError, ValueError):
        return (f"{command}'s timeout must be a number of seconds from 0 to "
                f"{MAX_TIMEOUT_S:g}, got {timeout!r}",
                "every wait is bounded; for a longer one, repeat the step")
    return None


def _record_problems(args: Sequence[Any],
                     instruments: Mapping[str, tuple[InstrumentType, Sequence[str]]],
                     idle: Mapping[str, str]) -> list[tuple[str, str]]:
    if not args:
        return [("record needs the instruments or channels to read",
                 'write ["record", "power"] or ["record", "power.power"]')]
    out: list[tuple[str, str]] = []
    for a in args:
        iid, _, chan = str(a).partition(".")
        if iid not in instruments:
            near = difflib.get_close_matches(iid, list(instruments), n=2)
            out.append((f"record names unknown instrument {iid!r}",
                        f"did you mean {' or '.join(map(repr, near))}?" if near
                        else f"instruments: {', '.join(instruments)}"))
        elif chan and chan not in instruments[iid][1]:
            out.append((f"{iid} has no channel {chan!r}",
                        f"its channels: {', '.join(instruments[iid][1])}"))
        elif iid in idle:
            out.append((f"record reads {iid!r}, which will not run: {idle[iid]}",
                        "enable it, or read another instrument"))
    return out
