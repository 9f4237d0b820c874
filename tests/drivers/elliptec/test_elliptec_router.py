"""The bus router on its own: filing by address, wake-ups of both flavors, damaged lines.

A small in-memory port stands in for the serial line so each case controls exactly which
bytes arrive when; the same router runs against the simulators in the other test files.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from polling import wait_until

from daqhub.driver.bus import TRUNCATION_GAP_S, Asked
from daqhub_elliptec.frames import BadLine, Command, Frame
from daqhub_elliptec.router import BusRouter, Expectation

pytestmark = pytest.mark.timeout(20)


class FakeIO:
    """A port whose incoming bytes the test feeds; ``answer`` replies to each write.

    With ``vanish_when_drained`` set, a read that finds nothing left raises, as a read of a
    serial adapter pulled out of its socket does.
    """

    def __init__(self, answer: Callable[[bytes], bytes] | None = None) -> None:
        self.timeout: float | None = 0.5
        self.written: list[bytes] = []
        self.answer = answer
        self.vanish_when_drained = False
        self._cond = threading.Condition()
        self._buf = bytearray()

    @property
    def in_waiting(self) -> int:
        with self._cond:
            return len(self._buf)

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._buf += data
            self._cond.notify_all()

    def write(self, data: bytes) -> int:
        self.written.append(data)
        if self.answer is not None:
            self.feed(self.answer(data))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        with self._cond:
            out = bytes(self._buf[:size])
            del self._buf[:size]
            return out

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        deadline = time.monotonic() + (self.timeout or 0.0)
        with self._cond:
            if self.vanish_when_drained and not self._buf:
                raise OSError("device reports readiness to read but returned no data")
            while True:
                end = self._buf.find(expected)
                if end >= 0:
                    out = bytes(self._buf[:end + 1])
                    del self._buf[:end + 1]
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    out = bytes(self._buf)
                    self._buf.clear()
                    return out
                self._cond.wait(remaining)


def move(address: str = "0") -> Expectation:
    return Expectation(Command(address, "ma", "00008C00", "PO", deferred=True))


def query(address: str, mnemonic: str = "gp", reply: str = "PO") -> Expectation:
    return Expectation(Command(address, mnemonic, reply=reply))


def test_a_deferred_reply_read_during_another_devices_exchange_is_filed_for_its_owner() -> None:
    router = BusRouter("bus")
    io = FakeIO(lambda cmd: b"0PO00008C00\r\n1PO0000001F\r\n" if cmd == b"1gp\r" else b"")
    pending = move("0")
    router.send(io, pending.command)
    reply = router.exchange(io, query("1"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.text == "1PO0000001F"
    line, _, reading = router.poll(pending)
    assert isinstance(line, Frame) and line.text == "0PO00008C00"
    assert not reading
    assert io.written == [b"0ma00008C00\r", b"1gp\r"]


def test_a_thread_waiting_for_its_address_wakes_when_its_reply_is_filed() -> None:
    router = BusRouter("bus")
    io = FakeIO(lambda cmd: b"1PO00000000\r\n")
    pending = move("0")
    _, version, _ = router.poll(pending)
    woke = threading.Event()

    def waiter() -> None:
        router.wait(version, 10.0)
        woke.set()

    t = threading.Thread(target=waiter)
    t.start()
    io.feed(b"0PO00008C00\r\n")
    router.exchange(io, query("1"), reply_timeout=1.0)
    assert woke.wait(5.0)
    t.join(5.0)
    line, _, _ = router.poll(pending)
    assert isinstance(line, Frame) and line.address == "0"


def test_a_coroutine_waiting_for_its_address_wakes_when_a_thread_files_its_reply() -> None:
    router = BusRouter("bus")
    io = FakeIO(lambda cmd: b"1PO00000000\r\n")
    pending = move("0")

    async def main() -> float:
        _, version, _ = router.poll(pending)
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        io.feed(b"0PO00008C00\r\n")
        filer = loop.run_in_executor(None, router.exchange, io, query("1"), 1.0)
        await router.wait_async(version, 10.0)
        await filer
        return time.monotonic() - t0

    assert asyncio.run(main()) < 5.0
    line, _, _ = router.poll(pending)
    assert isinstance(line, Frame) and line.text == "0PO00008C00"


def test_a_truncated_reply_reaches_its_waiter_as_damaged_instead_of_a_timeout() -> None:
    router = BusRouter("bus")
    io = FakeIO(lambda cmd: b"0PO0000")
    t0 = time.monotonic()
    reply = router.exchange(io, query("0"), reply_timeout=5.0)
    assert isinstance(reply, BadLine) and reply.reason == "truncated" and reply.address == "0"
    assert time.monotonic() - t0 < TRUNCATION_GAP_S + 1.0
    assert router.stats["truncated"] == 1


def test_garbage_alone_is_the_commands_damaged_reply() -> None:
    router = BusRouter("bus")
    io = FakeIO(lambda cmd: b"\x13\x37junk\r\n")
    reply = router.exchange(io, query("0"), reply_timeout=1.0)
    assert isinstance(reply, BadLine) and reply.reason == "garbled"


def test_garbage_followed_by_the_reply_gives_the_reply() -> None:
    router = BusRouter("bus")
    io = FakeIO(lambda cmd: b"\x13\x37junk\r\n0PO00000010\r\n")
    reply = router.exchange(io, query("0"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "00000010"
    [damage] = router.damage_since(0.0)
    assert damage.startswith("garbled reply") and "junk" in damage


def test_a_late_reply_is_not_taken_as_the_answer_to_the_next_command() -> None:
    router = BusRouter("bus")
    io = FakeIO()
    assert router.exchange(io, query("0", "gv", "GV"), reply_timeout=0.05) is None
    io.feed(b"0GV32\r\n")  # the answer arrives after its waiter gave up
    io.answer = lambda cmd: b"0GV64\r\n"
    reply = router.exchange(io, query("0", "gv", "GV"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "64"
    assert router.stats["stale"] == 1


def test_a_late_reply_that_comes_after_the_next_command_is_not_its_answer() -> None:
    router = BusRouter("bus")
    io = FakeIO()
    assert router.exchange(io, query("0"), reply_timeout=0.05) is None
    # the old reply arrives only once the next command is on the wire, then the new one
    io.answer = lambda cmd: b"0PO00000000\r\n0PO00002300\r\n"
    reply = router.exchange(io, query("0"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "00002300"
    assert router.stats["stale"] == 1


def test_a_late_move_end_is_not_the_end_of_the_next_move() -> None:
    router = BusRouter("bus")
    io = FakeIO()
    assert router.exchange(io, query("0"), reply_timeout=0.05) is None
    pending = move("0")
    router.send(io, pending.command)
    io.feed(b"0PO00000000\r\n")  # the late answer to gp, while the module moves to 90 deg
    assert router.pump(io, pending, budget=0.2, others_waiting=lambda: 0) is None
    io.feed(b"0PO00008C00\r\n")
    line = router.pump(io, pending, budget=1.0, others_waiting=lambda: 0)
    assert isinstance(line, Frame) and line.data == "00008C00"


def test_a_reply_owed_for_ten_reply_timeouts_is_taken_as_lost() -> None:
    router = BusRouter("bus")
    io = FakeIO()
    assert router.exchange(io, query("0"), reply_timeout=0.01) is None
    assert router.owed("0") is not None
    wait_until(lambda: router.owed("0") is None, "the debt to expire", timeout=5)
    io.answer = lambda cmd: b"0PO00002300\r\n"
    reply = router.exchange(io, query("0"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "00002300"


def test_an_in_ends_what_its_address_owed() -> None:
    """A module answers in order, and IN answers ``in`` alone: what it owed came before."""
    router = BusRouter("bus")
    io = FakeIO()
    assert router.exchange(io, query("0"), reply_timeout=0.01) is None
    assert router.owed("0") is not None
    io.answer = lambda cmd: b"0IN0E1140051720231701016800023000\r\n"
    assert isinstance(router.exchange(io, query("0", "in", "IN"), reply_timeout=1.0), Frame)
    assert router.owed("0") is None
    io.answer = lambda cmd: b"0PO00002300\r\n"  # so the next answer is taken, not absorbed
    reply = router.exchange(io, query("0"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "00002300"


def test_an_in_given_up_on_owes_nothing() -> None:
    """IN answers ``in`` alone: a late one harms nobody, and ``in`` is the driver's sync."""
    router = BusRouter("bus")
    assert router.exchange(FakeIO(), query("0", "in", "IN"), reply_timeout=0.01) is None
    assert router.owed("0") is None


