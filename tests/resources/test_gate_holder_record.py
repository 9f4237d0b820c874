"""Timeouts behind an inline sync transaction name the transaction that holds the gate now.

The gate keeps one reusable record for inline holders (a measured saving on every V2
transaction); these tests pin down that reuse never makes a message name an earlier holder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from daqhub.resources import ResourceTimeoutError, SharedVisaResource, VisaSessionManager

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def res(visa_mgr: VisaSessionManager, sim_backend: str) -> SharedVisaResource:
    return visa_mgr.resource("GPIB0::5::INSTR", backend=sim_backend, read_termination="\n",
                             write_termination="\n")


@contextmanager
def held_inline(res: SharedVisaResource, owner: str, command: str) -> Iterator[None]:
    """``owner``'s thread sits inside a transaction (its query sent) until the block ends."""
    inside = threading.Event()
    leave = threading.Event()
    replies: list[str] = []

    def slow(session: Any) -> str:
        reply = str(session.query(command))
        inside.set()
        leave.wait(10)
        return reply

    def run() -> None:
        replies.append(res.transaction(slow, owner=owner, what=("query", command)))

    t = threading.Thread(target=run, name=owner)
    t.start()
    try:
        assert inside.wait(5)
        yield
    finally:
        leave.set()
        t.join(5)
    assert not t.is_alive()
    assert replies == [f"R{command[1:-1]}"]


def test_timeout_names_the_current_inline_holder_not_an_earlier_one(
        res: SharedVisaResource) -> None:
    assert res.query("Q1?", owner="warm-up") == "R1"
    for owner, command in (("first", "Q2?"), ("second", "Q3?")):
        with held_inline(res, owner, command):
            with pytest.raises(ResourceTimeoutError) as caught:
                res.query("Q4?", owner="waiter", timeout=0.2)
            err = caught.value
            assert err.owner == "waiter" and err.waited_s >= 0.2
            assert err.holder is not None and err.holder.startswith(f"{owner!r} for ")
            assert f"(query {command!r})" in err.holder
            assert f"holding [{res.gate.name}]" in err.holder
            described = res.gate.holder_description()
            assert described is not None and described.startswith(f"{owner!r} for ")
    assert res.gate.holder_description() is None
    assert res.query("Q5?", owner="after") == "R5"  # the gate is free again
    stats = res.stats()
    assert stats["timeouts"] == 2 and stats["errors"] == 0


def test_inline_holder_seen_by_a_nested_call_on_the_same_resource(
        res: SharedVisaResource) -> None:
    """A transaction that calls its own resource again runs it inline instead of deadlocking."""
    def outer(session: Any) -> tuple[str, str]:
        return str(session.query("Q6?")), res.query("Q7?", owner="nested", timeout=0.5)

    assert res.transaction(outer, owner="outer") == ("R6", "R7")
    assert res.gate.holder_description() is None


def test_the_gate_counts_inline_leased_and_failed_transactions(res: SharedVisaResource) -> None:
    before = res.stats()
    assert res.query("Q1?", owner="inline") == "R1"
    with res.lease(owner="scan"):  # transactions inside a lease are counted too
        assert [res.query(f"Q{n}?", owner="scan") for n in (2, 3)] == ["R2", "R3"]

    def broken(session: Any) -> None:
        raise ValueError("driver bug")

    with pytest.raises(ValueError, match="driver bug"):
        res.transaction(broken, owner="inline")
    after = res.stats()
    assert after["transactions"] - before["transactions"] == 3
    assert after["errors"] - before["errors"] == 1
    assert after["io_max_s"] > 0 and after["io_mean_s"] > 0
