"""A task or thread that outlives the lease it was started in holds nothing: it queues.

It copies the lease's context, and with it the lease's held record; that record counted as
holding the gate after the lease had ended, so its transactions skipped the queue while
someone else held the port: two owners talking at once, each reading the other's reply.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable

import pytest
from polling import wait_until
from resources_fakes import PtyDevice

from daqhub.resources import PortIO, SerialPortManager, SharedSerialPort

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def port(serial_mgr: SerialPortManager,
         pty_device: Callable[..., PtyDevice]) -> SharedSerialPort:
    return serial_mgr.port(pty_device().path)


class Talk:
    """Exchanges with the fake device that record who talked over whom, and what each read."""

    def __init__(self) -> None:
        self.talking: list[str] = []
        self.overlaps: list[tuple[str, ...]] = []
        self.order: list[str] = []  # who started an exchange, in order
        self.read: dict[str, bytes] = {}
        self.started = {who: threading.Event() for who in ("v2", "late", "lease")}

    def exchange(self, io: PortIO, who: str, hold: threading.Event | None = None) -> bytes:
        """Send ``Q<who>``; with ``hold``, keep the port until it is set, then read."""
        self.talking.append(who)
        self.order.append(who)
        if len(self.talking) > 1:
            self.overlaps.append(tuple(self.talking))
        try:
            io.write(f"Q{who}\n".encode())
            if who in self.started:
                self.started[who].set()
            if hold is not None:  # the device answers at once; the reply is read later
                assert hold.wait(10)
            self.read[who] = io.read_until(b"\n").strip()
            return self.read[who]
        finally:
            self.talking.remove(who)


def hold_port(port: SharedSerialPort, talk: Talk, until: threading.Event) -> threading.Thread:
    """A v2 thread that takes the port (its own transaction) and keeps it until ``until``."""
    v2 = threading.Thread(target=lambda: port.transaction(
        lambda io: talk.exchange(io, "v2", until), owner="v2", timeout=10))
    v2.start()
    assert talk.started["v2"].wait(10)
    return v2


def late_queued_or_ran(port: SharedSerialPort, talk: Talk) -> bool:
    """Whether the late caller's work reached the queue (or, wrongly, the device)."""
    wait_until(lambda: port.gate.queue_depth > 0 or talk.started["late"].is_set(),
               "the late caller queued (or, wrongly, ran)", timeout=10, every=0.002)
    return not talk.started["late"].is_set()


@pytest.mark.parametrize("how", ["transaction", "lease"])
def test_task_that_outlives_its_lease_queues(port: SharedSerialPort, how: str) -> None:
    talk = Talk()
    v2_done = threading.Event()

    async def late(lease_over: asyncio.Event) -> bytes:
        await lease_over.wait()
        if how == "lease":  # a lease of its own: it must wait for the port too
            async with port.lease(owner="late", timeout=10):
                return await port.atransaction(lambda io: talk.exchange(io, "late"),
                                               owner="late", timeout=10)
        return await port.atransaction(lambda io: talk.exchange(io, "late"), owner="late",
                                       timeout=10)

    async def main() -> tuple[bool, bytes]:
        lease_over = asyncio.Event()
        async with port.lease(owner="leaser"):
            task = asyncio.create_task(late(lease_over))  # copies the lease's context
        v2 = await asyncio.to_thread(hold_port, port, talk, v2_done)
        try:
            lease_over.set()
            queued = await asyncio.to_thread(late_queued_or_ran, port, talk)
        finally:
            v2_done.set()
            await asyncio.to_thread(v2.join, 10)
        return queued, await task

    queued, reply = asyncio.run(main())

    assert talk.overlaps == [], f"talked over each other; read {talk.read}"
    assert queued, "the task ran its transaction while the v2 thread held the port"
    assert (reply, talk.read["v2"]) == (b"Rlate", b"Rv2")
    assert port.query(b"Qafter\n", terminator=b"\n", timeout=2) == b"Rafter"


