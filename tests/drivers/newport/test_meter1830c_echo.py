"""1830-C: echo off at connect, whatever echo state the meter is found in.

Scripted byte exchanges written from the manual's text (the protocol reference, and the sister
2832-C's RS-232 echo: every received character is sent back, the line end as CR LF; replies
end with LF, CR LF in echo mode; set commands answer nothing and errors only set status bits).
The driver sends ``E0`` and reads the status byte: a meter in echo mode puts its echo of
``E0`` before that reply.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from daqhub.measurement import Scalar
from daqhub.plugins.converters import batch_to_rows
from daqhub_sims import registry
from daqhub_sims.scripted import ScriptedPort, scripted_instrument

pytestmark = pytest.mark.timeout(20)
FLAVORS = ("v2", "v4")

AFTER_ECHO_OFF = [(b"C\n", b""), (b"U?\n", b"1\n"), (b"G?\n", b"1\n"), (b"U1\n", b""),
                  (b"Q?\n", b"0\n")]
POLL = [(b"Q?\n", b"128\n"), (b"D?\n", b"+.11E-9\n")]


def call(inst: Any, name: str, *args: Any) -> Any:
    result = getattr(inst, name)(*args)
    return asyncio.run(result) if inspect.isawaitable(result) else result


def connect_and_poll(daqhub_host: Any, flavor: str, echo_off: list[tuple[bytes, bytes]]
                     ) -> tuple[Any, ScriptedPort]:
    line = ScriptedPort([*echo_off, *AFTER_ECHO_OFF, *POLL])
    meter = scripted_instrument(daqhub_host, "newport.1830c", flavor, line)
    call(meter, "connect" if flavor == "v2" else "start")
    return meter, line


def power_rows(meter: Any, flavor: str) -> list[tuple[str, Any]]:
    out = call(meter, "read")
    if flavor == "v2":
        return [(m.channel, m.data) for m in out]
    return [(r.channel, r.data) for b in out for r in batch_to_rows(b)]


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("echo_off", [
    [(b"E0\n", b"E0\r\n"), (b"Q?\n", b"0\n")],       # found in echo mode: E0 echoed
    [(b"E0\n", b"E0\n"), (b"Q?\n", b"0\n")],         # an echo ending LF only, too
    [(b"E0\n", b""), (b"Q?\n", b"0\n")],             # found with echo off: nothing
    [(b"E0\n", b""), (b"Q?\n", b"2\n"), (b"C\n", b"")],  # a meter refusing E: error cleared
], ids=["echoing", "echoing-lf", "quiet", "refused"])
def test_connect_turns_echo_off_and_reads_normally_after(
        daqhub_host: Any, flavor: str, echo_off: list[tuple[bytes, bytes]]) -> None:
    meter, line = connect_and_poll(daqhub_host, flavor, echo_off)
    assert power_rows(meter, flavor) == [("power", Scalar(0.11e-9, "W"))]
    line.assert_done()


def test_echo_cannot_be_turned_back_on_through_raw_command(daqhub_host: Any) -> None:
    line = ScriptedPort([])
    meter = scripted_instrument(daqhub_host, "newport.1830c", "v2", line)
    with pytest.raises(ValueError, match="keeps echo off"):
        meter.raw_command("e 1")
    line.assert_done()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_simulated_meter_left_in_echo_mode_is_read_normally(
        flavor: str, daqhub_instrument: Any, sim_url: Any) -> None:
    url = sim_url("newport1830c", power="2e-6", noise="0")
    registry.endpoint(url).device.feed(b"E1\n")  # left in echo mode by an earlier program
    meter = daqhub_instrument("newport.1830c", flavor, port=url)
    [(channel, value)] = meter.rows()
    assert channel == "power" and value.value == pytest.approx(2e-6, rel=1e-3)
    assert meter.call("raw_query", "U?") == "1"  # no echo in front of the reply
