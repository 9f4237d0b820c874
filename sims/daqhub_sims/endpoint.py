"""One simulated serial line: a device, the bytes in flight to the host, and its faults.

Every transport (``sim://`` handler, pseudo-terminal, TCP server) talks to a device through an
:class:`Endpoint` by way of a :class:`Session`, the equivalent of one open file descriptor. The
endpoint owns the only lock around the device (the device contract asks for exactly that) and
the output pipeline: device output -> truncation -> garbage -> latency / wire speed -> host.

Time here is ``time.monotonic`` even when the device runs on a ``ManualClock``: faults model
the wire and the adapter, which live in real time. A test that advances a manual clock calls
:meth:`Endpoint.poke` so that waiting readers look at the device again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from daqhub_sims.device import SimDevice
from daqhub_sims.faults import Faults

ChangeCallback = Callable[[bool], None]

#: Upper bound of one wait, so a reader re-checks its state even if a wake-up were lost.
_MAX_WAIT_S = 1.0
#: Floor of a wait derived from the device schedule, against a device reporting "due now"
#: without releasing anything (which would otherwise spin).
_MIN_DEVICE_WAIT_S = 1e-4


class EndpointDisconnected(Exception):
    """The line behind a session is gone (unplugged, or replugged since the session opened)."""


class EndpointBusy(Exception):
    """The line is open exclusively (``TIOCEXCL`` on a real tty), or is asked for exclusively
    while open."""


class Endpoint:
    """A simulated device on one line, shared by every session that opens it."""

    def __init__(self, device: SimDevice, url: str = "") -> None:
        self.device = device
        self.url = url or f"<{type(device).__name__} endpoint>"
        self.lock = threading.Condition()
        self.faults = Faults(self)
        self._ready = bytearray()  # arrived at the host, readable now
        self._scheduled: deque[tuple[float, bytes]] = deque()  # (release time, bytes), FIFO
        self._tx_free_at = 0.0  # device->host wire busy until (baud emulation)
        self._rx_free_at = 0.0  # host->device wire busy until (baud emulation)
        self._cut_budget: int | None = None  # bytes still allowed of the reply being cut
        self._cut_dropping = False  # dropping the rest of a cut reply up to its b"\n"
        self._connected = True
        self._closed = False
        self._generation = 0
        self._sessions: list[Session] = []
        self._watchers: list[ChangeCallback] = []

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._connected else "disconnected"
        return f"<Endpoint {self.url} {state}>"

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected and not self._closed

    def open_session(self, owner: ChangeCallback | None = None,
                     exclusive: bool = False) -> Session:
        """Open the line, as ``open()`` of a device node would.

        ``owner`` is the watcher (see :meth:`watch`) of whoever opens the session; it is not
        told about this session's own writes. An ``exclusive`` session is refused while the
        line is open, and refuses every later open until it closes.
        """
        with self.lock:
            if not self.connected:
                raise EndpointDisconnected(f"{self.url}: no such device (disconnected)")
            live = [s for s in self._sessions if s.alive]
            if any(s.exclusive for s in live) or (exclusive and live):
                raise EndpointBusy(f"{self.url}: device or resource busy (open exclusively)")
            session = Session(self, self._generation, owner)
            session.exclusive = exclusive
            self._sessions.append(session)
            return session

    def watch(self, callback: ChangeCallback) -> None:
        """Call ``callback(line_changed)`` (without the lock) on what a poll loop cannot see:
        ``True`` for an unplug, replug or close of the line; ``False`` for a fault knob
        turned, a :meth:`poke`, or a write by a session the watcher does not own."""
        with self.lock:
            self._watchers.append(callback)

    def unwatch(self, callback: ChangeCallback) -> None:
        with self.lock:
            if callback in self._watchers:
                self._watchers.remove(callback)

    def set_connected(self, connected: bool) -> None:
        """Plug or unplug the line; used through :class:`Faults`."""
        with self.lock:
            if self._closed:
                raise EndpointDisconnected(f"{self.url}: endpoint closed")
            if self._connected == connected:
                return
            self._connected = connected
            if connected:
                self.device.read()  # replies sent while unplugged went nowhere
            else:
                self._generation += 1
                self._drop_in_flight()
            self.lock.notify_all()
            callbacks = self._callbacks(None)
        for callback in callbacks:
            callback(True)

    def close(self) -> None:
        """Retire the endpoint (``registry.reset``): every session fails from now on."""
        with self.lock:
            self._closed = True
            self._generation += 1
            self._drop_in_flight()
            self.lock.notify_all()
            callbacks = self._callbacks(None)
        for callback in callbacks:
            callback(True)

    def poke(self) -> None:
        """Make waiting readers look at the device again (after ``ManualClock.advance``)."""
        with self.lock:
            self.lock.notify_all()
            callbacks = self._callbacks(None)
        for callback in callbacks:
            callback(False)

    # -- internals, all called with the lock held ---------------------------------------
    def _callbacks(self, exclude: Session | None) -> list[ChangeCallback]:
        if exclude is None:
            return list(self._watchers)
        return [w for w in self._watchers if w != exclude.owner]

    def _drop_in_flight(self) -> None:
        self._ready.clear()
        self._scheduled.clear()
        self._cut_budget = None
        self._cut_dropping = False
        self._tx_free_at = self._rx_free_at = 0.0

    def _check(self, session: Session) -> None:
        if session.closed or session.generation != self._generation or not self.connected:
            raise EndpointDisconnected(f"{self.url}: device disconnected")

    def _collect(self, now: float) -> bool:
        """Move what the device has due, and what the wire has delivered, to the host side.

        True when the host side got new bytes.
        """
        before = len(self._ready)
        produced = self.device.read()
        if produced:
            self._release(produced, now)
        scheduled = self._scheduled
        while scheduled and scheduled[0][0] <= now:
            self._ready += scheduled.popleft()[1]
        return len(self._ready) > before

    def _release(self, data: bytes, now: float) -> None:
        faults = self.faults
        if self._cut_budget is not None or self._cut_dropping or faults.truncations:
            data = self._cut(data)
        if faults.garbage:
            data = bytes(faults.garbage) + data
            faults.garbage.clear()
        if not data:
            return
        start = now + faults.latency
        if self._scheduled:
            start = max(start, self._scheduled[-1][0])  # never overtake earlier output
        if faults.baud_emulation:
            char_time = 10.0 / self.device.baudrate
            t = max(start, self._rx_free_at, self._tx_free_at)
            for i in range(len(data)):
                t += char_time
                self._scheduled.append((t, data[i : i + 1]))
            self._tx_free_at = t
        elif start > now:
            self._scheduled.append((start, data))
        else:
            self._ready += data

    def _cut(self, data: bytes) -> bytes:
        """Apply pending truncations; a reply is everything up to and including ``\\n``."""
        out = bytearray()
        truncations = self.faults.truncations
        i, n = 0, len(data)
        while i < n:
            if self._cut_dropping:
                end = data.find(b"\n", i)
                if end < 0:
                    break
                self._cut_dropping = False
                i = end + 1
                continue
            if self._cut_budget is None:
                if not truncations:
                    out += data[i:]
                    break
                self._cut_budget = truncations.popleft()
            end = data.find(b"\n", i)
            reply_end = n if end < 0 else end + 1
            keep = min(self._cut_budget, reply_end - i)
            out += data[i : i + keep]
            i += keep
            self._cut_budget -= keep
            if end >= 0 and i == reply_end:
                self._cut_budget = None  # the whole reply fitted
            elif self._cut_budget == 0:
                self._cut_budget = None
                self._cut_dropping = True  # the rest of this reply never arrives
        return bytes(out)

    def _next_event_in(self, now: float) -> float | None:
        """Seconds until more bytes may reach the host; None if nothing is in flight."""
        waits = []
        if self._scheduled:
            waits.append(self._scheduled[0][0] - now)
        due = self.device.next_output_in()
        if due is not None:
            waits.append(max(due, _MIN_DEVICE_WAIT_S))
        return max(0.0, min(waits)) if waits else None


class Session:
    """One open handle on an endpoint; dead for good once its line has been unplugged."""

    def __init__(
        self, endpoint: Endpoint, generation: int, owner: ChangeCallback | None
    ) -> None:
        self.endpoint = endpoint
        self.generation = generation
        self.owner = owner
        self.closed = False
        self.exclusive = False
        self._cancel_read = False

    @property
    def alive(self) -> bool:
        ep = self.endpoint
        return not self.closed and self.generation == ep._generation and ep.connected

    def close(self) -> None:
        ep = self.endpoint
        with ep.lock:
            self.closed = True
            if self in ep._sessions:
                ep._sessions.remove(self)
            ep.lock.notify_all()

    def write(self, data: bytes) -> None:
        """Bytes from the host reach the device now (it answers at once if it can)."""
        ep = self.endpoint
        with ep.lock:
            ep._check(self)
            now = time.monotonic()
            if ep.faults.baud_emulation:
                ep._rx_free_at = max(now, ep._rx_free_at) + len(data) * 10.0 / ep.device.baudrate
            ep.device.feed(data)
            ep._collect(now)
            ep.lock.notify_all()
            callbacks = ep._callbacks(self) if ep._watchers else []
        for callback in callbacks:
            callback(False)

    def read(
        self, size: int, timeout: float | None, inter_byte_timeout: float | None = None
    ) -> bytes:
        """Up to ``size`` bytes, with pyserial's timeout meaning (None: until ``size``)."""
        return self._read(size, timeout, inter_byte_timeout, None)

    def read_until(self, expected: bytes, size: int | None, timeout: float | None) -> bytes:
        """Bytes up to and including ``expected``, or fewer at ``size`` or the timeout."""
        return self._read(size, timeout, None, expected)

    def _read(
        self,
        size: int | None,
        timeout: float | None,
        inter_byte_timeout: float | None,
        expected: bytes | None,
    ) -> bytes:
        ep = self.endpoint
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        last_count, last_growth = 0, start
        with ep.lock:
            try:
                while True:
                    ep._check(self)
                    now = time.monotonic()
                    ep._collect(now)
                    ready = ep._ready
                    take = _wanted(ready, size, expected)
                    if take or self._cancel_read:
                        break
                    if len(ready) != last_count:
                        last_count, last_growth = len(ready), now
                    limit = deadline
                    if inter_byte_timeout is not None and last_count:
                        ib_deadline = last_growth + inter_byte_timeout
                        limit = ib_deadline if limit is None else min(limit, ib_deadline)
                    if limit is not None and now >= limit:
                        break
                    waits = [_MAX_WAIT_S]
                    if limit is not None:
                        waits.append(limit - now)
                    event = ep._next_event_in(now)
                    if event is not None:
                        waits.append(event)
                    ep.lock.wait(min(waits))
                if not take:
                    take = len(ready) if size is None else min(size, len(ready))
                out = bytes(ready[:take])
                del ready[:take]
                return out
            finally:
                self._cancel_read = False

    def cancel_read(self) -> None:
        ep = self.endpoint
        with ep.lock:
            self._cancel_read = True
            ep.lock.notify_all()

    def take(self) -> bytes:
        """Everything the host has received by now (for pump threads; never waits)."""
        ep = self.endpoint
        with ep.lock:
            ep._check(self)
            ep._collect(time.monotonic())
            out = bytes(ep._ready)
            ep._ready.clear()
            return out

    def next_event_in(self) -> float | None:
        """Seconds until more bytes may arrive; bytes already due are collected first, so
        a poll loop that does not take them does not spin."""
        ep = self.endpoint
        callbacks: list[ChangeCallback] = []
        with ep.lock:
            now = time.monotonic()
            if self.alive and ep._collect(now):
                # Bytes that arrived here are no longer "in flight": whoever takes them (another
                # transport on this line) must hear of it now, not at its next timeout.
                ep.lock.notify_all()
                callbacks = ep._callbacks(self) if ep._watchers else []
            event = ep._next_event_in(now)
        for callback in callbacks:
            callback(False)
        return event

    def in_waiting(self) -> int:
        ep = self.endpoint
        with ep.lock:
            ep._check(self)
            ep._collect(time.monotonic())
            return len(ep._ready)

    def reset_input(self) -> None:
        """Drop what has arrived; bytes still on the wire arrive later, as on a real port."""
        ep = self.endpoint
        with ep.lock:
            ep._check(self)
            ep._collect(time.monotonic())
            ep._ready.clear()

    def check(self) -> None:
        """Raise :class:`EndpointDisconnected` if the line is gone."""
        ep = self.endpoint
        with ep.lock:
            ep._check(self)


def _wanted(ready: bytearray, size: int | None, expected: bytes | None) -> int:
    """How many bytes of ``ready`` complete the read now (0: keep waiting)."""
    if expected is not None:
        found = ready.find(expected)
        if found >= 0:
            end = found + len(expected)
            return end if size is None else min(end, size)
        if size is not None and len(ready) >= size:
            return size
        return 0
    assert size is not None
    return size if len(ready) >= size else 0
