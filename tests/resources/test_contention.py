"""8 V2-style threads and 8 V4-style coroutines hammer one resource: no reply misrouted or lost."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from resources_fakes import PtyDevice

from daqhub.resources import SerialPortManager, VisaSessionManager

pytestmark = pytest.mark.timeout(30)

THREADS = 8
COROUTINES = 8
SECONDS = 1.0


class Tally:
    """Per client: requests made, replies that matched, anything else."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.ok: dict[str, int] = {}
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def record(self, client: str, sent: int, ok: int, problems: list[str]) -> None:
        with self._lock:
            self.sent[client] = sent
            self.ok[client] = ok
            self.problems.extend(problems)


def hammer(sync_call: Callable[[str, int], tuple[Any, Any]],
           async_call: Callable[[str, int], Awaitable[tuple[Any, Any]]]) -> Tally:
    """Run THREADS threads and COROUTINES coroutines until SECONDS have passed.

    Each call returns (expected, got); a client's request tokens are unique to it.
    """
    tally = Tally()
    end = time.monotonic() + SECONDS
    go = threading.Barrier(THREADS + 1, timeout=10)

    def v2(client: str) -> None:
        sent = ok = 0
        problems: list[str] = []
        go.wait()
        while time.monotonic() < end:
            sent += 1
            try:
                expected, got = sync_call(client, sent)
            except Exception as exc:
                problems.append(f"{client}#{sent}: {exc!r}")
                continue
            if got == expected:
                ok += 1
            else:
                problems.append(f"{client}#{sent}: expected {expected!r}, got {got!r}")
        tally.record(client, sent, ok, problems)

    async def v4(client: str) -> None:
        sent = ok = 0
        problems: list[str] = []
        while time.monotonic() < end:
            sent += 1
            try:
                expected, got = await async_call(client, sent)
            except Exception as exc:
                problems.append(f"{client}#{sent}: {exc!r}")
                continue
            if got == expected:
                ok += 1
            else:
                problems.append(f"{client}#{sent}: expected {expected!r}, got {got!r}")
        tally.record(client, sent, ok, problems)

    async def v4_all() -> None:
        await asyncio.gather(*(v4(f"a{k}") for k in range(COROUTINES)))

    threads = [threading.Thread(target=v2, args=(f"t{k}",)) for k in range(THREADS)]
    for t in threads:
        t.start()
    go.wait()
    asyncio.run(v4_all())
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    return tally


def check(tally: Tally) -> None:
    assert tally.problems == []
    assert len(tally.sent) == THREADS + COROUTINES
    assert tally.ok == tally.sent  # every request got its own reply
    # every client made progress: the lane is shared, not monopolised
    assert all(n > 0 for n in tally.ok.values()), tally.ok


def test_serial_contention_on_a_pty_device(serial_mgr: SerialPortManager,
                                           pty_device: Callable[..., PtyDevice]) -> None:
    dev = pty_device()
    port = serial_mgr.port(dev.path, baudrate=115200, read_timeout=1.0)

    def sync_call(client: str, n: int) -> tuple[bytes, bytes]:
        token = f"{client}-{n}".encode()
        return b"R" + token, port.query(b"Q" + token + b"\n", terminator=b"\n", owner=client)

    async def async_call(client: str, n: int) -> tuple[bytes, bytes]:
        token = f"{client}-{n}".encode()
        return b"R" + token, await port.aquery(b"Q" + token + b"\n", terminator=b"\n",
                                                owner=client)

    tally = hammer(sync_call, async_call)
    check(tally)
    total = sum(tally.sent.values())
    assert len(dev.requests) == total == len(set(dev.requests))  # none lost, none sent twice
    stats = port.stats()
    assert stats["transactions"] == total and stats["errors"] == 0
    assert stats["max_queue_depth"] >= 2 and stats["wait_max_s"] > 0


def test_visa_contention_on_pyvisa_sim(visa_mgr: VisaSessionManager, sim_backend: str) -> None:
    res = visa_mgr.resource("GPIB0::5::INSTR", backend=sim_backend, read_termination="\n",
                            write_termination="\n")

    def sync_call(client: str, n: int) -> tuple[str, str]:
        k = (hash(client) + n) % 64
        return f"R{k}", res.query(f"Q{k}?", owner=client)

    async def async_call(client: str, n: int) -> tuple[str, str]:
        k = (hash(client) + n) % 64
        return f"R{k}", await res.aquery(f"Q{k}?", owner=client)

    tally = hammer(sync_call, async_call)
    check(tally)
    stats = res.stats()
    assert stats["transactions"] == sum(tally.sent.values()) and stats["errors"] == 0
