"""Both Newport drivers over a pseudo-terminal and TCP, and under injected line faults.

A fault must end in a DriverError that names the instrument and the command, within the
reply timeout, and the driver must work again once the line is healthy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import pytest
from newport_helpers import Build, run, sim_url

from daqhub.driver import DriverDisconnectedError
from daqhub.instrument import DriverError
from daqhub.measurement import Scalar
from daqhub.plugins.converters import batch_to_rows
from daqhub_newport import DriverTimeoutError
from daqhub_sims import registry
from daqhub_sims.pty_server import PtyServer
from daqhub_sims.tcp_server import TcpServer

pytestmark = pytest.mark.timeout(20)

REPLY_TIMEOUT = 0.1


class Case:
    """One instrument: how to build it, one query to poke it with, and its line terminator."""

    def __init__(self, type_name: str, model: str, options: dict[str, Any],
                 config: dict[str, Any], query: Callable[[Any], Any], command: str,
                 terminator: bytes) -> None:
        self.type_name, self.model, self.options = type_name, model, options
        self.config, self.query, self.command = config, query, command
        self.terminator = terminator

    def url(self) -> str:
        return sim_url(self.model, **self.options)


ESP300 = Case("newport.esp300", "esp300", {"speed_scale": 10},
              {"axis": 1, "reply_timeout": REPLY_TIMEOUT}, lambda i: i.position(), "1TP?",
              b"\r\n")
METER = Case("newport.1830c", "newport1830c", {"noise": 0, "power": 1e-6},
             {"reply_timeout": REPLY_TIMEOUT}, lambda i: i.power(), "D?", b"\n")
CASES = [pytest.param(ESP300, id="esp300"), pytest.param(METER, id="1830c")]


def connected(build: Build, case: Case, port: str | None = None) -> Any:
    inst = build(case.type_name, "v2", port or case.url(), case.config, "dut")
    inst.connect()
    return inst


# ------------------------------------------------------------------ transports
@pytest.mark.parametrize("case", CASES)
def test_over_a_pseudo_terminal(build: Build, case: Case) -> None:
    with PtyServer(registry.endpoint(case.url())) as pty:
        inst = connected(build, case, pty.path)
        assert inst.port.device.startswith("/dev/pts/")
        [m] = inst.read()
        assert m.data in (Scalar(0.0, "mm"), Scalar(1e-6, "W"))
        inst.close()


@pytest.mark.parametrize("case", CASES)
def test_over_ser2net_rfc2217(build: Build, case: Case, ser2net: Callable[..., Any]) -> None:
    server = ser2net(case.url())  # a real ser2net in front of the device's pty
    inst = connected(build, case, server.url)
    assert inst.port.device.startswith("rfc2217://127.0.0.1:")
    [m] = inst.read()
    assert m.data in (Scalar(0.0, "mm"), Scalar(1e-6, "W"))
    inst.close()


@pytest.mark.parametrize("case", CASES)
def test_over_tcp_like_ser2net(build: Build, case: Case) -> None:
    with TcpServer(registry.endpoint(case.url())) as srv:
        inst = connected(build, case, srv.url)
        [m] = inst.read()
        assert m.data in (Scalar(0.0, "mm"), Scalar(1e-6, "W"))


@pytest.mark.parametrize("served_by", ["tcp", "ser2net"])
def test_esp300_v4_moves_over_the_network(build: Build, served_by: str,
                                          ser2net: Callable[..., Any]) -> None:
    url = ESP300.url()
    with ExitStack() as stack:  # one server per simulated line
        port = (stack.enter_context(TcpServer(registry.endpoint(url))).url
                if served_by == "tcp" else ser2net(url).url)
        ax = build("newport.esp300", "v4", port, {"axis": 1}, "net-stage")

        async def script() -> Any:
            await ax.start()
            await ax.move_absolute(1.5)
            await ax.wait_until_done(5)
            return await ax.read()

        [row] = batch_to_rows(run(script())[0])
        assert row.data == Scalar(1.5, "mm")


# ------------------------------------------------------------------ faults
@pytest.mark.parametrize("junk", ["binary", "line"])
@pytest.mark.parametrize("case", CASES)
def test_garbage_before_a_reply(build: Build, case: Case, junk: str) -> None:
    url = case.url()
    inst = connected(build, case, url)
    data = b"\xfe\x07" if junk == "binary" else b"@@" + case.terminator
    registry.endpoint(url).faults.inject_garbage(data)
    with pytest.raises(DriverError) as info:
        case.query(inst)
    err = info.value
    assert (err.instrument_id, err.command, err.code) == ("dut", case.command, "garbled")
    assert case.query(inst) in (0.0, 1e-6)  # the next exchange is clean again


@pytest.mark.parametrize("case", CASES)
def test_truncated_reply(build: Build, case: Case) -> None:
    url = case.url()
    inst = connected(build, case, url)
    registry.endpoint(url).faults.truncate_next(1)
    t0 = time.monotonic()
    with pytest.raises(DriverError) as info:
        case.query(inst)
    assert time.monotonic() - t0 < 1.0
    err = info.value
    assert (err.instrument_id, err.command, err.code) == ("dut", case.command, "truncated")
    assert case.query(inst) in (0.0, 1e-6)


@pytest.mark.parametrize("case", CASES)
def test_silent_instrument_times_out_naming_instrument_and_command(
        build: Build, case: Case) -> None:
    url = case.url()
    inst = connected(build, case, url)
    registry.endpoint(url).faults.latency = 5.0
    t0 = time.monotonic()
    with pytest.raises(DriverTimeoutError) as info:
        case.query(inst)
    assert time.monotonic() - t0 < 1.0
    err = info.value
    assert isinstance(info.value, TimeoutError)
    assert (err.instrument_id, err.command, err.code) == ("dut", case.command, "timeout")
    assert "dut" in str(err) and case.command in str(err) and f"{REPLY_TIMEOUT} s" in str(err)


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_reply_given_up_on_is_never_read_as_the_next_answer(build: Build, flavor: str) -> None:
    """The position asked for arrives after its timeout, while the next query (the velocity)
    waits for its own reply: that query answers 7.5 or fails, never with the position."""
    url = ESP300.url()
    ax = build("newport.esp300", flavor, url, {**ESP300.config, "velocity": 7.5}, "dut")

    def call(name: str) -> Any:
        return getattr(ax, name)() if flavor == "v2" else run(getattr(ax, name)())

    call("connect" if flavor == "v2" else "start")
    faults = registry.endpoint(url).faults
    faults.latency = 3 * REPLY_TIMEOUT  # the TP? reply comes during the next exchange
    with pytest.raises(DriverTimeoutError):
        call("position")
    faults.latency = 0.0
    answers: list[Any] = []
    for _ in range(5):  # errors are allowed while the line gets back in step
        try:
            answers.append(call("velocity"))
            break
        except DriverError as exc:
            answers.append(exc)
    assert answers[-1] == 7.5, answers
    assert 0.0 not in answers, answers  # the position (0.0), taken for the velocity


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_late_reply_is_never_read_as_the_error_that_explains_the_silence(
        build: Build, flavor: str) -> None:
    """A position query met with silence is explained from the error FIFO (``TB?``) in the
    same transaction; the position (5, which reads as error code 5) arriving meanwhile is
    skipped, so the query fails as unanswered, not with the controller's error 5."""
    url = ESP300.url()
    ax = build("newport.esp300", flavor, url, ESP300.config, "dut")

    def call(name: str, *args: Any) -> Any:
        return getattr(ax, name)(*args) if flavor == "v2" else run(getattr(ax, name)(*args))

    call("connect" if flavor == "v2" else "start")
    call("define_position", 5)
    assert call("position") == 5.0
    registry.endpoint(url).faults.latency = 1.5 * REPLY_TIMEOUT  # TP? answered during TB?
    with pytest.raises(DriverError) as info:
        call("position")
    assert isinstance(info.value, DriverTimeoutError), info.value
    assert info.value.command == "1TP?" and info.value.code == "timeout"


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_late_reply_is_never_read_as_the_status_byte_that_explains_the_silence(
        build: Build, flavor: str) -> None:
    """A raw query is sent with ``Q?``, whose status byte alone would explain a refusal; the
    units (1, which reads as status 1: a parameter error) come late, with the status byte,
    so the query fails as unanswered, not as a refused parameter."""
    url = METER.url()
    meter = build("newport.1830c", flavor, url, METER.config, "dut")

    def ask(text: str) -> Any:
        return meter.raw_query(text) if flavor == "v2" else run(meter.raw_query(text))

    meter.connect() if flavor == "v2" else run(meter.start())
    assert ask("U?") == "1"  # watts
    registry.endpoint(url).faults.latency = 1.5 * REPLY_TIMEOUT  # U? answered during Q?
    with pytest.raises(DriverError) as info:
        ask("U?")
    assert isinstance(info.value, DriverTimeoutError), info.value
    assert info.value.command == "U?" and info.value.code == "timeout"


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_late_power_reading_is_never_read_as_the_next_one(build: Build,
                                                            flavor: str) -> None:
    """The 1830-C has no query with a fixed answer: after a reading given up on, the next
    transactions read the reply still owed before asking anything. Its late ``D?`` reply
    (1 uW) arrives while the next poll would be reading, after the power changed to 2 uW:
    that poll reads 2 uW or fails, never 1 uW."""
    url = METER.url()
    meter = build("newport.1830c", flavor, url, METER.config, "dut")

    def read() -> float:
        batch = meter.read() if flavor == "v2" else batch_to_rows(run(meter.read())[0])
        return float(batch[0].data.value)

    meter.connect() if flavor == "v2" else run(meter.start())
    assert read() == pytest.approx(1e-6)
    endpoint = registry.endpoint(url)
    endpoint.faults.latency = 3 * REPLY_TIMEOUT  # D? and Q? answered after the poll gave up
    with pytest.raises(DriverTimeoutError):
        read()
    endpoint.device.set_power_source(lambda: 2e-6)
    endpoint.faults.latency = 0.0
    answers: list[Any] = []
    for _ in range(5):  # errors are allowed while the line gets back in step
        try:
            answers.append(read())
            break
        except DriverError as exc:
            answers.append(exc)
    assert answers[-1] == pytest.approx(2e-6), answers
    assert not any(a == pytest.approx(1e-6) for a in answers), answers  # the late reading


