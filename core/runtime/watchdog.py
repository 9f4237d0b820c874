"""The watchdog: notices what would otherwise freeze a run silently.

Every v4 actor shares one event loop, so one blocking call in one actor (a
``time.sleep`` in ``read()``, a synchronous driver call) stops them all. The
watchdog thread posts a heartbeat to the loop every ``tick_s``; when one has
not run within ``bound_s`` the loop is blocked, and the alarm names the actor
whose task is running (or, for a plain callback, says so) with the loop
thread's stack. The actor's poll is then counted as an error when it returns.

A loop that keeps making passes (its selector counts them, :class:`~.loopselect.LoopPasses`)
is not blocked, so it is sent no heartbeat: each one is a write to the loop's wake-up pipe,
and the loop's read of it lets go of the GIL, which a v2 thread polling flat out then keeps
for a switch interval (5 ms, 20 times a second, 10 % of the loop's time). A heartbeat goes
out only once a tick passed without a pass: the loop is idle in its wait, or blocked.

A loop whose thread ended while the watchdog runs (a ``SystemExit`` in a callback, which
asyncio lets through) raises an alarm too, once: before, it went unnoticed for the rest of
the run (the V4 runtime marks the actors it stopped failed, with the cause).

A v2 driver's ``connect()`` that does not return cannot be interrupted (it runs on the
instrument's own thread) and left the instrument ``starting`` in silence until the shutdown
forced it: one past the restart policy's ``start_timeout_s`` (the limit at which a v4
``start()`` fails) is named once per attempt, with where it is (:func:`check_v2_connects`).

The same thread runs the other periodic checks of a run (slow plugin hooks,
instruments below their requested rate, those connects), so none of them needs its own
thread.
"""

from __future__ import annotations

import asyncio
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .loopselect import LoopPasses
from .v2 import V2Worker
from .v4 import ActorRunner

Alarm = Callable[[str, str, dict[str, Any]], None]
DEFAULT_BOUND_S = 0.3


class LoopWatchdog:
    def __init__(self, loop: asyncio.AbstractEventLoop, loop_thread: threading.Thread,
                 runners: Mapping[str, ActorRunner], on_alarm: Alarm, *,
                 bound_s: float = DEFAULT_BOUND_S, tick_s: float = 0.05,
                 checks: list[Callable[[], None]] | None = None,
                 passes: LoopPasses | None = None) -> None:
        self.loop = loop
        self.passes = passes  # the loop's selector, when it counts the loop's passes
        self._passes_seen = -1
        self.loop_thread = loop_thread
        self.runners = runners
        self.on_alarm = on_alarm
        self.bound_s = bound_s
        self.tick_s = min(tick_s, bound_s / 3)
        self.checks = list(checks or [])
        self.blocked = 0          # episodes seen
        self._sent = 0.0          # when the pending heartbeat was posted (0: none pending)
        self._episode = False
        self._culprit: ActorRunner | None = None
        self.loop_ended = False  # the loop's thread ended during the run (said once)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._main, name="daqhub-watchdog", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        self._stop.set()
        if self.thread.ident is not None:
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def _beat(self) -> None:
        self._sent = 0.0

    def _main(self) -> None:
        while not self._stop.wait(self.tick_s):
            self._watch_loop()
            for check in self.checks:
                check()

    def _watch_loop(self) -> None:
        if not self.loop.is_running():
            if self.loop_thread.ident is not None and not self.loop_thread.is_alive():
                self._loop_ended()
            return
        now = time.monotonic()
        if not self._sent:
            self._episode, self._culprit = False, None
            if self.passes is not None and self.passes.passes != self._passes_seen:
                self._passes_seen = self.passes.passes  # busy, not blocked: no heartbeat
                return
            self._sent = now
            try:
                self.loop.call_soon_threadsafe(self._beat)
            except RuntimeError:  # the loop closed meanwhile
                self._sent = 0.0
            return
        stalled = now - self._sent
        if stalled < self.bound_s:
            return
        if not self._episode:  # once per episode, so a read that returned is not blamed twice
            self._episode = True
            self.blocked += 1
            self._culprit = self._running_actor()
            if self._culprit is not None:
                self._culprit.blocked_since = self._sent
            self._alarm(stalled)

    def _loop_ended(self) -> None:
        """The loop's thread ended while the watchdog runs (it is stopped before the
        runtime closes the loop): every v4 instrument stopped with it. Said once; it
        returned here in silence, and the live view said ``running`` for the rest of the run."""
        if self.loop_ended:
            return
        self.loop_ended = True
        self.on_alarm("loop", "the v4 event loop thread ended during the run: every v4 "
                      "instrument still up stopped with it, failed (their errors say why)", {})

    def _running_actor(self) -> ActorRunner | None:
        task = asyncio.current_task(self.loop)  # only reads the loop's current-task entry
        name = task.get_name() if task is not None else ""
        return next((r for r in self.runners.values() if r.task is task and task), None) \
            if name.startswith("daqhub-v4:") else None

    def _alarm(self, stalled: float) -> None:
        at, stack = where_is(self.loop_thread)
        r = self._culprit
        if r is not None:
            what, who = f"loop:{r.id}", f"v4 actor {r.id} (in {r.busy_in or 'its poll loop'})"
        else:
            what, who = "loop", "a callback outside any actor"
        self.on_alarm(what, f"event loop blocked for over {stalled:.2f} s by {who}{at}; every "
                      "v4 instrument waits meanwhile", {"stack": stack})


#: where the standard library lives: a position in it (``threading.py in wait``) says
#: less than the line of the plugin that called it; outside a venv the installed packages
#: (plugins among them) live inside it, and are not it
_PATHS = sysconfig.get_paths()


def in_stdlib(filename: str, paths: Mapping[str, str] = _PATHS) -> bool:
    """Whether ``filename`` is the standard library's (not an installed package's), by the
    interpreter's ``paths`` (``sysconfig.get_paths()``)."""
    return filename.startswith(paths["stdlib"]) and not filename.startswith(
        (paths["purelib"], paths["platlib"]))


def where_is(thread: threading.Thread) -> tuple[str, str]:
    """Where ``thread`` is now: ``" at FILE:LINE in FUNCTION"`` of its innermost frame
    outside the standard library (a plugin's line, not ``threading.py in wait``), and its
    whole stack (both "" when it is not running)."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return "", ""
    stack = traceback.extract_stack(frame)
    where = next((f for f in reversed(stack) if not in_stdlib(f.filename)), stack[-1])
    return (f" at {where.filename}:{where.lineno} in {where.name}",
            "".join(traceback.format_list(stack)))


def check_v2_connects(workers: Iterable[V2Worker], on_alarm: Alarm) -> None:
    """Name each v2 driver whose ``connect()`` has run past its ``start_timeout_s``: an
    alarm with where its thread is, and a ``slow`` event (as a rate alarm); once per
    attempt. The instrument goes on waiting for it: a thread cannot be interrupted, and a
    connect that returns late is a connect."""
    now = time.monotonic()
    for w in workers:
        since = w.connect_since
        limit = w.restarts.policy.start_timeout_s
        if not since or w.connect_named == since or now - since < limit:
            continue
        w.connect_named = since
        at, stack = where_is(w.thread)
        message = (f"{w.id}: its v2 driver's connect() has not returned after "
                   f"{now - since:.1f} s (start_timeout_s = {limit:g} s){at}; a thread cannot "
                   "be interrupted: the instrument waits for it")
        w.health.event("slow", message)
        on_alarm(f"connect:{w.id}", message, {"stack": stack})
