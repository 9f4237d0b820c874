"""Per-instrument health, shared by both runtimes and shown by the live view."""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..instrument import DriverError
from ..measurement import DataError, RefusedValues
from ..resources import ResourceError

#: (instrument_id, event, detail) -> None; events: disconnected, reconnected, restarted, failed
EventSink = Callable[[str, str, str], None]
#: (health, old state, new state, reason) -> None, called on every change of state
StateListener = Callable[["InstrumentHealth", str, str, str], None]

T = TypeVar("T")

#: failures of the device or its link (bad or missing replies, a lost port): never a crash.
#: A ``DataError`` from a read is not one of them: the device answered, and its values were
#: refused (:meth:`InstrumentHealth.read_refused`); in ``connect()`` or a command it is.
DEVICE_ERRORS: tuple[type[BaseException], ...] = (DriverError, DataError, ResourceError,
                                                  TimeoutError, OSError)


def refused_text(n: int | None, channel: str | None, why: str) -> str:
    """How a refusal of ``n`` samples of ``channel`` reads in its instrument's health and the
    report, whoever refused them (the bridge, the v4 runner, a read that refused its own
    values): one wording, so the same bad value reads the same in both flavors. ``channel``
    None: the samples name none (a batch without daqhub metadata, a read that refused its
    values whole); ``n`` None: a whole read's, not counted by the read that refused them."""
    what = "a read's samples" if n is None else f"{n} sample(s)"
    of = "" if channel is None else f" of channel {channel!r}"
    return f"rejected {what}{of}: {why}"


def failure_text(exc: BaseException, *, command: bool = False) -> str:
    """How a health line names what a driver raised (``command``: in a user's command).

    A device error (:data:`DEVICE_ERRORS`) says it all itself: the instrument, the command,
    the port; so does a command's ValueError or TypeError, the driver refusing the values
    it was given before sending anything (``move_absolute(1e9)``; the caller gets the
    exception itself). Anything else is a bug in the driver, and its message alone does not
    say so (``'gain'`` for a KeyError, ``division by zero``): it gets its type and the line
    that raised it, which is what its author needs.
    """
    if isinstance(exc, DEVICE_ERRORS) or (command and isinstance(exc, ValueError | TypeError)):
        return str(exc) or type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    where = (f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in "
             f"{frames[-1].name})" if frames else "")
    return f"{type(exc).__name__}: {exc}{where}"


class PluginExit(RuntimeError):
    """What a caller gets in place of a ``SystemExit``, ``KeyboardInterrupt`` or
    ``GeneratorExit`` that plugin code raised on one of daqhub's threads (a driver's command,
    a sink's close), which the runtime handles as any other error of that code.

    Handed on as it is, it passed every ``except Exception`` of the caller and ended the
    caller's thread too (``sys.exit()`` in a v2 driver's command ended a lab script with 0).
    """


def as_error(exc: BaseException) -> Exception:
    """``exc`` as an error its caller can handle: itself when it is an ``Exception``, else a
    :class:`PluginExit` naming it with the plugin's line (:func:`failure_text`)."""
    if isinstance(exc, Exception):
        return exc
    error = PluginExit(failure_text(exc))
    error.__cause__ = exc
    return error

#: states in which the instrument is cut off from its hardware (counted as time disconnected)
DISCONNECTED_STATES = frozenset({"reconnecting", "restarting"})
#: states in which the instrument's driver is connected (reads may be failing, in "error")
CONNECTED_STATES = frozenset({"running", "error"})
EVENT_HISTORY = 200  # the newest events kept per instrument (the total is counted)
#: consecutive failed reads that make a runner close its instrument and reopen it
READS_BEFORE_RECONNECT = 3


def reconnect_reason(exc: BaseException, failed_reads: int) -> str:
    """Why a read that raised the device error ``exc``, the ``failed_reads``-th in a row,
    makes its instrument close and reopen now ("": poll on), the one rule of both flavors.

    A lost link (a ``ConnectionError``: the port or session is gone) at once, so the time
    disconnected counts from that first error; any other device error (a reply timeout, a
    garbled reply) after :data:`READS_BEFORE_RECONNECT` in a row. Until 2026-12-08 a v2
    worker waited for three reads of a port that was gone, in state ``error``: a 0.3 s
    outage was "0.0 s disconnected" there and 0.4 s for the v4 modules on the same bus.
    """
    if isinstance(exc, ConnectionError):
        return f"read failed: {failure_text(exc)}"
    if failed_reads >= READS_BEFORE_RECONNECT:
        return f"{failed_reads} reads failed in a row: {failure_text(exc)}"
    return ""