@pytest.mark.parametrize("flavor", ["v2", "v4"])
@pytest.mark.parametrize("late", ["power", "raw_query"])
def test_a_reply_given_up_on_is_never_taken_for_another_querys_answer(
        build: Build, flavor: str, late: str) -> None:
    """The meter answers once 2.5 read timeouts late (a reading, or a raw query's units).
    That query fails as unanswered, and the wavelength asked next is 633 nm or an error
    while the late replies are still coming, never another query's answer: the status byte
    the driver asked to explain the silence (128) was read as the wavelength."""
    url = METER.url()
    meter = build("newport.1830c", flavor, url, METER.config, "dut")

    def call(name: str, *args: Any) -> Any:
        result = getattr(meter, name)(*args)
        return result if flavor == "v2" else run(result)

    call("connect" if flavor == "v2" else "start")
    assert call("wavelength") == 633.0
    faults = registry.endpoint(url).faults
    faults.latency = 2.5 * REPLY_TIMEOUT
    with pytest.raises(DriverTimeoutError):
        call(*(("power",) if late == "power" else ("raw_query", "U?")))
    faults.latency = 0.0
    answers: list[Any] = []
    for _ in range(5):  # errors are allowed while the late replies come
        try:
            answers.append(call("wavelength"))
            break
        except DriverError as exc:
            answers.append(exc)
    assert answers[-1] == 633.0, answers
    assert all(a == 633.0 or isinstance(a, DriverError) for a in answers), answers


