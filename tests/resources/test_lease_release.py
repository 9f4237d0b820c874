"""An async lease that exits while its transaction still runs on the worker keeps the gate.

The transaction is never cut short (its coroutine was cancelled, or its wait overran), so
the lease must not hand the port to anyone until it ends: a V2 thread querying meanwhile
would talk to the device mid-exchange, and each side would read the other's reply.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from polling import wait_until
from resources_fakes import PtyDevice

from daqhub.resources import (
    PortIO,
    ResourceTimeoutError,
    SerialPortManager,
    SharedSerialPort,
    TransactionOverrunError,
)

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def port(serial_mgr: SerialPortManager,
         pty_device: Callable[..., PtyDevice]) -> SharedSerialPort:
    return serial_mgr.port(pty_device().path)


@pytest.mark.parametrize("how", ["cancelled", "overrun"])
def test_lease_keeps_the_port_until_its_running_transaction_ends(
        port: SharedSerialPort, how: str) -> None:
    started, finish = threading.Event(), threading.Event()
    talking: list[str] = []  # who is exchanging with the device right now
    overlaps: list[tuple[str, ...]] = []
    axis1_read: list[bytes] = []

    def exchange(io: PortIO, who: str, wait: threading.Event | None = None) -> bytes:
        talking.append(who)
        if len(talking) > 1:
            overlaps.append(tuple(talking))
        try:
            io.write(f"Q{who}\n".encode())
            if wait is not None:  # the device answers at once; the reply is read later
                started.set()
                assert wait.wait(10)
            return io.read_until(b"\n").strip()
        finally:
            talking.remove(who)

    def axis1(io: PortIO) -> bytes:
        axis1_read.append(exchange(io, "axis1", finish))
        return axis1_read[-1]

    async def actor() -> None:
        async with port.lease(owner="v4-axis1"):
            if how == "overrun":
                with pytest.raises(TransactionOverrunError, match="still running"):
                    await port.atransaction(axis1, owner="v4-axis1", timeout=0.1)
            else:
                await port.atransaction(axis1, owner="v4-axis1")

    async def main() -> None:
        task = asyncio.create_task(actor())
        assert await asyncio.to_thread(started.wait, 10)
        if how == "cancelled":
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            await task

    try:
        asyncio.run(main())  # the lease has exited; axis 1's reply is still unread
        axis2: list[bytes] = []
        v2 = threading.Thread(target=lambda: axis2.append(
            port.transaction(lambda io: exchange(io, "axis2"), owner="v2-axis2", timeout=10)))
        v2.start()
        wait_until(lambda: port.gate.queue_depth > 0 or not v2.is_alive(),
                   "the v2 query queued (or, wrongly, ran)", timeout=10, every=0.002)
        assert v2.is_alive(), f"v2 ran beside the lease's transaction and read {axis2}"
        with pytest.raises(ResourceTimeoutError, match="held by 'v4-axis1' .*"
                           "lease exited; its transaction still running"):
            port.query(b"Qprobe\n", terminator=b"\n", owner="probe", timeout=0.1)
    finally:
        finish.set()
    v2.join(10)

    assert axis1_read == [b"Raxis1"]
    assert axis2 == [b"Raxis2"]
    assert overlaps == []
    assert port.query(b"Qafter\n", terminator=b"\n", timeout=2) == b"Rafter"
