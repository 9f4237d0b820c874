"""One simulated Elliptec bus (``sim://`` from daqhub-sims) shared by V2 threads and V4
coroutines addressing different modules: every reply comes back to the one who asked."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from daqhub.resources import LockOrderChecker, SerialPortManager

pytest.importorskip("daqhub_sims.urlhandler.protocol_sim")
pytestmark = pytest.mark.timeout(20)

BUS = "sim://elliptec?devices=0:ELL14,1:ELL9"


def test_both_flavors_share_one_bus(checker: LockOrderChecker) -> None:
    mgr = SerialPortManager(url_packages=["daqhub_sims.urlhandler"], checker=checker)
    try:
        rotator_port = mgr.port(BUS, baudrate=9600, read_timeout=1.0)
        slider_port = mgr.port(BUS, baudrate=9600, read_timeout=1.0)
        assert rotator_port is slider_port  # one bus, one lock, whichever flavor asks
        bus = rotator_port
        end = time.monotonic() + 0.5
        wrong: list[bytes] = []
        counts = {"v2": 0, "v4": 0}
        lock = threading.Lock()

        def v2() -> None:  # the rotator at address 0
            while time.monotonic() < end:
                for command, prefix in ((b"0gs", b"0GS"), (b"0gp", b"0PO")):
                    reply = bus.query(command, terminator=b"\r\n", owner="rotator")
                    with lock:
                        counts["v2"] += 1
                        if not reply.startswith(prefix):
                            wrong.append(reply)

        async def v4() -> None:  # the slider at address 1
            while time.monotonic() < end:
                for command, prefix in ((b"1gs", b"1GS"), (b"1in", b"1IN09")):
                    reply = await bus.aquery(command, terminator=b"\r\n", owner="slider")
                    counts["v4"] += 1
                    if not reply.startswith(prefix):
                        wrong.append(reply)

        async def all_v4() -> None:
            await asyncio.gather(*(v4() for _ in range(4)))

        threads = [threading.Thread(target=v2) for _ in range(4)]
        for t in threads:
            t.start()
        asyncio.run(all_v4())
        for t in threads:
            t.join(10)
        assert wrong == []
        assert counts["v2"] > 0 and counts["v4"] > 0
        assert bus.stats()["transactions"] == counts["v2"] + counts["v4"]
    finally:
        assert mgr.close_all(5) == []
