"""Resource budget: what each subsystem costs, sampled while a run goes on.

A lab running for days needs to see a leak or a saturating core before it
loses data, so a sampler thread records, per subsystem (V2 threads, the V4
loop, the bridge, storage, shared-resource workers), CPU share, plus process
memory, queue depths, rates, drops, restarts and reconnects. A configured
budget turns an excess into an alarm. The history is saved with the session.

The history stays bounded however long the run: the newest ``recent`` samples
(a minute) are kept whole, with the per-resource detail; of the older ones one
in ``first_stride`` is kept, cut to its key figures (CPU, memory, queue depths,
restarts, reconnects), and whenever ``older`` of those fill up every other one is
dropped and the stride doubles, so a day-long run keeps an evenly spaced sketch
of itself in constant memory. (Keeping 3,600 whole samples grew RSS by 0.4 MB a
minute for the first hour.)
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

#: the budget history a run leaves in each session directory at shutdown
HISTORY_FILE = "budget.json"


@dataclass(frozen=True)
class Budget:
    max_cpu_percent: float | None = None       # per subsystem, of one core
    max_rss_mb: float | None = None
    max_queue_depth: int | None = None         # any subscriber queue
    max_mailbox_depth: int | None = None       # any v4 mailbox
    interval_s: float = 1.0

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> Budget:
        return cls(**{k: d[k] for k in ("max_cpu_percent", "max_rss_mb", "max_queue_depth",
                                         "max_mailbox_depth", "interval_s") if k in d})


def subsystem_of(thread_name: str) -> str:
    for prefix, name in (("daqhub-v2", "v2"), ("daqhub-v4", "v4"), ("daqhub-bridge", "bridge"),
                         ("daqhub-storage", "storage"), ("daqhub-gate", "resources"),
                         ("daqhub-serial", "resources"), ("daqhub-visa", "resources")):
        if thread_name.startswith(prefix):
            return name
    return "other"


#: the low bits of a thread's CPU clock id on Linux: per-thread (4) | scheduler time (2)
_THREAD_SCHED_CLOCK = 6


def thread_cpu_seconds(threads: Iterable[threading.Thread] | None = None
                       ) -> tuple[float, dict[Any, tuple[str, float]]]:
    """The process's CPU seconds so far, and each thread's with its name (of ``threads``:
    by default every thread Python knows).

    On Linux, read through each thread's CPU clock, which keeps the GIL: reading ``/proc``
    for every thread each second (psutil) let go of it at each open and read, and in a
    process whose threads compute every release is a hand-over to a busy thread and a
    switch interval's wait to get it back. The clock is named by the thread's kernel id
    (the kernel's encoding, as glibc's ``pthread_getcpuclockid`` makes it) and not through
    ``time.pthread_getcpuclockid``: that reads the thread's pthread structure, freed when a
    thread ends, and a thread ending between ``threading.enumerate()`` and the call crashed
    the process. For a thread that has ended the kernel refuses the id (EINVAL), and it
    never lets another process's thread be read. Elsewhere, psutil. Threads Python did not
    start (a library's pool) are in the process's time only.
    """
    threads = threading.enumerate() if threads is None else threads
    if not sys.platform.startswith("linux"):
        names = {t.native_id: t.name for t in threads if t.native_id}
        try:
            found = {th.id: (names.get(th.id, "other"), th.user_time + th.system_time)
                     for th in psutil.Process().threads()}
        except psutil.Error:
            found = {}
        return sum(total for _, total in found.values()), found
    out: dict[Any, tuple[str, float]] = {}
    for t in threads:
        tid = t.native_id
        if tid is None:
            continue
        try:
            out[tid] = (t.name, time.clock_gettime((~tid << 3) | _THREAD_SCHED_CLOCK))
        except OSError:  # ended meanwhile
            continue
    return time.process_time(), out


def summary(s: dict[str, Any]) -> dict[str, Any]:
    """The key figures of a sample, for the thinned part of the history."""
    return {"time": s["time"], "cpu_percent": s["cpu_percent"], "rss_mb": s["rss_mb"],
            "queues": {k: q.get("depth", 0) for k, q in s.get("queues", {}).items()},
            "restarts": s.get("restarts", 0), "reconnects": s.get("reconnects", 0)}


class BudgetMonitor:
    """Samples every ``budget.interval_s``; ``probe()`` supplies queue/instrument figures."""

    def __init__(self, probe: Callable[[], dict[str, Any]], budget: Budget | None = None,
                 on_alarm: Callable[[str, str], None] | None = None,
                 recent: int = 60, older: int = 600, first_stride: int = 10) -> None:
        self.probe = probe
        self.budget = budget or Budget()
        self.on_alarm = on_alarm or (lambda what, msg: None)
        self.samples: deque[dict[str, Any]] = deque(maxlen=recent)
        self.older: list[dict[str, Any]] = []
        self.older_capacity = older
        self._stride = first_stride  # keep one in this many of the samples leaving ``samples``
        self._leaving = 0
        self.alarms: list[dict[str, Any]] = []
        self._proc = psutil.Process()
        self._last_cpu: dict[Any, tuple[str, float]] = {}
        self._last_process = 0.0
        self._last_t = time.monotonic()
        self._stop = threading.Event()
        self._active: set[str] = set()
        self.thread = threading.Thread(target=self._main, name="daqhub-budget", daemon=True)

    def start(self) -> None:
        self.sample()
        self.thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def _main(self) -> None:
        while not self._stop.wait(self.budget.interval_s):
            self.sample()

    def latest(self) -> dict[str, Any]:
        return self.samples[-1] if self.samples else {}

    def sample(self) -> dict[str, Any]:
        now = time.monotonic()
        dt = max(now - self._last_t, 1e-6)
        first = not self._last_cpu
        self._last_t = now
        try:
            rss = self._proc.memory_info().rss / 2**20
        except psutil.Error:
            rss = 0.0
        process, seen = thread_cpu_seconds()
        cpu: dict[str, float] = {}
        if not first:
            named = 0.0  # what the threads seen used; the rest of the process's is "other"
            for key, (name, total) in seen.items():
                delta = max(total - self._last_cpu.get(key, (name, 0.0))[1], 0.0)
                named += delta
                sub = subsystem_of(name)
                cpu[sub] = cpu.get(sub, 0.0) + delta / dt * 100
            rest = max(process - self._last_process - named, 0.0) / dt * 100
            cpu["other"] = cpu.get("other", 0.0) + rest
        self._last_cpu, self._last_process = seen, process
        s = {"time": time.time(), "cpu_percent": {k: round(v, 1) for k, v in cpu.items()},
             "rss_mb": round(rss, 1), **self.probe()}
        if len(self.samples) == self.samples.maxlen:
            self._retire(self.samples[0])
        self.samples.append(s)
        self._check(s)
        return s

    def _retire(self, s: dict[str, Any]) -> None:
        self._leaving += 1
        if self._leaving % self._stride:
            return
        self.older.append(summary(s))
        if len(self.older) >= self.older_capacity:
            self.older = self.older[::2]
            self._stride *= 2

    def history(self) -> list[dict[str, Any]]:
        """Every kept sample, oldest first (older ones as summaries)."""
        return [*self.older, *self.samples]

    def _check(self, s: dict[str, Any]) -> None:
        b = self.budget
        found: dict[str, str] = {}
        if b.max_cpu_percent is not None:
            for sub, pct in s["cpu_percent"].items():
                if sub != "other" and pct > b.max_cpu_percent:
                    found[f"cpu:{sub}"] = (f"subsystem {sub} uses {pct:.0f}% CPU "
                                           f"(budget {b.max_cpu_percent:g}%)")
        if b.max_rss_mb is not None and s["rss_mb"] > b.max_rss_mb:
            found["rss"] = f"memory {s['rss_mb']:.0f} MB (budget {b.max_rss_mb:g} MB)"
        if b.max_queue_depth is not None:
            for name, q in s.get("queues", {}).items():
                if q.get("depth", 0) > b.max_queue_depth:
                    found[f"queue:{name}"] = (f"queue {name} holds {q['depth']} items "
                                              f"(budget {b.max_queue_depth})")
        if b.max_mailbox_depth is not None:
            for iid, depth in s.get("mailboxes", {}).items():
                if depth > b.max_mailbox_depth:
                    found[f"mailbox:{iid}"] = (f"mailbox of {iid} holds {depth} messages "
                                               f"(budget {b.max_mailbox_depth})")
        for key, msg in found.items():
            if key not in self._active:  # raise once per excess, not once per sample
                self.alarms.append({"time": s["time"], "what": key, "message": msg})
                self.on_alarm(key, msg)
        self._active = set(found)
