"""SerialPortManager: one object per port, transactions, urgent lane, stats, USB identity."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import serial
from polling import wait_until
from resources_fakes import PtyDevice

from daqhub.resources import (
    PortOpenError,
    ReplyTimeoutError,
    ResourceConfigConflictError,
    ResourceTimeoutError,
    SerialPortManager,
    SharedSerialPort,
    UsbIdentity,
    canonical_port_name,
)

pytestmark = pytest.mark.timeout(20)


def queued(port: SharedSerialPort, depth: int) -> bool:
    return port.gate.queue_depth == depth


def test_same_port_object_for_same_canonical_name(serial_mgr: SerialPortManager,
                                                  pty_device: Callable[..., PtyDevice],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    dev = pty_device(link=tmp_path / "ttyFAKE")
    monkeypatch.chdir(tmp_path)
    a = serial_mgr.port(dev.path)
    b = serial_mgr.port("./ttyFAKE")
    assert a is b
    assert serial_mgr.port("LOOP://") is serial_mgr.port("loop://")
    assert canonical_port_name("usb:0403:6015:ABC") == canonical_port_name("USB:403:6015:ABC")


def test_line_settings_must_agree(serial_mgr: SerialPortManager) -> None:
    serial_mgr.port("loop://", baudrate=9600)
    with pytest.raises(ResourceConfigConflictError, match="baudrate=9600.*115200"):
        serial_mgr.port("loop://", baudrate=115200)


def test_query_and_stats(serial_mgr: SerialPortManager,
                         pty_device: Callable[..., PtyDevice]) -> None:
    dev = pty_device()
    port = serial_mgr.port(dev.path, baudrate=115200)
    for n in range(20):
        assert port.query(b"Q%d\n" % n, terminator=b"\n", owner="t") == b"R%d" % n

    def two_lines(io: object) -> tuple[bytes, bytes]:
        io.write(b"Qa\nQb\n")  # type: ignore[attr-defined]
        return io.readline(), io.readline()  # type: ignore[attr-defined]

    assert port.transaction(two_lines) == (b"Ra\n", b"Rb\n")
    with pytest.raises(ReplyTimeoutError, match=r"no complete reply to b'X\\n'"):
        port.query(b"X\n", terminator=b"\n", read_timeout=0.05)
    stats = port.stats()
    assert stats["transactions"] == 21
    assert stats["errors"] == 1
    assert stats["io_mean_s"] > 0 and stats["io_max_s"] >= stats["io_mean_s"]
    assert stats["queue_depth"] == 0 and stats["connected"] is True
    assert stats["reconnects"] == 0 and stats["disconnects"] == 0
    # the per-query read timeout was restored afterwards
    assert port.transaction(lambda io: io.timeout) == 0.5


def test_async_query_on_loop_url(serial_mgr: SerialPortManager) -> None:
    port = serial_mgr.port("loop://")

    async def main() -> list[bytes]:
        return [await port.aquery(b"PING%d\n" % n, terminator=b"\n") for n in range(5)]

    assert asyncio.run(main()) == [b"PING%d" % n for n in range(5)]


def test_url_packages_are_registered() -> None:
    mgr = SerialPortManager(url_packages=["daqhub_test_nonexistent.handlers"])
    try:
        assert "daqhub_test_nonexistent.handlers" in serial.protocol_handler_packages
    finally:
        serial.protocol_handler_packages.remove("daqhub_test_nonexistent.handlers")
        mgr.close_all()


def test_shared_slot_is_created_once(serial_mgr: SerialPortManager) -> None:
    port = serial_mgr.port("loop://")
    made: list[object] = []

    def factory() -> object:
        obj = object()
        made.append(obj)
        return obj

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(port.shared("bus", factory)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(made) == 1 and all(r is made[0] for r in results)


def test_timeout_error_names_resource_holder_duration_and_holdings(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    port = serial_mgr.port(pty_device().path)
    other = serial_mgr.port("loop://")
    held = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with serial_mgr.lease([port, other], owner="rotator", timeout=2):
            held.set()
            done.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(5)
        start = time.monotonic()
        with pytest.raises(ResourceTimeoutError) as info:
            port.query(b"Q1\n", terminator=b"\n", owner="slider", timeout=0.2)
        assert 0.15 < time.monotonic() - start < 1.5
    finally:
        done.set()
        t.join(5)
    err = info.value
    text = str(err)
    assert err.resource == f"serial:{port.name}" and err.owner == "slider"
    assert f"waiting for serial:{port.name}" in text
    assert "held by 'rotator' for 0." in text  # who, and how long it has held it
    assert f"holding [serial:{port.name}, serial:{other.name}]" in text  # what it holds
    assert port.stats()["timeouts"] == 1


def test_timeout_while_a_transaction_holds_names_the_transaction(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    dev = pty_device(on_request=lambda line: None)  # never answers
    port = serial_mgr.port(dev.path, read_timeout=0.6)
    results: list[BaseException] = []
    t = threading.Thread(target=lambda: results.append(pytest.raises(
        ReplyTimeoutError, port.query, b"SLOW\n", terminator=b"\n", owner="poller").value))
    t.start()
    wait_until(lambda: port.gate.holder_description() is not None,
               "the poller's query to hold the port", timeout=5, every=0.002)
    with pytest.raises(ResourceTimeoutError, match=r"held by 'poller' for .* \(query b'SLOW\\n'\)"):
        port.query(b"Q2\n", terminator=b"\n", owner="stage", timeout=0.1)
    t.join(5)
    assert len(results) == 1


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_urgent_lane_is_served_before_the_normal_fifo(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice], flavor: str) -> None:
    dev = pty_device()
    port = serial_mgr.port(dev.path)
    release = threading.Event()
    held = threading.Event()
    replies: dict[str, bytes] = {}

    def hold() -> None:
        with port.lease(owner="scan"):
            held.set()
            release.wait(5)

    def sync_query(token: str, urgent: bool) -> None:
        replies[token] = port.query(b"Q%s\n" % token.encode(), terminator=b"\n", owner=token,
                                    urgent=urgent)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    threads = []
    for n in range(3):
        threads.append(threading.Thread(target=sync_query, args=(f"poll{n}", False)))
        threads[-1].start()
        wait_until(functools.partial(queued, port, n + 1),
                   f"{n + 1} queries queued behind the lease", timeout=5, every=0.002)

    if flavor == "sync":
        threads.append(threading.Thread(target=sync_query, args=("stop", True)))
        threads[-1].start()
        wait_until(lambda: port.gate.queue_depth == 4,
                   "the urgent query queued behind the 3 polls", timeout=5, every=0.002)
        release.set()
    else:
        async def main() -> None:
            task = asyncio.create_task(port.aquery(b"Qstop\n", terminator=b"\n", owner="stop",
                                                   urgent=True))
            deadline = time.monotonic() + 5
            while port.gate.queue_depth < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
            release.set()
            replies["stop"] = await task

        asyncio.run(main())
    holder.join(5)
    for t in threads:
        t.join(5)
    assert dev.requests == [b"Qstop", b"Qpoll0", b"Qpoll1", b"Qpoll2"]
    assert replies == {"stop": b"Rstop", "poll0": b"Rpoll0", "poll1": b"Rpoll1",
                       "poll2": b"Rpoll2"}
    assert port.stats()["urgent"] == 1


@dataclass
class FakePortInfo:
    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None


def test_usb_identity_is_resolved_through_the_lister(pty_device: Callable[..., PtyDevice]
                                                     ) -> None:
    dev = pty_device()
    listing = [FakePortInfo("/dev/ttyS0", None, None, None),
               FakePortInfo("/dev/ttyUSB7", 0x0403, 0x6015, "OTHER"),
               FakePortInfo(dev.pty_path, 0x0403, 0x6015, "SERIAL123")]
    mgr = SerialPortManager(lister=lambda: listing)
    try:
        port = mgr.port("usb:0403:6015:SERIAL123")
        assert port.name == "usb:0403:6015:SERIAL123" and port.device == dev.pty_path
        assert port.query(b"Q1\n", terminator=b"\n") == b"R1"
        with pytest.raises(PortOpenError, match="no USB serial device usb:0403:6001:X"):
            mgr.port("usb:0403:6001:X")
        with pytest.raises(PortOpenError, match="matches several devices"):
            mgr.port("usb:0403:6015")
    finally:
        assert mgr.close_all() == []
    assert UsbIdentity.parse("/dev/ttyUSB0") is None
    with pytest.raises(ValueError, match="hex"):
        UsbIdentity.parse("usb:zz:6015")


def test_missing_port_is_reported_clearly(serial_mgr: SerialPortManager, tmp_path: Path) -> None:
    with pytest.raises(PortOpenError, match="cannot open serial port .*nothing-here"):
        serial_mgr.port(str(tmp_path / "nothing-here"))


def test_close_all_reports_a_port_it_cannot_close(pty_device: Callable[..., PtyDevice]) -> None:
    mgr = SerialPortManager()
    port = mgr.port(pty_device().path)
    held = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with port.lease(owner="stuck"):
            held.set()
            done.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(5)
    start = time.monotonic()
    assert mgr.close_all(timeout=0.2) == [port.name]
    assert time.monotonic() - start < 1.5
    done.set()
    t.join(5)
    assert not port.is_connected
