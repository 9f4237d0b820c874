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

import numpy as np
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

    @command(levels=Arg(int, range=(0, 10)))
    def sequence(self, *levels: int) -> Transaction[None]:
        """Step through ``levels``."""
        return Transaction("SEQ " + ",".join(map(str, levels)), None)

    @command(gains=Arg(float, range=(0, 1)))
    def tune(self, **gains: float) -> Transaction[None]:
        """Set the named ``gains``."""
        return Transaction("TUNE " + ",".join(f"{k}={v:g}" for k, v in gains.items()), None)

    @command(owner=Arg(str, choices=("ann", "bob")))
    def assign(self, owner: str) -> Transaction[None]:
        """Hand the lamp to ``owner``."""
        return Transaction(f"OWNER {owner}", None)

    @command(low=Arg(int, range=(0, 10)), high=Arg(int, range=(0, 10)),
             rule=lambda low, high: _below(low, high))
    def window(self, low: int, high: int) -> Transaction[None]:
        """Dim between ``low`` and ``high``."""
        return Transaction(f"WIN {low} {high}", None)


def _below(low: int, high: int) -> None:
    if not low < high:
        raise ValueError(f"low must be below high, got {low} and {high}")


def lamp(flavor: str, script: list[tuple[bytes, bytes]]) -> tuple[Any, ScriptedPort]:
    port = ScriptedPort(script)
    ctx = InstrumentContext("lamp1", "test.lamp", {}, Lamp.channels, port=port)  # type: ignore[arg-type]
    return flavor_class(Lamp, flavor)(ctx), port  # type: ignore[arg-type]


def call(inst: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    result = getattr(inst, method)(*args, **kwargs)
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


def lamp_type(flavor: str) -> InstrumentType:
    return InstrumentType("test.lamp", flavor, "serial", flavor_class(Lamp, flavor), [], "")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_numpy_numbers_pass_ranges_and_are_sent(flavor: str) -> None:
    """``np.arange``'s integers and a float32 array's values are numbers to the kind check;
    the range check refused them (``level must be a number from 0 to 10, got
    np.int64(3)``)."""
    for method, args in [("set_level", (np.int64(3),)), ("flash", ("red", np.float32(0.5))),
                         ("open_to", (np.float32(0.25),))]:
        assert argument_problem(lamp_type(flavor), method, args) is None, (method, args)
    inst, port = lamp(flavor, [(b"L 3\n", b""), (b"FLASH red 0.5\n", b""), (b"O 0.25\n", b"")])
    call(inst, "set_level", np.int64(3))
    call(inst, "flash", "red", np.float32(0.5))
    call(inst, "open_to", np.float32(0.25))
    port.assert_done()
    assert Arg(float, range=(0, 10)).check("x", np.int32(10)) == 10
    for refused in (np.int64(11), np.float64("nan"), np.True_):
        with pytest.raises(ValueError, match="^x must be a number from 0 to 10"):
            Arg(range=(0, 10)).check("x", refused)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_declared_command_takes_its_arguments_by_name(flavor: str) -> None:
    """Its signature says ``mode(self, mode)``; ``mode(mode="blink")`` was refused by the
    call and by validate (``Command.check() got an unexpected keyword argument``)."""
    assert str(inspect.signature(flavor_class(Lamp, flavor).mode)) == "(self, mode)"
    assert argument_problem(lamp_type(flavor), "mode", (), {"mode": "blink"}) is None
    assert argument_problem(lamp_type(flavor), "mode", (), {"mode": "strobe"})[0] == (  # type: ignore[index]
        "mode: mode must be one of 'steady', 'blink', got 'strobe'")
    inst, port = lamp(flavor, [(b"MODE 2\n", b"")])
    call(inst, "mode", mode="blink")
    with pytest.raises(ValueError, match="^lamp1: mode: mode must be one of"):
        call(inst, "mode", mode="strobe")
    with pytest.raises(TypeError, match=r"^mode takes 1 argument\(s\) \(mode\): got an "
                                        "unexpected keyword argument 'colour'"):
        call(inst, "mode", mode="blink", colour="red")
    with pytest.raises(TypeError, match=r"^mode takes 1 argument\(s\) \(mode\): missing"):
        call(inst, "mode")
    port.assert_done()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_each_value_of_star_args_and_star_star_kwargs_is_checked(flavor: str) -> None:
    """The check got the whole tuple (``levels must be an int, got (1, 2)``) and refused
    every call; now each value is checked and named."""
    inst, port = lamp(flavor, [(b"SEQ 1,2\n", b""), (b"TUNE p=0.5,i=0.1\n", b"")])
    call(inst, "sequence", 1, 2)
    call(inst, "tune", p=0.5, i=0.1)
    with pytest.raises(ValueError, match=r"^lamp1: sequence: levels\[1\] must be a number "
                                         "from 0 to 10, got 11$"):
        call(inst, "sequence", 1, 11)
    with pytest.raises(ValueError, match="^lamp1: tune: i must be a number from 0 to 1, got 2$"):
        call(inst, "tune", p=0.5, i=2)
    port.assert_done()
    # validate (and a Lab handle's send) the same: each value against the annotation too
    itype = lamp_type(flavor)
    assert argument_problem(itype, "sequence", (1, 2)) is None
    assert argument_problem(itype, "sequence", (1, "2"))[0] == (  # type: ignore[index]
        "sequence's levels is an int, got '2'")
    assert argument_problem(itype, "sequence", (1, 11))[0] == (  # type: ignore[index]
        "sequence: levels[1] must be a number from 0 to 10, got 11")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_argument_named_owner_is_checked_and_passed(flavor: str) -> None:
    """The wrapper's own first argument was called ``owner``: ``assign(owner="ann")`` got
    "multiple values for argument 'owner'" while validate passed it."""
    assert argument_problem(lamp_type(flavor), "assign", (), {"owner": "ann"}) is None
    assert argument_problem(lamp_type(flavor), "assign", (), {"owner": "eve"})[0] == (  # type: ignore[index]
        "assign: owner must be one of 'ann', 'bob', got 'eve'")
    inst, port = lamp(flavor, [(b"OWNER ann\n", b""), (b"OWNER bob\n", b"")])
    call(inst, "assign", owner="ann")
    call(inst, "assign", "bob")
    with pytest.raises(ValueError, match="^lamp1: assign: owner must be one of"):
        call(inst, "assign", owner="eve")
    port.assert_done()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_rule_of_the_arguments_together_is_checked_by_both(flavor: str) -> None:
    """``rule=`` sees the arguments by name once each passed its own check."""
    message = "window: low must be below high, got 5 and 5"
    assert argument_problem(lamp_type(flavor), "window", (5, 5))[0] == message  # type: ignore[index]
    assert argument_problem(lamp_type(flavor), "window", (2,), {"high": 5}) is None
    assert argument_problem(lamp_type(flavor), "window", (2, 11))[0] == (  # type: ignore[index]
        "window: high must be a number from 0 to 10, got 11")
    inst, port = lamp(flavor, [(b"WIN 2 5\n", b"")])
    with pytest.raises(ValueError) as info:
        call(inst, "window", low=5, high=5)
    assert str(info.value) == f"lamp1: {message}"
    call(inst, "window", 2, high=5)
    port.assert_done()
