"""Checks of commands' arguments (``Arg``): what ``daqhub validate`` refuses of a routine step
is what the command refuses when called, before anything is sent, for every kind of command.

Only a ``Parameter``'s setter had its checks seen by validate: a ``Command``, an ``@command``
and what a ``Delegate`` forwards took any value until the run sent it (or failed on it).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Generator
from typing import Any

import pytest

from daqhub.commands import argument_problem
from daqhub.driver import (
    Arg,
    Command,
    Delegate,
    Parameter,
    Session,
    Transaction,
    command,
    flavor_class,
)
from daqhub.measurement import ChannelSpec
from daqhub.specs import InstrumentContext, InstrumentType
from daqhub_sims.scripted import ScriptedPort

FLAVORS = ("v2", "v4")


class Shutter:
    """A helper object whose plans a Delegate forwards to."""

    def __init__(self, instrument_id: str) -> None:
        self.id = instrument_id

    @command(fraction=Arg(float, range=(0, 1)))
    def open_to(self, fraction: float) -> Transaction[None]:
        """Open the shutter to ``fraction`` (``O``)."""
        return Transaction(f"O {fraction:.2f}", None)


class Lamp(Session):
    """A made-up lamp with a command of each kind."""

    type_name = "test.lamp"
    description = "test lamp"
    channels = [ChannelSpec("level", "scalar", "")]
    command_end, reply_end, read_timeout = b"\n", b"\n", 0.2

    level = Parameter("L?", "L {}", parse=int, kind=int, range=(0, 10))
    mode = Command("MODE {}", "mode", choices={"steady": 1, "blink": 2}, doc="how it shines")
    shutter = Delegate("helper", Shutter, "open_to")

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.helper = Shutter(self.id)

    @command(colour=Arg(str, choices=("red", "green")), seconds=Arg(float, range=(0.1, 60)))
    def flash(self, colour: str, seconds: float = 1.0) -> Generator[Any, Any, None]:
        """Flash ``colour`` for ``seconds``."""
        yield Transaction(f"FLASH {colour} {seconds:g}", None)


def lamp(flavor: str, script: list[tuple[bytes, bytes]]) -> tuple[Any, ScriptedPort]:
    port = ScriptedPort(script)
    ctx = InstrumentContext("lamp1", "test.lamp", {}, Lamp.channels, port=port)  # type: ignore[arg-type]
    return flavor_class(Lamp, flavor)(ctx), port  # type: ignore[arg-type]


def call(inst: Any, method: str, *args: Any) -> Any:
    result = getattr(inst, method)(*args)
    return asyncio.run(result) if inspect.isawaitable(result) else result


REFUSED = [
    ("flash", ("blue",), "flash: colour must be one of 'red', 'green', got 'blue'"),
    ("flash", ("red", 120), "flash: seconds must be a number from 0.1 to 60, got 120"),
    ("mode", ("strobe",), "mode: mode must be one of 'steady', 'blink', got 'strobe'"),
    ("mode", (["steady"],), "mode: mode must be one of 'steady', 'blink', got ['steady']"),
    ("open_to", (1.5,), "open_to: fraction must be a number from 0 to 1, got 1.5"),
]


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize(("method", "args", "message"), REFUSED,
                         ids=[f"{m}-{a[0]!r}" for m, a, _ in REFUSED])
def test_validate_and_the_command_refuse_the_same_value_before_anything_is_sent(
        flavor: str, method: str, args: tuple[Any, ...], message: str) -> None:
    """validate (from the class: nothing connected) and the call say the same, naming the
    command, the argument and what it may be; the call adds the instrument."""
    itype = InstrumentType("test.lamp", flavor, "serial", flavor_class(Lamp, flavor), [], "")
    found = argument_problem(itype, method, args)
    assert found is not None and found[0] == message
    inst, port = lamp(flavor, [])
    with pytest.raises(ValueError) as info:
        call(inst, method, *args)
    assert str(info.value) == f"lamp1: {message}"
    assert port.sent == []


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize(("method", "args", "said", "refused"), [
    ("flash", (["red"],), "flash's colour is a str", "flash: colour must be a str"),
    ("open_to", ("half",), "open_to's fraction is a float", "open_to: fraction must be a float"),
])
def test_a_value_of_another_kind_is_refused_by_both(
        flavor: str, method: str, args: tuple[Any, ...], said: str, refused: str) -> None:
    """validate says it from the signature (as for a Parameter's setter), the call from the
    declared kind (a string multiplied into pulses, a list formatted into the command)."""
    itype = InstrumentType("test.lamp", flavor, "serial", flavor_class(Lamp, flavor), [], "")
    found = argument_problem(itype, method, args)
    assert found is not None and found[0] == f"{said}, got {args[0]!r}"
    inst, port = lamp(flavor, [])
    with pytest.raises(ValueError) as info:
        call(inst, method, *args)
    assert str(info.value).startswith(f"lamp1: {refused}, got {args[0]!r}")
    assert port.sent == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_allowed_values_pass_both_and_are_sent(flavor: str) -> None:
    itype = InstrumentType("test.lamp", flavor, "serial", flavor_class(Lamp, flavor), [], "")
    for method, args in [("flash", ("red",)), ("flash", ("green", 0.5)), ("mode", ("blink",)),
                         ("open_to", (0.25,)), ("set_level", (3,))]:
        assert argument_problem(itype, method, args) is None, (method, args)
    inst, port = lamp(flavor, [(b"FLASH green 0.5\n", b""), (b"MODE 2\n", b""),
                               (b"O 0.25\n", b""), (b"L 3\n", b"")])
    call(inst, "flash", "green", 0.5)
    call(inst, "mode", "blink")  # the mapping's value goes on the wire
    call(inst, "open_to", 0.25)
    call(inst, "set_level", 3)
    port.assert_done()


def test_a_parameter_refuses_with_the_same_rule() -> None:
    """One rule: a Parameter's value is checked by the Arg code the commands use."""
    itype = InstrumentType("test.lamp", "v2", "serial", flavor_class(Lamp, "v2"), [], "")
    assert argument_problem(itype, "set_level", (11,))[0] == (  # type: ignore[index]
        "set_level: level must be a number from 0 to 10, got 11")
    assert Arg(int, range=(0, 10)).check("level", 7) == 7
    with pytest.raises(ValueError, match="^level must be an int, got 2.5$"):
        Arg(int, range=(0, 10)).check("level", 2.5)


def test_a_rule_of_the_driver_is_checked_and_says_why() -> None:
    def even(value: int) -> None:
        if value % 2:
            raise ValueError(f"steps come in pairs, got {value}")

    arg = Arg(int, rule=even)
    assert arg.check("steps", 4) == 4
    with pytest.raises(ValueError, match="^steps come in pairs, got 3$"):
        arg.check("steps", 3)


def test_a_check_of_an_argument_the_command_lacks_is_refused_when_declared() -> None:
    with pytest.raises(TypeError, match="checks speed, which it does not take"):
        @command(speed=Arg(float))
        def move(self: Any, position: float) -> None:
            """Move."""


def test_the_command_keeps_its_signature_and_docs() -> None:
    v2 = flavor_class(Lamp, "v2")
    assert str(inspect.signature(v2.flash)) == \
        "(self, colour: 'str', seconds: 'float' = 1.0) -> 'Generator[Any, Any, None]'"
    assert inspect.getdoc(v2.flash) == "Flash ``colour`` for ``seconds``."
    assert str(inspect.signature(v2.open_to)) == "(self, fraction: 'float') -> 'Transaction[None]'"
    assert "mode one of 'steady', 'blink'" in (v2.mode.__doc__ or "")