def test_thread_with_a_sync_lease_context_queues_after_it(port: SharedSerialPort) -> None:
    """A thread run in a copy of the lease's context (``copy_context().run``, what Python
    3.14's ``thread_inherit_context`` does for every thread) after the lease ended."""
    talk = Talk()
    lease_over, v2_done = threading.Event(), threading.Event()
    replies: list[bytes] = []

    def late() -> None:
        assert lease_over.wait(10)
        replies.append(port.transaction(lambda io: talk.exchange(io, "late"), owner="late",
                                        timeout=10))

    with port.lease(owner="leaser"):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(late,))
        thread.start()
    v2 = hold_port(port, talk, v2_done)
    try:
        lease_over.set()
        queued = late_queued_or_ran(port, talk)
    finally:
        v2_done.set()
        v2.join(10)
        thread.join(10)

    assert talk.overlaps == [], f"talked over each other; read {talk.read}"
    assert queued, "the thread ran its transaction while the v2 thread held the port"
    assert (replies, talk.read["v2"]) == ([b"Rlate"], b"Rv2")


def test_task_waits_its_turn_while_an_exited_lease_finishes(port: SharedSerialPort) -> None:
    """The lease exited with its transaction still running (cancelled): the port stays the
    lease's until it ends, then goes to whoever queued first, not to a task the lease left."""
    talk = Talk()
    finish = threading.Event()

    async def late(lease_over: asyncio.Event) -> bytes:
        await lease_over.wait()
        return await port.atransaction(lambda io: talk.exchange(io, "late"), owner="late",
                                       timeout=10)

    async def leaser(lease_over: asyncio.Event, late_tasks: list[asyncio.Task[bytes]]) -> None:
        async with port.lease(owner="leaser"):
            late_tasks.append(asyncio.create_task(late(lease_over)))
            await port.atransaction(lambda io: talk.exchange(io, "lease", finish),
                                    owner="leaser")

    async def main() -> bytes:
        lease_over = asyncio.Event()
        late_tasks: list[asyncio.Task[bytes]] = []
        holder = asyncio.create_task(leaser(lease_over, late_tasks))
        assert await asyncio.to_thread(talk.started["lease"].wait, 10)
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder  # the lease has exited; its transaction still runs
        v2 = threading.Thread(target=lambda: port.transaction(
            lambda io: talk.exchange(io, "v2"), owner="v2", timeout=10))
        v2.start()
        try:
            await asyncio.to_thread(wait_until, lambda: port.gate.queue_depth > 0,
                                    "the v2 thread queued", 10, 0.002)
            lease_over.set()
            await asyncio.to_thread(wait_until, lambda: port.gate.queue_depth > 1,
                                    "the late task queued behind the v2 thread (it went "
                                    "round the queue, as the lease's own)", 3, 0.002)
        finally:
            finish.set()
            await asyncio.to_thread(v2.join, 10)
        return await late_tasks[0]

    assert asyncio.run(main()) == b"Rlate"
    assert talk.overlaps == []
    assert talk.order == ["lease", "v2", "late"], "the late task overtook the queue"


def test_task_that_outlives_its_lease_takes_other_ports_in_any_order(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    """The ended lease's record no longer counts for the lock order either: taking a port
    that orders before the one it leased is no violation once the lease is over."""
    first, second = sorted((serial_mgr.port(pty_device().path) for _ in range(2)),
                           key=lambda p: p.gate.order_key)

    async def late(lease_over: asyncio.Event) -> bytes:
        await lease_over.wait()
        return await first.aquery(b"Qfirst\n", terminator=b"\n", timeout=5)

    async def main() -> bytes:
        lease_over = asyncio.Event()
        async with second.lease(owner="leaser"):
            task = asyncio.create_task(late(lease_over))
        lease_over.set()
        return await task

    assert asyncio.run(main()) == b"Rfirst"


def test_running_lease_job_keeps_its_nested_transactions_after_the_lease_exits(
        port: SharedSerialPort) -> None:
    """What the lease's still-running job does on the port after the lease exited is its own
    (it holds the port until it ends), not queued behind itself."""
    talk = Talk()
    finish = threading.Event()

    def job(io: PortIO) -> bytes:
        talk.exchange(io, "lease", finish)
        return port.transaction(lambda nested: talk.exchange(nested, "nested"), timeout=2)

    async def leaser() -> None:
        async with port.lease(owner="leaser"):
            await port.atransaction(job, owner="leaser")

    async def main() -> None:
        holder = asyncio.create_task(leaser())
        assert await asyncio.to_thread(talk.started["lease"].wait, 10)
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder

    try:
        asyncio.run(main())
    finally:
        finish.set()
    assert port.query(b"Qafter\n", terminator=b"\n", timeout=10) == b"Rafter"
    assert talk.read == {"lease": b"Rlease", "nested": b"Rnested"}
    assert talk.overlaps == []