@pytest.mark.parametrize("case", CASES)
def test_disconnect_and_reconnect(build: Build, case: Case) -> None:
    url = case.url()
    inst = connected(build, case, url)
    faults = registry.endpoint(url).faults
    reconnected = threading.Event()
    inst.port.add_listener(
        lambda event: reconnected.set() if event.kind == "reconnected" else None)
    faults.disconnect()
    t0 = time.monotonic()
    with pytest.raises(DriverDisconnectedError) as info:
        case.query(inst)
    assert time.monotonic() - t0 < 1.0
    err = info.value
    assert isinstance(info.value, ConnectionError)
    assert (err.instrument_id, err.command, err.code) == ("dut", case.command, "disconnected")
    with pytest.raises(DriverDisconnectedError):  # still down: fails at once, sends nothing
        inst.read()
    faults.reconnect()
    assert reconnected.wait(5), "the serial manager did not reopen the port"
    assert case.query(inst) in (0.0, 1e-6)


def test_close_of_an_axis_on_a_dead_port_does_not_raise(build: Build) -> None:
    url = ESP300.url()
    inst = connected(build, ESP300, url)
    registry.endpoint(url).faults.disconnect()
    t0 = time.monotonic()
    inst.close()  # logs and returns: the lab is shutting down anyway
    assert time.monotonic() - t0 < 2.5, "close waited on a dead port instead of giving up"
