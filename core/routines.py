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
        "step_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e7,
                           "default": 60},
    },
}

Call = Callable[..., Any]


@dataclass
class RoutineState:
    instrument: str
    steps_done: int = 0
    cycles: int = 0
    state: str = "waiting"
    error: str = ""
    log: list[str] = field(default_factory=list)


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
        while not self.stop.is_set():
            for step in steps:
                if self.stop.is_set():
                    break
                name, *args = step
                try:
                    if name == "sleep":
                        self.stop.wait(float(args[0]) if args else 1.0)
                    else:
                        self.call(st.instrument, name, *args, timeout=timeout)
                    st.steps_done += 1
                except Exception as exc:
                    if self.stop.is_set():  # a step cut short by the shutdown did not fail
                        st.state = "stopped"
                        return
                    st.state = "failed"
                    st.error = f"step {name}{tuple(args)!r} failed: {exc}"
                    return
            st.cycles += 1
            if not self.spec.get("repeat", False):
                break
        st.state = "done" if not self.stop.is_set() else "stopped"

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def wait_all(runners: Sequence[RoutineRunner], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for r in runners:
        r.join(max(0.0, deadline - time.monotonic()))
