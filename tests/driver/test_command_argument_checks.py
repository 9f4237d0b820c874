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


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize(("method", "args", "kwargs", "said"), [
    ("mode", (), {"pos": "blink"},
     "mode takes 1 argument (mode): got an unexpected keyword argument 'pos'"),
    ("flash", ("red",), {"colour": "red"},
     "flash takes 1 to 2 arguments (colour, seconds=1.0): multiple values for argument "
     "'colour'"),
    ("window", (), {"low": 1, "hihg": 5},
     "window takes 2 arguments (low, high): got an unexpected keyword argument 'hihg'"),
    ("window", (), {"low": 1}, "window takes 2 arguments (low, high): missing a required "
                               "argument: 'high'"),
    ("mode", (), {}, "mode takes 1 argument (mode), got 0"),
    ("window", (1, 2, 3), {}, "window takes 2 arguments (low, high), got 3"),
], ids=["misspelt", "twice", "misspelt of two", "missing", "none", "too many"])
def test_arguments_a_command_cannot_take_are_said_as_python_says_them(
        flavor: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        said: str) -> None:
    """``mode(pos="blink")`` was "mode takes 1 argument (mode), got 0": the count of the
    positions, not a word of the keyword given."""
    assert argument_problem(lamp_type(flavor), method, args, kwargs) == (
        said, "fix the arguments" if kwargs else "fix the number of arguments")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_declared_command_names_a_keyword_it_does_not_take(flavor: str) -> None:
    """Called directly, ``mode(pos=...)`` said "missing a required argument: 'mode'"."""
    inst, port = lamp(flavor, [])
    with pytest.raises(TypeError, match=r"^mode takes 1 argument\(s\) \(mode\): got an "
                                        "unexpected keyword argument 'pos'$"):
        call(inst, "mode", pos="blink")
    assert port.sent == []


class Owner:
    id = "dev"


def test_a_rule_that_cannot_take_the_arguments_by_name_is_refused_when_declared() -> None:
    """A function of one value (as ``Arg(rule=)`` takes) given as the whole call's rule: the
    class was defined, and every call failed with "positive() got an unexpected keyword
    argument 'speed'"."""
    def positive(value: float) -> None:
        if value <= 0:
            raise ValueError("must be above 0")

    with pytest.raises(TypeError, match=r"go: @command\(rule=positive\): the rule is given "
                                        r"go's arguments by name \(speed\), and cannot take "
                                        r"them: got an unexpected keyword argument 'speed'$"):
        @command(speed=Arg(float), rule=positive)
        def go(self: Any, speed: float) -> None:
            """Go."""


def test_a_rule_gets_star_args_and_star_star_kwargs_under_their_names() -> None:
    got: list[tuple[Any, ...]] = []

    @command(rule=lambda first, rest, named: got.append((first, rest, named)))
    def spread(self: Any, first: int = 0, *rest: int, **named: int) -> None:
        """Spread."""

    spread(Owner(), 1, 2, 3, x=4)
    spread(Owner())
    assert got == [(1, (2, 3), {"x": 4}), (0, (), {})]


def test_a_function_as_rule_of_a_method_with_an_argument_named_rule_is_refused() -> None:
    """``rule=`` was the whole call's check or the argument's, as the value was a function or
    an Arg: a function meant for the argument silently checked the whole call."""
    with pytest.raises(TypeError, match=r"pick: @command\(rule=<lambda>\): pick takes an "
                                        "argument named rule, so rule= can only be that "
                                        r"argument's check, an Arg \(rule=Arg"):
        @command(rule=lambda rule: None)
        def pick(self: Any, rule: str) -> None:
            """Pick."""

    @command(rule=Arg(str, choices=("x", "y")))
    def choose(self: Any, rule: str) -> str:
        """Choose."""
        return rule

    assert choose(Owner(), "x") == "x"
    with pytest.raises(ValueError, match="^dev: choose: rule must be one of 'x', 'y', got 'z'$"):
        choose(Owner(), "z")


def test_a_type_error_of_a_rule_names_the_instrument_and_the_command() -> None:
    """A rule comparing values no Arg checked (``"x" < 1.0``) raised Python's bare
    "'<' not supported between instances of 'str' and 'float'" from the call, while
    ``validate`` said it naming the command."""
    def ordered(low: Any, high: Any) -> None:
        if not low < high:
            raise ValueError(f"low must be below high, got {low!r} and {high!r}")

    class Span:
        @command(rule=ordered)
        def span(self, low: Any, high: Any) -> tuple[Any, Any]:
            """Span."""
            return low, high

    itype = InstrumentType("test.span", "v2", "none", Span, [], "")
    said = "span: '<' not supported between instances of 'str' and 'float'"
    assert argument_problem(itype, "span", ("x", 1.0)) == (
        said, "daqhub plugins test.span lists its commands and arguments")
    with pytest.raises(TypeError) as info:
        Span.span(Owner(), "x", 1.0)
    assert str(info.value) == f"dev: {said}"
    with pytest.raises(ValueError, match="^dev: span: low must be below high, got 2 and 1$"):
        Span.span(Owner(), 2, 1)
    assert Span.span(Owner(), 1, 2) == (1, 2)