def test_an_exchange_lets_go_of_the_port_when_others_queue_and_its_reply_is_late() -> None:
    router = BusRouter("bus")
    io = FakeIO()
    t0 = time.monotonic()
    asked = router.exchange(io, query("0"), reply_timeout=5.0, others_waiting=lambda: 1)
    assert isinstance(asked, Asked) and time.monotonic() - t0 < 1.0
    assert io.written == [b"0gp\r"]
    io.feed(b"0PO00002300\r\n")  # read later by another transaction, or the waiter's pump
    line = router.pump(io, asked.expect, budget=1.0, others_waiting=lambda: 0, asked=asked)
    assert isinstance(line, Frame) and line.data == "00002300"


def test_one_piece_of_garbage_is_one_waiting_exchanges_not_every_ones() -> None:
    """Two exchanges waiting at once (each let go of the port): one noise line was returned
    to both as their damaged reply, neither owed its reply, and module 2's real reply,
    coming later, answered its next ``gp``."""
    router, io = BusRouter("bus"), FakeIO()
    busy = lambda: 1  # noqa: E731 (someone queued: the exchange lets go after a read slice)
    first = router.exchange(io, query("1"), 1.0, True, busy, 0.25)
    second = router.exchange(io, query("2"), 1.0, True, busy, 0.25)
    assert isinstance(first, Asked) and isinstance(second, Asked)
    io.feed(b"\x00\x7f\r\n")  # one noise line, naming no address
    router.pump(io, query("0"), 0.06, busy)  # read by another waiter
    garbage = router.give_up(first)
    assert isinstance(garbage, BadLine) and garbage.reason == "garbled"
    assert router.give_up(second) is None and router.owed("2") is not None
    io.answer = lambda cmd: b"2PO0000AAAA\r\n"  # the late reply, as the next gp is written
    late_then_nothing = router.exchange(io, query("2"), 0.3)
    if isinstance(late_then_nothing, Asked):
        late_then_nothing = router.pump(io, query("2"), 0.4, lambda: 0, late_then_nothing)
    assert late_then_nothing is None and router.stats["stale"] == 1


