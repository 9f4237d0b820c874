"""A module re-addressed at runtime is found again when its instrument reconnects, and a
move's end cut short behind line noise fails the move at once instead of after its timeout.

A reconnect (a USB blip, an actor restart) builds a new session through the instrument's
factory, on the same shared port, as these tests do (``core/runtime/v2.py``, ``_supervise``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from elliptec_scripted import call

from daqhub.driver import DriverTimeoutError
from daqhub.instrument import DriverError
from daqhub_elliptec.frames import BadLine, Frame, parse_line, truncated
from daqhub_sims import registry

pytestmark = pytest.mark.timeout(30)

FLAVORS = ("v2", "v4")
#: ``daqhub sim serve``'s default garbage (``--garbage-every``)
NOISE = b"\xfe\x00~\x81"


def reconnected(build: Callable[..., Any], url: str, flavor: str, old: Any) -> Any:
    """``old`` closed and a new session of the same instrument made, as a reconnect does."""
    call(old, flavor, "close")
    return build(url, "elliptec.ell14", flavor, "rot2", address=2)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_reconnect_after_change_address_finds_the_module_at_its_new_address(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    url = bus_url("0:ELL14,2:ELL14")
    rot2 = build(url, "elliptec.ell14", flavor, "rot2", address=2)
    call(rot2, flavor, "connect")
    assert call(rot2, flavor, "change_address", 5) == "5"
    rot2 = reconnected(build, url, flavor, rot2)
    call(rot2, flavor, "connect")  # was: "no reply from address 2", for the rest of the run
    assert call(rot2, flavor, "identity")["address"] == "5"
    assert call(rot2, flavor, "settings")["address"] == "5"  # what settings records store
    call(rot2, flavor, "move_absolute", 40)
    assert call(rot2, flavor, "wait_until_done", 5) == pytest.approx(40.0, abs=0.01)
    assert registry.endpoint(url).device.unit("5").model.name == "ELL14"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_module_lost_after_change_address_is_said_to_have_been_re_addressed(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    """A module power-cycled without save_user_data answers at its old address again."""
    url = bus_url("0:ELL14,2:ELL14")
    rot2 = build(url, "elliptec.ell14", flavor, "rot2", address=2, reply_timeout=0.2)
    call(rot2, flavor, "connect")
    call(rot2, flavor, "change_address", 5)
    with registry.endpoint(url).lock:
        registry.endpoint(url).device.power_cycle()
    with pytest.raises(DriverTimeoutError) as err:
        call(rot2, flavor, "position")
    assert "no reply from address 5" in err.value.message
    assert "set by change_address in this session; the lab file says 2" in err.value.message


def test_a_cut_reply_behind_line_noise_belongs_to_the_address_it_names() -> None:
    bad = truncated(NOISE + b"0P")
    assert bad.address == "0" and bad.reason == "truncated"
    head, reply = parse_line(NOISE + b"0P" + b"1PO0000001F\r\n")
    assert isinstance(head, BadLine) and head.address == "0" and head.reason == "truncated"
    assert isinstance(reply, Frame) and reply.address == "1"
    assert truncated(NOISE).address is None  # noise alone names nobody


def test_a_damaged_reply_s_own_data_names_no_other_address() -> None:
    """Only noise is skipped before a reply start: ``0pO00002EAB`` (module 0's reply, one
    mnemonic byte damaged) was filed to address 2 ('2E' in its data), whose exchange then
    took the garbage while module 0's waited out its timeout."""
    for raw in (b"0pO00002EAB", b"O00001F"):
        assert truncated(raw).address is None, raw
        assert [getattr(line, "address", "?") for line in parse_line(raw + b"\r\n")] == [None]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_move_end_cut_short_behind_noise_fails_the_move_at_once(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    url = bus_url("0:ELL14")
    rot = build(url, "elliptec.ell14", flavor, "rot", address=0, move_timeout=5)
    call(rot, flavor, "connect")
    faults = registry.endpoint(url).faults
    call(rot, flavor, "move_absolute", 90)
    faults.truncate_next(2)  # the move's PO arrives as "0P" ...
    faults.inject_garbage(NOISE)  # ... behind noise, as `sim serve --garbage-every` puts it
    with pytest.raises(DriverError) as err:
        call(rot, flavor, "wait_until_done", 10)
    assert not isinstance(err.value, DriverTimeoutError), err.value.message
    assert f"truncated reply {NOISE + b'0P'!r} from address 0" in err.value.message
    assert err.value.command == "0ma00008C00"
    assert call(rot, flavor, "position") == pytest.approx(90.0)
