"""A device vanishes mid-transaction and comes back: clear errors, listeners told, traffic
resumes, and nothing is sent twice or dropped without an error."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from polling import wait_until
from resources_fakes import PtyDevice

from daqhub.resources import (
    LockOrderChecker,
    PortDisconnectedError,
    PortEvent,
    SerialPortManager,
    SharedSerialPort,
)

pytestmark = pytest.mark.timeout(30)


class Clients:
    """V2 threads and V4 coroutines querying with unique tokens; every outcome is recorded."""

    def __init__(self, port: SharedSerialPort) -> None:
        self.port = port
        self.stop = threading.Event()
        self.ok: list[bytes] = []
        self.failed: dict[bytes, BaseException] = {}
        self.other: list[BaseException] = []
        self.lock = threading.Lock()
        self.sent: list[bytes] = []
        self._threads: list[threading.Thread] = []
        self._loop_thread: threading.Thread | None = None

    def _outcome(self, token: bytes, call: Callable[[], bytes]) -> None:
        with self.lock:
            self.sent.append(token)
        try:
            reply = call()
        except PortDisconnectedError as exc:
            with self.lock:
                self.failed[token] = exc
            time.sleep(0.01)  # an instrument would back off before retrying
            return
        except Exception as exc:
            self.other.append(exc)
            return
        with self.lock:
            if reply == b"R" + token[1:]:
                self.ok.append(token)
            else:
                self.other.append(AssertionError(f"{token!r} got {reply!r}"))

    def _v2(self, name: str) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            token = f"Q{name}-{n}".encode()
            self._outcome(token, functools.partial(self.port.query, token + b"\n",
                                                   terminator=b"\n", owner=name))

    async def _v4(self, name: str) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            token = f"Q{name}-{n}".encode()
            with self.lock:
                self.sent.append(token)
            try:
                reply = await self.port.aquery(token + b"\n", terminator=b"\n", owner=name)
            except PortDisconnectedError as exc:
                with self.lock:
                    self.failed[token] = exc
                await asyncio.sleep(0.01)
                continue
            except Exception as exc:
                self.other.append(exc)
                continue
            with self.lock:
                (self.ok.append(token) if reply == b"R" + token[1:]
                 else self.other.append(AssertionError(f"{token!r} got {reply!r}")))

    def start(self, threads: int = 3, coroutines: int = 2) -> None:
        self._threads = [threading.Thread(target=self._v2, args=(f"t{k}",))
                         for k in range(threads)]
        for t in self._threads:
            t.start()

        async def v4_all() -> None:
            await asyncio.gather(*(self._v4(f"a{k}") for k in range(coroutines)))

        self._loop_thread = threading.Thread(target=asyncio.run, args=(v4_all(),))
        self._loop_thread.start()

    def join(self) -> None:
        self.stop.set()
        for t in [*self._threads, self._loop_thread]:
            assert t is not None
            t.join(10)
            assert not t.is_alive()


def run_disconnect_scenario(port: SharedSerialPort, first: PtyDevice,
                            bring_back: Callable[[], PtyDevice]) -> None:
    events: list[PortEvent] = []
    got_event = threading.Condition()

    def listener(event: PortEvent) -> None:
        with got_event:
            events.append(event)
            got_event.notify_all()

    port.add_listener(listener)
    clients = Clients(port)
    clients.start()
    try:
        wait_until(lambda: len(clients.ok) >= 50, "traffic before the disconnect", timeout=10)
        first.disconnect_on = b"-60"  # some client's 60th request pulls the cable mid-reply
        with got_event:
            assert got_event.wait_for(lambda: len(events) >= 1, 10)
        assert first.gone.wait(5)  # set just after the fds close, which is what we heard
        assert not port.is_connected
        wait_until(lambda: len(clients.failed) >= 5, "failures while disconnected", timeout=10)
        t_down = time.monotonic()
        second = bring_back()
        with got_event:
            assert got_event.wait_for(lambda: len(events) >= 2, 10)
        t_up = time.monotonic()
        ok_before = len(clients.ok)
        wait_until(lambda: len(clients.ok) >= ok_before + 50, "traffic after reconnecting",
                   timeout=10)
    finally:
        clients.join()

    # listeners: exactly one disconnect, then one reconnect, with useful details
    assert [e.kind for e in events] == ["disconnected", "reconnected"]
    assert events[0].port == port.name and "SerialException" in events[0].detail
    assert events[1].attempt >= 1
    assert t_up - t_down < 6.0  # backoff is capped, no long stall once the device is back

    # errors are clear: they name the port
    assert clients.other == []
    for exc in clients.failed.values():
        assert isinstance(exc, PortDisconnectedError) and exc.port == port.name
        assert port.name in str(exc)
    in_flight = [t for t, e in clients.failed.items() if "during a transaction" in str(e)]
    assert len(in_flight) == 1 and in_flight[0].endswith(b"-60")

    # accounting: each request was sent to a device at most once; every request either
    # got its own reply or failed with an error; only the one in flight reached the old device
    # without a reply
    received = first.requests + second.requests
    assert len(received) == len(set(received)), "a request was sent twice"
    assert set(clients.ok) | set(clients.failed) == set(clients.sent)
    assert set(clients.ok).isdisjoint(clients.failed)
    assert set(received) == set(clients.ok) | set(in_flight)
    stats = port.stats()
    assert stats["disconnects"] == 1 and stats["reconnects"] == 1 and stats["connected"]
    assert stats["transactions"] == len(clients.ok)


def test_reconnect_through_a_stable_symlink(checker: LockOrderChecker, tmp_path: Path,
                                            pty_device: Callable[..., PtyDevice]) -> None:
    link = tmp_path / "ttyELL"
    first = pty_device(link=link)
    mgr = SerialPortManager(checker=checker)
    try:
        port = mgr.port(str(link), baudrate=115200, read_timeout=1.0)
        run_disconnect_scenario(port, first, lambda: pty_device(link=link))
    finally:
        assert mgr.close_all(5) == []


@dataclass
class FakePortInfo:
    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None


def test_reconnect_by_usb_identity_after_reenumeration(
        checker: LockOrderChecker, pty_device: Callable[..., PtyDevice]) -> None:
    first = pty_device()
    blockers: list[int] = []
    present = [FakePortInfo(first.pty_path, 0x0403, 0x6015, "DK0AHAJZ")]
    mgr = SerialPortManager(checker=checker, lister=lambda: list(present))
    try:
        port = mgr.port("usb:0403:6015:DK0AHAJZ", baudrate=115200, read_timeout=1.0)
        assert port.device == first.pty_path

        def reenumerate() -> PtyDevice:
            placeholder = os.openpty()  # takes the freed node, so the device comes back elsewhere
            blockers.extend(placeholder)
            second = pty_device()  # a new node: ttyUSB0 -> ttyUSB1
            present[:] = [FakePortInfo("/dev/ttyUSB9", 0x067B, 0x2303, "X"),
                          FakePortInfo(second.pty_path, 0x0403, 0x6015, "DK0AHAJZ")]
            return second

        run_disconnect_scenario(port, first, reenumerate)
        assert port.device != first.pty_path and port.device == present[1].device
    finally:
        assert mgr.close_all(5) == []
        for fd in blockers:
            os.close(fd)


def test_first_reconnect_attempt_waits_and_close_stops_the_thread(
        checker: LockOrderChecker, tmp_path: Path, pty_device: Callable[..., PtyDevice]) -> None:
    link = tmp_path / "ttyGONE"
    dev = pty_device(link=link)
    mgr = SerialPortManager(checker=checker)
    port = mgr.port(str(link))
    attempts: list[float] = []
    real_open = port._open

    def counting_open() -> object:
        attempts.append(time.monotonic())
        return real_open()

    port._open = counting_open  # type: ignore[method-assign]
    dev.disconnect_on = b"bye"
    lost_at = time.monotonic()
    with pytest.raises(PortDisconnectedError, match="disconnected during a transaction"):
        port.query(b"Qbye\n", terminator=b"\n")
    with pytest.raises(PortDisconnectedError, match="is disconnected"):
        port.query(b"Qagain\n", terminator=b"\n")  # fails fast, not after a timeout
    link.unlink()  # the device stays away
    wait_until(lambda: len(attempts) >= 2, "two reopen attempts", timeout=5)
    assert attempts[0] - lost_at >= 0.45  # first try after ~500 ms
    assert attempts[1] - attempts[0] >= 0.9  # then backoff
    reconnector = port._reconnector
    start = time.monotonic()
    assert mgr.close_all(5) == []
    assert time.monotonic() - start < 1.0  # the stop event cuts the backoff wait short
    assert reconnector is not None and not reconnector.is_alive()
