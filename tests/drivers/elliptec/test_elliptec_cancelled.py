"""A v4 Elliptec motion call cancelled (``asyncio.wait_for``, a call past ``call_timeout_s``)
while its transaction still runs on the port's worker: the move's end must still reach
whoever waits for it next, and never answer another command.

The router's transaction function is held once it has done its I/O (taken the move's end,
or written the move), so the cancel lands while the transaction runs, every time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from daqhub.driver.bus import BusRouter

pytestmark = pytest.mark.timeout(30)


def hold_after(monkeypatch: pytest.MonkeyPatch, router: BusRouter, name: str,
               release: threading.Event) -> threading.Event:
    """Hold the router's transaction function ``name`` (``pump``, ``send``) the first time it
    has taken a line or written, until ``release``; the returned event is set then."""
    original = getattr(router, name)
    done = threading.Event()

    def held(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not done.is_set() and (name == "send" or result is not None):
            done.set()
            release.wait(10.0)
        return result

    monkeypatch.setattr(router, name, held)
    return done


async def cancel_when(task: asyncio.Task[Any], done: threading.Event,
                      release: threading.Event) -> None:
    """Cancel ``task`` once ``done`` is set (its transaction held), then let that go on."""
    await asyncio.to_thread(done.wait, 10.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()


def test_a_wait_cancelled_while_it_reads_the_move_s_end_leaves_it_for_the_next_wait(
        build: Callable[..., Any], bus_url: Callable[..., str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cancelled wait's read of the bus took the ``PO``: the next wait used to fail with
    "did not report its end (PO) within 3.0 s" though the move had ended."""
    rot = build(bus_url("0:ELL14"), "elliptec.ell14", "v4", "rot", address=0,
                move_timeout=3.0)
    release = threading.Event()

    async def scenario() -> float:
        await rot.start()
        await rot.move_absolute(200)
        took = hold_after(monkeypatch, rot.session.router, "pump", release)
        await cancel_when(asyncio.create_task(rot.wait_until_done(10)), took, release)
        return float(await rot.wait_until_done(10))

    try:
        assert asyncio.run(scenario()) == pytest.approx(200.0, abs=0.01)
    finally:
        release.set()


@pytest.mark.parametrize("then", ["wait_until_done", "another move"])
def test_a_move_cancelled_once_written_is_waited_out_and_its_position_read_again(
        build: Callable[..., Any], bus_url: Callable[..., str],
        monkeypatch: pytest.MonkeyPatch, then: str) -> None:
    """``move_absolute(200)`` cancelled after its command went out: the module moves (0.5 s).
    Then ``wait_until_done`` used to return the position from before (0.0) at once, and a
    move to 90 was answered busy, never ran, and "ended" with the first move's end (200)."""
    rot = build(bus_url("0:ELL14", speed_scale="1"), "elliptec.ell14", "v4", "rot",
                address=0)
    release = threading.Event()

    async def scenario() -> float:
        await rot.start()
        written = hold_after(monkeypatch, rot.session.router, "send", release)
        await cancel_when(asyncio.create_task(rot.move_absolute(200)), written, release)
        if then == "another move":
            await rot.move_absolute(90)
        return float(await rot.wait_until_done(10))

    try:
        where = asyncio.run(scenario())
    finally:
        release.set()
    assert where == pytest.approx(200.0 if then == "wait_until_done" else 90.0, abs=0.01)
