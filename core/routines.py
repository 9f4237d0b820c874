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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .runtime.v2 import CommandRejected

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
        "start_delay_s": {"type": "number", "minimum": 0, "default": 0},
        "step_timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 60},
    },
}

Call = Callable[..., Any]
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

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        st = self.state
        if self.stop.wait(float(self.spec.get("start_delay_s", 0))):
            st.state = "stopped"
            return
        steps: Sequence[Sequence[Any]] = self.spec["steps"]
        timeout = float(self.spec.get("step_timeout_s", 60))
        st.state = "running"
        st.steps_total = len(steps)
        sleeps = [sleep_s(s) for s in steps]
        while not self.stop.is_set():
            st.cycle_started = time.monotonic()
            for i, step in enumerate(steps, start=1):
                if self.stop.is_set():
                    break
                name, *args = step
                st.step, st.step_name, st.sleep_left_s = i, str(name), sum(sleeps[i - 1:])
                try:
                    if name == "sleep":
                        self.stop.wait(sleep_s(step))
                    elif name == "wait_until_done":
                        self._wait_until_done(args, timeout)
                    else:
                        self.call(st.instrument, name, *args, timeout=timeout)
                    st.steps_done += 1
                except Exception as exc:
                    st.state = "failed"
                    st.error = f"step {name}{tuple(args)!r} failed: {exc}"
                    return
            st.cycles += 1
            st.last_cycle_s = time.monotonic() - st.cycle_started
            if not self.spec.get("repeat", False):
                break
        st.state = "done" if not self.stop.is_set() else "stopped"

    def _wait_until_done(self, args: Sequence[Any], timeout: float) -> None:
        """Wait for a move in short ``is_moving()`` calls, then ``wait_until_done``.

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
        if not self.stop.is_set():
            self.call(iid, "wait_until_done", *args, timeout=timeout)

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
