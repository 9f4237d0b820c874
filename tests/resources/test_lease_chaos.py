"""Randomised multi-resource leases from threads and coroutines: no hang, honest timeouts,
and every planted out-of-order acquisition caught by the checker."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from resources_fakes import PtyDevice

from daqhub.resources import (
    LockOrderChecker,
    LockOrderError,
    ResourceTimeoutError,
    SerialPortManager,
    VisaSessionManager,
    lease,
)

pytestmark = pytest.mark.timeout(40)

THREADS = 6
COROUTINES = 6
BUDGET_S = 2.5
MIN_LEASES = 1000


class Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.leases = 0
        self.timeouts: list[ResourceTimeoutError] = []
        self.planted = 0
        self.caught = 0
        self.wrong: list[str] = []
        self.unexpected: list[BaseException] = []

    def add(self, **counts: int) -> None:
        with self.lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)


def test_random_leases_never_hang_and_timeouts_name_a_holder(
        checker: LockOrderChecker, pty_device: Callable[..., PtyDevice], sim_backend: str) -> None:
    serial_mgr = SerialPortManager(checker=checker)
    visa_mgr = VisaSessionManager(checker=checker)
    try:
        ports = [serial_mgr.port(pty_device().path, baudrate=115200) for _ in range(2)]
        visas = [visa_mgr.resource(name, backend=sim_backend, read_termination="\n",
                                   write_termination="\n")
                 for name in ("GPIB0::5::INSTR", "GPIB0::7::INSTR")]
        resources: list[Any] = [*ports, *visas]
        first = min(resources, key=lambda r: r.gate.order_key)
        others = [r for r in resources if r is not first]
        owners = {f"t{k}" for k in range(THREADS)} | {f"a{k}" for k in range(COROUTINES)}
        log = Log()
        end = time.monotonic() + BUDGET_S

        def io(res: Any, tag: str) -> Any:
            """One transaction, sync, on whichever resource: replies name their request."""
            if res in ports:
                return res.query(b"Q" + tag.encode() + b"\n", terminator=b"\n",
                                 timeout=0.5) == b"R" + tag.encode()
            n = sum(map(ord, tag)) % 64
            return res.query(f"Q{n}?", timeout=0.5) == f"R{n}"

        async def aio(res: Any, tag: str) -> Any:
            if res in ports:
                return await res.aquery(b"Q" + tag.encode() + b"\n", terminator=b"\n",
                                        timeout=0.5) == b"R" + tag.encode()
            n = sum(map(ord, tag)) % 64
            return await res.aquery(f"Q{n}?", timeout=0.5) == f"R{n}"

        def v2(owner: str, seed: int) -> None:
            rng = random.Random(seed)
            count = 0
            while time.monotonic() < end:
                count += 1
                tag = f"{owner}-{count}"
                try:
                    if rng.random() < 0.05:  # planted: a higher resource, then the first
                        log.add(planted=1)
                        with rng.choice(others).lease(owner=owner, timeout=0.3):
                            try:
                                first.transaction(lambda _io: None, owner=owner)
                            except LockOrderError:
                                log.add(caught=1)
                        continue
                    chosen = rng.sample(resources, rng.randint(1, len(resources)))
                    with lease(chosen, owner=owner, timeout=rng.uniform(0.01, 0.2),
                               urgent=rng.random() < 0.1):
                        if not io(rng.choice(chosen), tag):
                            log.wrong.append(tag)
                        if rng.random() < 0.2:
                            time.sleep(rng.uniform(0, 0.003))  # work while holding
                    log.add(leases=1)
                except ResourceTimeoutError as exc:
                    with log.lock:
                        log.timeouts.append(exc)
                except Exception as exc:
                    log.unexpected.append(exc)

        async def v4(owner: str, seed: int) -> None:
            rng = random.Random(seed)
            count = 0
            while time.monotonic() < end:
                count += 1
                tag = f"{owner}-{count}"
                try:
                    if rng.random() < 0.05:
                        log.add(planted=1)
                        async with rng.choice(others).lease(owner=owner, timeout=0.3):
                            try:
                                await first.atransaction(lambda _io: None, owner=owner)
                            except LockOrderError:
                                log.add(caught=1)
                        continue
                    chosen = rng.sample(resources, rng.randint(1, len(resources)))
                    async with lease(chosen, owner=owner, timeout=rng.uniform(0.01, 0.2),
                                     urgent=rng.random() < 0.1):
                        if not await aio(rng.choice(chosen), tag):
                            log.wrong.append(tag)
                        if rng.random() < 0.2:
                            await asyncio.sleep(rng.uniform(0, 0.003))
                    log.add(leases=1)
                except ResourceTimeoutError as exc:
                    log.timeouts.append(exc)
                except Exception as exc:
                    log.unexpected.append(exc)

        async def all_v4() -> None:
            await asyncio.wait_for(
                asyncio.gather(*(v4(f"a{k}", 100 + k) for k in range(COROUTINES))),
                BUDGET_S + 10)

        threads = [threading.Thread(target=v2, args=(f"t{k}", k), daemon=True)
                   for k in range(THREADS)]
        for t in threads:
            t.start()
        asyncio.run(all_v4())
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads), "a thread hung"

        assert log.unexpected == []
        assert log.wrong == []
        assert log.leases >= MIN_LEASES, log.leases
        assert log.planted > 0 and log.caught == log.planted == checker.violations
        for exc in log.timeouts:
            assert exc.holder, str(exc)  # every timeout names who held the resource
            assert any(f"'{o}'" in exc.holder for o in owners), exc.holder
            assert "for " in exc.holder and "holding [" in exc.holder
        for res in resources:  # everything was given back
            assert res.gate.queue_depth == 0 and res.gate.holder_description() is None
    finally:
        assert serial_mgr.close_all(5) == []
        assert visa_mgr.close_all(5) == []