@dataclass
class InstrumentHealth:
    id: str
    type: str
    flavor: str
    state: str = "starting"
    measurements: int = 0
    errors: int = 0
    #: samples the instrument produced that were refused (not its declared channels, not
    #: convertible): never stored, so the run is not ok (see :mod:`.outcome`)
    refused_samples: int = 0
    restarts: int = 0
    reconnects: int = 0
    #: the error the instrument is in now (cleared when it recovers) ...
    last_error: str = ""
    #: ... and the last one it ever had (for the final report)
    last_error_seen: str = ""
    #: what its ``close()`` at shutdown raised ("" when it did not fail): the driver could not leave
    #: the device as it meant to (an output left on), so the instrument did not stop cleanly
    close_failure: str = ""
    #: the newest sample's (text, time); see :meth:`sample_made` for how a poll defers it
    last_sample: tuple[str, int] = ("", 0)
    connected: bool = False        # reached ``running`` at least once
    events_total: int = 0
    event_counts: Counter[str] = field(default_factory=Counter, repr=False)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENT_HISTORY),
                                          repr=False)
    listener: StateListener | None = field(default=None, repr=False)
    _down_since: float | None = field(default=None, repr=False)
    _down_total: float = field(default=0.0, repr=False)
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=64), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: what makes :attr:`last_sample` when someone looks, and from what (None: it is made)
    _make_sample: Callable[[Any], tuple[str, int]] | None = field(default=None, repr=False)
    _sample_of: Any = field(default=None, repr=False)

    def produced(self, n: int, make: Callable[[T], tuple[str, int]], of: T) -> None:
        """``n`` samples (:meth:`polled` counts the poll); the newest one's (text, time) is
        ``make(of)``, called only when someone looks: a poll keeps a reference, no text."""
        with self._lock:
            self.measurements += n
            self._make_sample, self._sample_of = make, of

    def sample_made(self, text: str, timestamp_ns: int) -> None:
        """The newest sample's text and time, made already (a worker process's mirror)."""
        with self._lock:
            self.last_sample = (text, timestamp_ns)
            self._make_sample = self._sample_of = None

    @property
    def last_value(self) -> str:
        """The newest sample as the live view shows it."""
        return self._last()[0]

    @property
    def last_timestamp_ns(self) -> int:
        return self._last()[1]

    def _last(self) -> tuple[str, int]:
        with self._lock:
            make = self._make_sample
            if make is not None:  # made once, then kept
                self.last_sample = make(self._sample_of)
                self._make_sample = self._sample_of = None
            return self.last_sample

    def polled(self, n: int = 0, make: Callable[[T], tuple[str, int]] | None = None,
               of: T | None = None) -> None:
        """One successful read of the instrument, whatever it returned: the rate counts these.

        A read that produced ``n`` samples says so here too (as :meth:`produced`), so a v4
        poll takes the lock once; ``make`` None: none of them was accepted, so the live view
        keeps the newest that was.
        """
        with self._lock:
            self._recent.append(time.monotonic())
            if n:
                self.measurements += n
                if make is not None:
                    self._make_sample, self._sample_of = make, of

    def running(self, reason: str = "") -> None:
        """The instrument works (again): an error it recovered from is no longer its state."""
        self.set_state("running", reason)

    def error(self, message: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = self.last_error_seen = message

    def close_failed(self, exc: BaseException, stopping: bool) -> None:
        """The driver's ``close()`` raised ``exc``: an error, and at shutdown (``stopping``)
        the reason it did not stop cleanly; a close on the way to a reconnect is only an
        error (the link it closes is usually gone, and the next connect starts afresh)."""
        why = failure_text(exc)
        self.error(f"close failed: {why}")
        if stopping:
            with self._lock:
                self.close_failure = why

    def refused(self, n: int, message: str, *, produced: bool = False) -> None:
        """``n`` of the instrument's samples were refused: an error, and data lost;
        ``produced``: counted produced here too (refused by the read itself, they were
        never handed on, where the others are counted)."""
        with self._lock:
            self.errors += 1
            self.refused_samples += n
            if produced:
                self.measurements += n
            self.last_error = self.last_error_seen = message

    def read_refused(self, exc: DataError) -> list[Any]:
        """A read raised ``exc``: values it could not give as their channels are declared,
        so they are refused samples (the run is not ok), not a failed read (the device
        answered: no reconnect); what of the read is left to publish.

        A :class:`~daqhub.measurement.RefusedValues` names each refused value's channel and
        keeps the rest: one sample produced and refused each. Any other ``DataError`` (a
        hand-written driver's own check) lost the read's values whole, how many it does not
        say: one sample produced and refused, with its message. Until 2026-12-07 that counted
        as a failed read, like a reply timeout, and a run that recovered from it was ok.
        """
        if isinstance(exc, RefusedValues):
            self.values_refused(exc.refused)
            return exc.kept
        self.refused(1, refused_text(None, None, failure_text(exc)), produced=True)
        return []

    def command_failed(self, method: str, exc: BaseException) -> None:
        """A command raised ``exc``: its error, counted and named with where it was raised;
        a ``read`` that raised a ``DataError`` (a script's, a scan's) refused its values, as
        a poll's does (:meth:`read_refused`). The one record of a failed command, whichever
        flavor ran it and however it was sent (queued or at once)."""
        if method == "read" and isinstance(exc, DataError):
            self.read_refused(exc)
        else:
            self.error(f"{method} failed: {failure_text(exc, command=True)}")

    def values_refused(self, refused: Iterable[tuple[str, Exception]]) -> None:
        """The values a read refused itself, each with its channel and why
        (:class:`~daqhub.measurement.RefusedValues`): one sample produced and refused
        each."""
        for channel, exc in refused:
            self.refused(1, refused_text(1, channel, str(exc)), produced=True)

    def set_state(self, state: str, reason: str = "") -> None:
        """Change state (a no-op when unchanged); the listener hears each change once."""
        with self._lock:
            old = self.state
            if state == old:
                return
            self.state = state
            now = time.monotonic()
            if state == "running":
                self.connected = True
                if old in RECOVERING:  # the live view shows what is wrong now, not what was
                    self.last_error = ""
            if state in DISCONNECTED_STATES and self._down_since is None:
                self._down_since = now
            elif state not in DISCONNECTED_STATES and self._down_since is not None:
                self._down_total += now - self._down_since
                self._down_since = None
        if self.listener is not None:
            self.listener(self, old, state, reason)

    def outage(self) -> str:
        """Since when the instrument is cut off from its hardware (its state one of
        :data:`DISCONNECTED_STATES`) and its last error, "" when it is not: what a command
        that waited for it in vain says it waited behind (``reconnecting since 12:03:07 (41
        s ago; last error: connect failed: ...)``)."""
        with self._lock:
            if self.state not in DISCONNECTED_STATES or self._down_since is None:
                return ""
            ago = time.monotonic() - self._down_since
            error = self.last_error or self.last_error_seen
            state = self.state
        since = time.strftime("%H:%M:%S", time.localtime(time.time() - ago))
        last = f"; last error: {error}" if error else ""
        return f"{state} since {since} ({ago:.0f} s ago{last})"

    def behind(self, busy_in: str) -> str:
        """What a command to it that had no result in time waited behind: the outage (since
        when, its last error) while it is cut off from its hardware, else what its thread
        or actor is busy in. The one wording of the timeouts of the Lab API's handles, of
        routines and of the dashboard (``rt.call``), which said "busy in 'its poll loop'"
        of an instrument that was reconnecting."""
        outage = self.outage()
        return f"{self.id} is {outage}" if outage else f"busy in {busy_in or 'its poll loop'!r}"

    def event(self, kind: str, detail: str) -> None:
        """Record a lifecycle event (disconnected, reconnected, restarted, failed...)."""
        with self._lock:
            self.events_total += 1
            self.event_counts[kind] += 1
            self.events.append({"time": time.time(), "event": kind, "detail": detail})

    def disconnected_s(self) -> float:
        """Seconds spent cut off from the hardware (reconnecting or restarting) so far."""
        with self._lock:
            ongoing = time.monotonic() - self._down_since if self._down_since else 0.0
            return self._down_total + ongoing

    def rate_hz(self) -> float:
        """Polls per second over the last few polls (0 when stale for 5 s)."""
        with self._lock:
            if len(self._recent) < 2 or time.monotonic() - self._recent[-1] > 5:
                return 0.0
            span = self._recent[-1] - self._recent[0]
            return (len(self._recent) - 1) / span if span > 0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        rate = self.rate_hz()
        last_value, last_timestamp_ns = self._last()
        with self._lock:
            return {"id": self.id, "type": self.type, "flavor": self.flavor, "state": self.state,
                    "measurements": self.measurements, "errors": self.errors,
                    "refused_samples": self.refused_samples,
                    "restarts": self.restarts, "reconnects": self.reconnects,
                    "last_error": self.last_error, "last_value": last_value,
                    "last_timestamp_ns": last_timestamp_ns, "rate_hz": round(rate, 2),
                    "connected": self.connected,
                    "disconnected_s": round(self._down_total + (
                        time.monotonic() - self._down_since if self._down_since else 0.0), 2)}


#: states an instrument leaves when it works again
RECOVERING = frozenset({"error", "reconnecting", "restarting"})

SI_UNITS = frozenset({"W", "V", "A", "Ohm", "ohm", "Hz", "s", "F", "H", "m", "g"})
_PREFIXES = {-5: "f", -4: "p", -3: "n", -2: "u", -1: "m", 0: "", 1: "k", 2: "M", 3: "G"}


def si_text(v: float, unit: str) -> str:
    """``0.0005003 W`` -> ``500.3 uW``: readable at a glance in a live table."""
    if unit not in SI_UNITS or v == 0 or not math.isfinite(v):
        return f"{v:.4g} {unit}".strip()
    step = max(-5, min(3, math.floor(math.log10(abs(v)) / 3)))
    return f"{v / 10 ** (3 * step):.4g} {_PREFIXES[step]}{unit}"


def describe_value(data: Any) -> str:
    """Short text of a sample for the live view."""
    from ..measurement import Image, Scalar, Spectrum

    if isinstance(data, Scalar):
        v = data.value
        if isinstance(v, float) or hasattr(v, "dtype") and v.dtype.kind == "f":
            return si_text(float(v), data.unit)
        return f"{v} {data.unit}".strip()
    if isinstance(data, Spectrum):
        return f"spectrum[{len(data.values)}] {data.unit}".strip()
    if isinstance(data, Image):
        return f"image{tuple(data.pixels.shape)} {data.unit}".strip()
    return str(data)
