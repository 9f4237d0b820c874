"""Plugin notifications, delivered off the instrument threads and the event loop.

An alerting plugin may block (a mail server that does not answer), and a hook
called where the event happens would stall that instrument's thread or, for a
v4 actor, every actor on the event loop. So each listening plugin gets its own
queue and delivery thread: a slow hook delays only its own notifications, in
order, and an alarm names it. A queue that fills up drops that plugin's oldest
pending notifications (counted in an alarm) rather than ever blocking a caller.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from ..host import PluginHost

Alarm = Callable[[str, str], None]


class _Lane:
    """One plugin's queue and delivery thread."""

    def __init__(self, host: PluginHost, plugin: str, capacity: int) -> None:
        self.host = host
        self.plugin = plugin
        self.pending: collections.deque[tuple[str, dict[str, Any]] | None] = \
            collections.deque(maxlen=capacity)
        self.dropped = 0
        self.busy_in = ""
        self.busy_since = 0.0
        self.alarmed = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._main, name=f"daqhub-notify:{plugin}",
                                       daemon=True)

    def put(self, item: tuple[str, dict[str, Any]] | None) -> None:
        with self.cond:
            if self.pending.maxlen is not None and len(self.pending) == self.pending.maxlen:
                self.dropped += 1
            self.pending.append(item)
            self.cond.notify()

    def _main(self) -> None:
        while True:
            with self.cond:
                while not self.pending:
                    self.cond.wait()
                item = self.pending.popleft()
            if item is None:
                return
            hook, kwargs = item
            self.busy_in, self.busy_since = hook, time.monotonic()
            try:
                self.host.notify(hook, plugin=self.plugin, **kwargs)
            finally:
                self.busy_in, self.busy_since = "", 0.0


class Notifier:
    """Fans notifications out to one :class:`_Lane` per plugin that listens to any."""

    def __init__(self, host: PluginHost, on_alarm: Alarm, *, slow_s: float = 1.0,
                 capacity: int = 10_000) -> None:
        self.host = host
        self.on_alarm = on_alarm
        self.slow_s = slow_s
        self.lanes = [_Lane(host, p, capacity) for p in host.notification_plugins()]
        self._closed = False

    def start(self) -> None:
        for lane in self.lanes:
            lane.thread.start()

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Queue ``hook(**kwargs)`` for every listening plugin; never blocks."""
        if self._closed:
            return
        for lane in self.lanes:
            lane.put((hook, kwargs))

    def check(self) -> None:
        """Alarm once per episode for a plugin stuck in a hook (called by the watchdog)."""
        now = time.monotonic()
        for lane in self.lanes:
            since, hook = lane.busy_since, lane.busy_in
            if since and now - since > self.slow_s:
                if not lane.alarmed:
                    lane.alarmed = True
                    self.on_alarm(f"plugin:{lane.plugin}",
                                  f"plugin {lane.plugin} has been in hook {hook} for "
                                  f"{now - since:.1f} s; its own notifications wait "
                                  f"({len(lane.pending)} queued), nothing else does")
            elif not since:
                lane.alarmed = False
            if lane.dropped:
                n, lane.dropped = lane.dropped, 0
                self.on_alarm(f"plugin:{lane.plugin}",
                              f"plugin {lane.plugin} is behind: {n} notification(s) dropped")

    def close(self, timeout: float) -> list[str]:
        """Deliver what is queued within ``timeout``; the plugins still busy after it.

        Their delivery threads are daemons left to finish their hook; what they had not
        been given yet is dropped.
        """
        self._closed = True
        deadline = time.monotonic() + timeout
        for lane in self.lanes:
            if lane.thread.ident is not None:
                lane.put(None)
        stuck = []
        for lane in self.lanes:
            if lane.thread.ident is None:
                continue
            lane.thread.join(max(0.0, deadline - time.monotonic()))
            if lane.thread.is_alive():
                stuck.append(f"{lane.plugin} (in {lane.busy_in or 'a hook'}, "
                             f"{len(lane.pending)} notification(s) not delivered)")
                with lane.cond:
                    lane.pending.clear()
                    lane.pending.append(None)
        return stuck