def test_a_reply_filed_as_its_exchange_gives_up_is_its_answer_not_a_debt() -> None:
    """Between an exchange's last look and its giving up, another transaction may file its
    reply: it was kept, the address owed it too, and the debt took the next answer."""
    router, io = BusRouter("bus"), FakeIO()
    asked = router.exchange(io, query("1"), 0.05, True, lambda: 1, 0.25)
    assert isinstance(asked, Asked)
    io.feed(b"1PO00000010\r\n")
    router.pump(io, query("0"), 0.06, lambda: 0)  # another waiter's read files it
    line = router.give_up(asked)
    assert isinstance(line, Frame) and line.data == "00000010"
    assert router.owed("1") is None


def test_a_truncated_head_glued_to_another_modules_reply_reaches_both_waiters() -> None:
    router = BusRouter("bus")
    io = FakeIO()
    pending = move("0")
    router.send(io, pending.command)
    io.answer = lambda cmd: b"0P1PO0000001F\r\n"  # address 0's end, cut to 2 bytes
    reply = router.exchange(io, query("1"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.text == "1PO0000001F"
    line, _, _ = router.poll(pending)
    assert isinstance(line, BadLine) and line.reason == "truncated" and line.raw == b"0P"
    assert router.stats["truncated"] == 1 and router.damage_since(0.0) == [
        "truncated reply b'0P'"]


def test_a_pump_returns_early_when_other_transactions_queue() -> None:
    router = BusRouter("bus")
    io = FakeIO()
    t0 = time.monotonic()
    assert router.pump(io, move("0"), budget=5.0, others_waiting=lambda: 1) is None
    assert time.monotonic() - t0 < 1.0


def test_an_address_belongs_to_one_instrument() -> None:
    router = BusRouter("bus")
    router.claim("0", "rot")
    router.claim("0", "rot")  # the same instrument again (a restarted actor)
    with pytest.raises(ValueError, match="already used by instrument 'rot'"):
        router.claim("0", "other")
    router.release("0", "rot")
    router.claim("0", "other")
    assert router.owner_of("0") == "other"


def test_a_reply_cut_off_by_a_short_reply_timeout_is_reported_as_truncated() -> None:
    router = BusRouter("bus")
    io = FakeIO(lambda cmd: b"0PO00")
    reply = router.exchange(io, query("0"), reply_timeout=0.05)
    assert isinstance(reply, BadLine) and reply.reason == "truncated"
    io.feed(b"008C00\r\n")  # the rest arrives late: filed, then dropped before the next command
    io.answer = lambda cmd: b"0PO00000001\r\n"
    reply = router.exchange(io, query("0"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "00000001"
    assert router.stats["stale"] == 1


def test_a_reply_cut_off_when_its_waiter_gives_up_costs_only_that_command() -> None:
    router = BusRouter("bus")
    io = FakeIO(lambda cmd: b"0PO00")
    reply = router.exchange(io, query("0"), reply_timeout=0.05)
    assert isinstance(reply, BadLine) and reply.raw == b"0PO00"
    io.answer = lambda cmd: b"0PO00002300\r\n"  # the module answers the next one in full
    reply = router.exchange(io, query("0"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "00002300"
    assert router.stats["stale"] == 1 and router.stats["truncated"] == 1
    assert router.poll(query("0"))[0] is None  # the stale piece was not filed either


def test_the_rest_of_a_reply_given_up_on_is_not_the_next_commands_answer() -> None:
    router = BusRouter("bus")
    io = FakeIO(lambda cmd: b"0PO00")
    assert isinstance(router.exchange(io, query("0"), reply_timeout=0.05), BadLine)
    io.answer = lambda cmd: b"008C00\r\n0PO00000001\r\n"  # the old rest, then the new reply
    reply = router.exchange(io, query("0"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "00000001"
    assert router.stats["stale"] == 1


def test_a_deferred_reply_split_around_another_addresses_command_is_joined() -> None:
    router = BusRouter("bus")
    io = FakeIO()
    pending = move("1")
    router.send(io, pending.command)
    io.feed(b"1PO0000")  # the move's end is half-way in when address 0 is asked
    io.answer = lambda cmd: b"001F\r\n0PO00000002\r\n"
    reply = router.exchange(io, query("0"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "00000002"
    line, _, _ = router.poll(pending)
    assert isinstance(line, Frame) and line.text == "1PO0000001F"
    assert router.stats["stale"] == 0


def test_a_pending_moves_end_split_around_a_stop_of_its_address_is_joined() -> None:
    router = BusRouter("bus")
    io = FakeIO()
    jog = Expectation(Command("0", "fw", reply="PO", deferred=True))
    router.send(io, jog.command)
    io.feed(b"0PO0000")
    io.answer = lambda cmd: b"8C00\r\n0GS00\r\n"
    reply = router.exchange(io, query("0", "st", "GS"), reply_timeout=1.0, drop_stale=False)
    assert isinstance(reply, Frame) and reply.status == 0
    line, _, _ = router.poll(jog)
    assert isinstance(line, Frame) and line.text == "0PO00008C00"


def test_bytes_read_before_the_port_failed_never_join_the_reopened_ports_lines() -> None:
    router = BusRouter("bus")
    io = FakeIO(lambda cmd: b"0PO00")
    io.vanish_when_drained = True  # unplugged half-way through the reply
    with pytest.raises(OSError):
        router.exchange(io, query("0"), reply_timeout=5.0)
    assert router.stats["stale"] == 1 and router.stats["truncated"] == 1
    io.vanish_when_drained = False  # reopened
    io.answer = lambda cmd: b"1PO00000010\r\n"
    reply = router.exchange(io, query("1"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "00000010"
    assert router.poll(query("0"))[0] is None  # no damaged line left for address 0
    io.answer = lambda cmd: b"0PO00002300\r\n"
    reply = router.exchange(io, query("0"), reply_timeout=1.0)
    assert isinstance(reply, Frame) and reply.data == "00002300"
