"""daqhub.driver: one session class, both flavors, declarations, the one error family.

Driven over daqhub-sims' scripted line, so every byte the toolkit sends is checked.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Generator
from typing import Any

import jsonschema
import numpy as np
import pytest

from daqhub.commands import argument_problem
from daqhub.config import instrument_schema
from daqhub.driver import (
    Command,
    Delegate,
    DriverDisconnectedError,
    DriverError,
    DriverReplyError,
    DriverTimeoutError,
    Parameter,
    Pause,
    Sample,
    Session,
    Transaction,
    command,
    driver_error,
    flavor_class,
    instrument_types,
    lines,
    new_sample,
)
from daqhub.instrument import V2Instrument, V4Actor, public_methods
from daqhub.measurement import ChannelSpec, DataError, Scalar
from daqhub.plugins.converters import batch_to_rows
from daqhub.resources.errors import (
    PortDisconnectedError,
    ReplyTimeoutError,
    ResourceError,
    ResourceTimeoutError,
)
from daqhub.specs import InstrumentContext, InstrumentType
from daqhub_sims.scripted import ScriptedPort


class Oven(Session):
    """A made-up oven: the protocol table of the tests."""

    type_name = "test.oven"
    description = "test oven"
    capabilities = ("Readable", "TemperatureController")
    channels = [ChannelSpec("temperature", "scalar", "degC")]
    command_end, reply_end, read_timeout = b"\n", b"\n", 0.2

    temperature = Parameter("T?", unit="degC", setting=False)
    setpoint = Parameter("S?", "S {:.1f}", unit="degC", range=(0, 300), ack="OK")
    fan = Parameter("F?", "F {}", parse=int, choices={"off": 0, "low": 1, "high": 2})
    mode = Parameter("M?", "M {}", parse=str, choices=("run", "hold"))
    door = Command("DOOR {}", "state", doc="open or close the door")
    reset = Command("RST", urgent=True)

    def check_reply(self, command: str, text: str) -> str:
        if text.startswith("E"):
            raise DriverReplyError(self.id, command, f"refused: {text}", int(text[1:]))
        return text

    def connect(self) -> Generator[Any, Any, None]:
        model = yield self.query("ID?")
        self.identity = {"model": model}

    @command
    def ramp(self, target: float, steps: int = 2) -> Generator[Any, Any, float]:
        """Step the setpoint to ``target``, pausing in between."""
        for i in range(1, steps + 1):
            yield type(self).setpoint.assign(self, target * i / steps)
            yield Pause(0.0)
        return float((yield type(self).temperature.query(self)))


def build(flavor: str, script: list[tuple[bytes, bytes]]) -> tuple[Any, ScriptedPort]:
    return build_of(Oven, flavor, script)


def build_of(cls: type[Session], flavor: str, script: list[tuple[bytes, bytes]]
             ) -> tuple[Any, ScriptedPort]:
    port = ScriptedPort(script)
    ctx = InstrumentContext("oven1", "test.oven", {}, cls.channels, port=port)  # type: ignore[arg-type]
    return flavor_class(cls, flavor)(ctx), port  # type: ignore[arg-type]


def call(inst: Any, method: str, *args: Any) -> Any:
    result = getattr(inst, method)(*args)
    return asyncio.run(result) if inspect.isawaitable(result) else result


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_one_session_gives_both_flavors_the_same_commands_and_bytes(flavor: str) -> None:
    inst, port = build(flavor, [
        (b"ID?\n", b"OV-1\n"), (b"S 100.0\n", b"OK\n"), (b"S?\n", b"100.0\n"),
        (b"F 2\n", b""), (b"F?\n", b"2\n"), (b"DOOR open\n", b""),
        (b"S 50.0\n", b"OK\n"), (b"S 100.0\n", b"OK\n"), (b"T?\n", b"21.5\n"),
        (b"T?\n", b"22.0\n")])
    assert isinstance(inst, V2Instrument if flavor == "v2" else V4Actor)
    call(inst, "connect" if flavor == "v2" else "start")
    call(inst, "set_setpoint", 100)
    assert call(inst, "setpoint") == 100.0
    call(inst, "set_fan", "high")
    assert call(inst, "fan") == "high"
    call(inst, "door", "open")
    assert call(inst, "ramp", 100.0) == 21.5
    out = call(inst, "read")
    rows = ([(m.channel, m.data) for m in out] if flavor == "v2"
            else [(r.channel, r.data) for b in out for r in batch_to_rows(b)])
    assert rows == [("temperature", Scalar(22.0, "degC"))]
    port.assert_done()


def test_the_command_list_comes_from_the_declarations_with_signatures_and_docs() -> None:
    v2, v4 = flavor_class(Oven, "v2"), flavor_class(Oven, "v4")
    expected = ["door", "fan", "mode", "ramp", "read", "reset", "set_fan", "set_mode",
                "set_setpoint", "setpoint", "settings", "temperature"]
    assert public_methods(v2) == public_methods(v4) == expected
    assert str(inspect.signature(v2.ramp)) == str(inspect.signature(v4.ramp)) == \
        "(self, target: 'float', steps: 'int' = 2) -> 'Generator[Any, Any, float]'"
    assert str(inspect.signature(v4.set_setpoint)) == "(self, value)"
    assert "from 0 to 300" in (v2.set_setpoint.__doc__ or "")
    assert "'S {:.1f}'" in (v2.set_setpoint.__doc__ or "")
    assert all(inspect.iscoroutinefunction(getattr(v4, n)) for n in expected)
    assert not any(inspect.iscoroutinefunction(getattr(v2, n)) for n in expected)
    assert flavor_class(Oven, "v2") is v2  # made once


@pytest.mark.parametrize("flavor", ["v2", "v4"])
@pytest.mark.parametrize(("method", "value", "message"), [
    ("set_setpoint", 301, "setpoint must be a number from 0 to 300 degC, got 301"),
    ("set_setpoint", float("nan"), "from 0 to 300"),
    ("set_setpoint", "100", "from 0 to 300"),
    ("set_fan", "max", "fan must be one of 'off', 'low', 'high', got 'max'"),
    ("set_mode", "stop", "mode must be one of 'run', 'hold'")])
def test_bad_values_are_refused_before_anything_is_sent(flavor: str, method: str, value: Any,
                                                        message: str) -> None:
    inst, port = build(flavor, [])
    with pytest.raises(ValueError, match=message):
        call(inst, method, value)
    assert port.sent == []


@pytest.mark.parametrize("flavor", ["v2", "v4"])
@pytest.mark.parametrize(("method", "value", "message"), [
    ("set_setpoint", 301, "set_setpoint: setpoint must be a number from 0 to 300 degC, got 301"),
    ("set_fan", "max", "set_fan: fan must be one of 'off', 'low', 'high', got 'max'"),
    ("set_setpoint", 120.5, None), ("set_fan", "low", None)])
def test_validate_finds_the_values_a_parameter_refuses_without_an_instrument(
        flavor: str, method: str, value: Any, message: str | None) -> None:
    """What ``daqhub validate`` asks of a routine step: the generated setter's range and
    choices, from the class alone (nothing connected, nothing sent)."""
    itype = InstrumentType("test.oven", flavor, "serial", flavor_class(Oven, flavor), [], "")
    found = argument_problem(itype, method, (value,))
    if message is None:
        assert found is None
    else:
        assert found is not None and found[0] == message
        assert "daqhub plugins test.oven" in found[1]


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_settings_snapshot_is_generated_from_the_declared_parameters(flavor: str) -> None:
    inst, port = build(flavor, [(b"ID?\n", b"OV-1\n"), (b"S?\n", b"80.0\n"), (b"F?\n", b"0\n"),
                                (b"M?\n", b"hold\n")])
    call(inst, "connect" if flavor == "v2" else "start")
    assert call(inst, "settings") == {"model": "OV-1", "setpoint": 80.0, "fan": "off",
                                      "mode": "hold"}
    port.assert_done()


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_reply_errors_name_instrument_command_and_code(flavor: str) -> None:
    inst, _ = build(flavor, [(b"S 10.0\n", b"E7\n"), (b"S?\n", b"warm\n"), (b"F?\n", b"9\n"),
                             (b"S?\n", b"")])
    with pytest.raises(DriverReplyError) as refused:
        call(inst, "set_setpoint", 10)
    assert (refused.value.instrument_id, refused.value.command, refused.value.code) == (
        "oven1", "S 10.0", 7)
    with pytest.raises(DriverReplyError, match=r"garbled reply 'warm'") as garbled:
        call(inst, "setpoint")
    assert garbled.value.code == "garbled"
    with pytest.raises(DriverReplyError, match="not one of the known values"):
        call(inst, "fan")
    with pytest.raises(DriverTimeoutError, match=r"no reply on scripted within 0.2 s") as silent:
        call(inst, "setpoint")
    assert (silent.value.command, silent.value.code) == ("S?", "timeout")


def test_a_plan_can_catch_a_failed_step_and_go_on() -> None:
    class Retry(Oven):
        @command
        def patient(self) -> Generator[Any, Any, float]:
            for _ in range(3):
                try:
                    return float((yield self.query("T?", float)))
                except DriverTimeoutError:
                    yield Pause(0.0)
            raise AssertionError("unreachable in this test")

    for flavor in ("v2", "v4"):
        port = ScriptedPort([(b"T?\n", b""), (b"T?\n", b"20.0\n")])
        ctx = InstrumentContext("r", "test.oven", {}, Oven.channels, port=port)  # type: ignore[arg-type]
        assert call(flavor_class(Retry, flavor)(ctx), "patient") == 20.0  # type: ignore[arg-type]
        port.assert_done()


class _Failing:
    """A port whose every transaction raises ``exc`` (what the core's managers raise)."""

    name = "failing"
    default_timeout = 1.0

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def transaction(self, fn: Any, **_: Any) -> Any:
        raise self.exc

    async def atransaction(self, fn: Any, **_: Any) -> Any:
        raise self.exc


@pytest.mark.parametrize("flavor", ["v2", "v4"])
@pytest.mark.parametrize(("exc", "kind", "code", "also"), [
    (PortDisconnectedError("port gone", port="p"), DriverDisconnectedError, "disconnected",
     ConnectionError),
    (ReplyTimeoutError("slow", port="p", sent=b"", partial=b""), DriverTimeoutError, "timeout",
     TimeoutError),
    (ResourceTimeoutError("held by x for 2 s", resource="p", waited_s=2, holder="x", owner="o"),
     DriverTimeoutError, "busy", TimeoutError),
    (ResourceError("odd"), DriverError, "port", DriverError),
    (OSError(5, "I/O error"), DriverError, "io", DriverError)])
def test_every_resource_failure_becomes_one_driver_error_naming_instrument_and_command(
        flavor: str, exc: Exception, kind: type, code: str, also: type) -> None:
    ctx = InstrumentContext("oven9", "test.oven", {}, Oven.channels, port=_Failing(exc))  # type: ignore[arg-type]
    inst = flavor_class(Oven, flavor)(ctx)
    with pytest.raises(kind) as info:
        call(inst, "set_setpoint", 5)
    err = info.value
    assert (err.instrument_id, err.command, err.code) == ("oven9", "S 5.0", code)
    assert isinstance(err, also) and err.__cause__ is exc
    assert str(exc) in str(err)


def test_driver_error_passes_a_driver_error_through() -> None:
    err = DriverError("a", "b", "c")
    assert driver_error(err, "x", "y") is err


def test_a_bug_in_a_driver_is_not_dressed_up_as_a_device_error() -> None:
    class Buggy(Oven):
        @command
        def broken(self) -> Transaction[None]:
            return Transaction("X", fn=lambda io: {}["missing"])

    port = ScriptedPort([])
    ctx = InstrumentContext("b", "test.oven", {}, Oven.channels, port=port)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        flavor_class(Buggy, "v2")(ctx).broken()


def test_instrument_types_declares_both_flavors_from_the_class() -> None:
    v2, v4 = instrument_types(Oven)
    assert (v2.name, v2.flavor, v4.flavor) == ("test.oven", "v2", "v4")
    assert v2.factory is flavor_class(Oven, "v2") and v4.factory is flavor_class(Oven, "v4")
    assert v2.capabilities == v4.capabilities == ("Readable", "TemperatureController")
    assert v2.problems() == v4.problems() == []
    assert instrument_types(Oven, name="test.oven2")[1].name == "test.oven2"


def test_poll_values_may_carry_metadata() -> None:
    class Tagged(Oven):
        def poll(self) -> Generator[Any, Any, dict[str, Any]]:
            value = yield self.query("T?", float)
            return {"temperature": Sample(value, {"stable": True})}

    port = ScriptedPort([(b"T?\n", b"20.0\n"), (b"T?\n", b"20.5\n")])
    ctx = InstrumentContext("t", "test.oven", {}, Oven.channels, port=port)  # type: ignore[arg-type]
    (m,) = flavor_class(Tagged, "v2")(ctx).read()
    assert (m.data, m.metadata) == (Scalar(20.0, "degC"), {"stable": True})
    (row,) = batch_to_rows(asyncio.run(flavor_class(Tagged, "v4")(ctx).read())[0])
    assert (row.data, row.metadata) == (Scalar(20.5, "degC"), {"stable": True})


def test_a_sample_built_from_one_tuple_is_the_same_sample() -> None:
    fast = new_sample((Scalar(1.5, "V"), None, 7))
    assert type(fast) is Sample and fast == Sample(Scalar(1.5, "V"), None, 7)
    assert (fast.value, fast.meta, fast.timestamp_ns) == (Scalar(1.5, "V"), None, 7)


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_transaction_fn_goes_through_a_session_s_own_execute(flavor: str) -> None:
    class Logged(Oven):
        seen: list[str] = []

        def execute(self, io: Any, tx: Transaction[Any]) -> Any:
            Logged.seen.append(tx.command)
            return super().execute(io, tx)

        def poll(self) -> Transaction[dict[str, Any]]:
            return Transaction("T?", fn=lambda io: {"temperature": 1.0})

    assert Logged.plain_execute is False and Oven.plain_execute is True
    ctx = InstrumentContext("t", "test.oven", {}, Oven.channels,
                            port=ScriptedPort([]))  # type: ignore[arg-type]
    inst = flavor_class(Logged, flavor)(ctx)  # type: ignore[arg-type]
    read = inst.read() if flavor == "v2" else asyncio.run(inst.read())
    assert read and Logged.seen == ["T?"]


class _Door:
    """A helper object whose plan methods a session hands commands to."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def knock(self, times: int = 1) -> Generator[Any, Any, str]:
        """Knock ``times`` times; the door's answer."""
        answer = ""
        for _ in range(times):
            answer = yield self.session.query("KNOCK", str)
        return answer


class Doored(Oven):
    doors = Delegate("door_helper", _Door, "knock")

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.door_helper = _Door(self)


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_delegated_commands_keep_the_helpers_signature_and_doc(flavor: str) -> None:
    cls = flavor_class(Doored, flavor)  # type: ignore[arg-type]
    assert str(inspect.signature(cls.knock)) == "(self, times: 'int' = 1) -> " \
                                                "'Generator[Any, Any, str]'"
    assert cls.knock.__doc__ == "Knock ``times`` times; the door's answer."
    port = ScriptedPort([(b"KNOCK\n", b"who\n"), (b"KNOCK\n", b"there\n")])
    ctx = InstrumentContext("d", "test.oven", {}, Oven.channels, port=port)  # type: ignore[arg-type]
    assert call(cls(ctx), "knock", 2) == "there"
    port.assert_done()


def test_a_declaration_may_not_shadow_the_session_or_the_runtime() -> None:
    with pytest.raises((TypeError, RuntimeError)) as info:  # 3.11 wraps __set_name__ errors
        class Bad(Session):
            poll = Parameter("P?")
    assert "Bad.poll: the name is taken by Session.poll" in f"{info.value} {info.value.__cause__}"
    with pytest.raises(TypeError, match="a command may not be named 'read'"):
        class Reads(Session):
            read = Command("READ?")
        flavor_class(Reads, "v2")
    # two declarations of one class making one command: neither silently replaces the other
    class Gains(Session):
        gain = Parameter("G?", "G {}")
        set_gain = Command("SG {}", "value")
    with pytest.raises(TypeError, match="'gain' and 'set_gain' both make the command "
                                        "'set_gain'"):
        flavor_class(Gains, "v2")
    class Overrides(Oven):  # a subclass replacing its base's command is meant
        setpoint = Parameter("S2?", "S2 {:.1f}")
    assert "set_setpoint" in public_methods(flavor_class(Overrides, "v2"))


class Stage(Session):
    """Its query names the axis from :attr:`Session.fields`, as a multi-axis controller's do."""

    type_name = "test.stage"
    channels = [ChannelSpec("position", "scalar", "mm")]
    command_end, reply_end, read_timeout = b"\n", b"\n", 0.2
    position = Parameter("{axis}TP", unit="mm", setting=False)


def test_the_default_poll_is_planned_once_and_again_when_fields_change() -> None:
    port = ScriptedPort([(b"1TP\n", b"1.5\n"), (b"1TP\n", b"1.6\n"), (b"2TP\n", b"7.0\n")])
    ctx = InstrumentContext("stage", "test.stage", {}, Stage.channels, port=port)  # type: ignore[arg-type]
    inst: Any = flavor_class(Stage, "v2")(ctx)
    inst.session.fields["axis"] = 1
    assert [m.data.value for m in inst.read()] == [1.5]
    planned = inst.session._planned_poll[2]
    assert [m.data.value for m in inst.read()] == [1.6]
    assert inst.session._planned_poll[2] is planned  # reused, not planned again
    inst.session.fields["axis"] = 2
    assert [m.data.value for m in inst.read()] == [7.0]
    port.assert_done()


class Strict(Oven):
    """A schema that allows no keys but its own."""

    type_name = "test.strict"
    config_schema = {"type": "object", "additionalProperties": False,
                     "properties": {"gas": {"type": "string", "default": "N2"}}}


def test_a_schema_of_only_its_own_keys_holds_for_the_session_as_for_validate() -> None:
    """``config_schema`` is of the block's own keys: the core's (id, type, port, poll_hz)
    pass the session's check as they pass the lab's, and a misspelt own key fails both."""
    [v2] = [t for t in instrument_types(Strict) if t.flavor == "v2"]
    block = {"id": "oven1", "type": "test.strict", "port": "sim://x", "poll_hz": 5,
             "gas": "Ar"}
    jsonschema.validate(block, instrument_schema(v2))  # what daqhub validate checks
    ctx = InstrumentContext("oven1", "test.strict", block, Oven.channels,
                            port=ScriptedPort([]))  # type: ignore[arg-type]
    assert Strict(ctx).options.gas == "Ar"
    typo = {**block, "gsa": "Ar"}
    with pytest.raises(jsonschema.ValidationError, match="gsa"):
        jsonschema.validate(typo, instrument_schema(v2))
    with pytest.raises(ValueError, match="oven1: block: .*'gsa' was unexpected"):
        Strict(InstrumentContext("oven1", "test.strict", typo, Oven.channels,
                                 port=ScriptedPort([])))  # type: ignore[arg-type]


# --- a read that would wait for ever -----------------------------------------------------

@pytest.mark.parametrize("timeout", [None, 0, -1.0, float("inf"), float("nan"), "0.5", 1e9])
def test_a_read_timeout_that_would_wait_for_ever_is_refused_with_the_class(
        timeout: Any) -> None:
    """None is pyserial's "block for ever": one lost reply then held a v2 call for good,
    and the port with it; 0 returns before any reply comes."""
    with pytest.raises(TypeError, match=r"\.Forever\.read_timeout must be a finite number of "
                                        r"seconds > 0 \(at most 3600\), not "):
        class Forever(Oven):
            read_timeout = timeout


def test_a_read_timeout_of_an_instance_is_refused_before_anything_is_sent() -> None:
    """``lines.begin`` holds the same rule for a timeout the class check cannot see (set
    per instance, or passed by a driver's own exchange)."""
    inst, port = build("v2", [])
    inst.session.read_timeout = None
    with pytest.raises(ValueError, match=r"^oven1: the read timeout must be a finite number "
                                         r"of seconds > 0 \(at most 3600\), not None$"):
        inst.setpoint()
    assert port.sent == []
    with pytest.raises(ValueError, match=r"^scripted: the read timeout .* not 0$"):
        port.transaction(lambda io: lines.begin(io, 0))


# --- a parser's bug, told from a garbled reply -------------------------------------------

def pressure_parser(text: str) -> float:
    mantissa, exponent = text.split("E")
    return float(mantissa) * 10 ** exponent  # type: ignore[operator]  # the bug: a str


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_parser_s_error_names_the_parser_and_the_line_that_raised(flavor: str) -> None:
    """A parser's bug raises what a garbled reply does (a TypeError here): still a reply
    error, but its message says which parser and which line, so its author looks there."""
    class Gauge(Oven):
        pressure = Parameter("P?", parse=pressure_parser, setting=False)

    inst, _ = build_of(Gauge, flavor, [(b"P?\n", b"1.25E-05\n"), (b"T?\n", b"warm\n")])
    with pytest.raises(DriverReplyError) as bug:
        call(inst, "pressure")
    line = pressure_parser.__code__.co_firstlineno + 2
    assert str(bug.value) == (
        "oven1: 'P?' [code garbled]: garbled reply '1.25E-05': TypeError: unsupported "
        "operand type(s) for ** or pow(): 'int' and 'str' (parser pressure_parser, at "
        f"test_toolkit.py:{line} in pressure_parser)")
    assert bug.value.code == "garbled"
    with pytest.raises(DriverReplyError, match=r"garbled reply 'warm': could not convert "
                                               r"string to float: 'warm' \(parser float\)$"):
        call(inst, "temperature")


def test_a_parser_error_of_another_kind_stays_a_bug() -> None:
    """Only the documented kinds are taken for a garbled reply: ``None.group()`` of a failed
    match is an AttributeError, the driver's bug, and is not dressed up."""
    class Matching(Oven):
        pressure = Parameter("P?", parse=lambda t: re.match(r"\d", t).group(),  # type: ignore[union-attr]
                             setting=False)

    inst, _ = build_of(Matching, "v2", [(b"P?\n", b"x\n")])
    with pytest.raises(AttributeError):
        inst.pressure()


# --- templates ---------------------------------------------------------------------------

@pytest.mark.parametrize(("declaration", "message"), [
    (Parameter("HEAT?", "HEAT", kind=bool),
     "Bad.x: the set command template 'HEAT' has no field ({}) for a value: it would send "
     "'HEAT' whatever the value"),
    (Parameter("PRES? {}", setting=False),
     "Bad.x: the query template 'PRES? {}' has a field for a value, and it takes none"),
    (Command("DEGAS {} {}", "seconds"),
     "Bad.x: the command template 'DEGAS {} {}' has 2 fields for values, and it takes 1"),
    (Command("RAMP {0} {2}", "rate", "target"),
     "Bad.x: the command template 'RAMP {0} {2}' skips a value (fields [0, 2])"),
    (Command("RAMP {} {1}", "rate", "target"),
     "Bad.x: the command template 'RAMP {} {1}' mixes {} with numbered fields"),
    (Parameter("S?", "S {"),
     "Bad.x: the set command template 'S {' is not a str.format template"),
    (Parameter("S?", "S {-1}"),
     "Bad.x: the set command template 'S {-1}' has the field {-1}")])
def test_a_template_that_cannot_take_its_values_is_refused_with_the_class(
        declaration: Any, message: str) -> None:
    """Checked as the plugin loads: ``HEAT`` (no ``{}``) sent the command without the
    value and reported success; the others failed at each use with a bare KeyError or
    IndexError naming neither the instrument nor the parameter."""
    with pytest.raises(TypeError, match="^" + re.escape(message)):
        type("Bad", (Oven,), {"x": declaration})


def test_templates_that_take_their_values_are_accepted() -> None:
    class Good(Stage):
        speed = Parameter("{axis}VA?", "{axis}VA{}")
        ramp = Command("RAMP {1} {0}", "rate", "target")
        width = Parameter("W?", "W {:{axis}}")
        braces = Command("{{literal}} {axis}MO")
    assert "set_speed" in public_methods(flavor_class(Good, "v2"))


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_template_failing_when_sent_names_instrument_declaration_and_template(
        flavor: str) -> None:
    """What the class check cannot see (a format spec against the values, a named field
    the session's fields lack) fails before anything is sent, naming who and what."""
    class Levels(Oven):
        level = Parameter("L?", "L {:d}", parse=str, choices={"low": "L", "high": "H"})
        degas = Command("{ch}DEGAS {}", "seconds")

    inst, port = build_of(Levels, flavor, [])
    with pytest.raises(ValueError, match=r"^oven1: level: the template 'L \{:d\}' cannot take "
                                         r"'H': Unknown format code 'd'"):
        call(inst, "set_level", "high")
    with pytest.raises(TypeError, match=r"^oven1: degas: the template '\{ch\}DEGAS \{\}' needs "
                                        r"the field \{ch\}, which the session's fields do not "
                                        r"have \(they are: none\)$"):
        call(inst, "degas", 5)
    assert port.sent == []


# --- a poll value that does not fit its channel ------------------------------------------

@pytest.mark.parametrize("value", ["21.5", None, True, Scalar("21.5", "degC"), 2 ** 1100],
                         ids=["text", "None", "bool", "Scalar of text", "int beyond a float"])
def test_both_flavors_refuse_a_poll_value_that_does_not_fit_its_channel_alike(
        value: Any) -> None:
    """The v2 flavor refused nothing: the text went out as a sample, and only the bridge
    dropped it later, while the v4 flavor failed the poll. Now both fail it, with the same
    message naming the instrument, the channel and the value."""
    class Texts(Oven):
        def poll(self) -> dict[str, Any]:
            return {"temperature": value}

    errors = []
    for flavor in ("v2", "v4"):
        inst, _ = build_of(Texts, flavor, [])
        with pytest.raises(DataError, match=r"^channel oven1\.temperature is declared "
                                            r"float64, got ") as info:
            call(inst, "read")
        errors.append(str(info.value))
    assert errors[0] == errors[1]


@pytest.mark.parametrize("value", [21.5, 21, np.float64(21.5), np.float32(21.5), np.int16(21),
                                   Scalar(21.5, "degC"), Sample(21, {"stable": True})])
def test_values_that_fit_their_channel_are_taken_by_both_flavors(value: Any) -> None:
    class Numbers(Oven):
        def poll(self) -> dict[str, Any]:
            return {"temperature": value}

    v2, _ = build_of(Numbers, "v2", [])
    v4, _ = build_of(Numbers, "v4", [])
    (m,) = v2.read()
    (row,) = batch_to_rows(asyncio.run(v4.read())[0])
    assert m.data.value == row.data.value and m.data.value in (21.5, 21)
