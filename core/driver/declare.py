"""Declarative commands and parameters: a driver's protocol table, one line per entry.

::

    class Tc1(Session):
        setpoint = Parameter("SETP?", "SETP {:.3f}", parse=kelvin, unit="K", range=(3, 500))
        heater = Parameter("HEAT?", parse=percent, unit="%")
        reset = Command("*RST", doc="Factory settings.")

A :class:`Parameter` named ``setpoint`` gives every flavor the commands ``setpoint()`` (send
the query, parse the reply) and ``set_setpoint(value)`` (check the value, then send the set
command), and an entry ``setpoint`` in the settings snapshot. A :class:`Command` gives one
command with the declared arguments. Templates are ``str.format`` strings: ``{}`` is the value
(or the arguments in order), and named fields (``{axis}``) come from :attr:`Session.fields`.
A template's fields are checked when its session class is defined (:func:`check_templates`):
a set template without its ``{}`` sent the command without the value, and said nothing.

What a value may be is an :class:`Arg` (kind, range, choices), one rule for a parameter's
value, a :class:`Command`'s arguments and an ``@command``'s (``@command(speed=Arg(...))``):
checked before anything is sent, and by ``daqhub validate`` for a routine step
(:data:`~daqhub.commands.ARGUMENT_CHECK`), which otherwise saw only parameters' checks.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..commands import ARGUMENT_CHECK, a_kind, bind_arguments, value_fits
from .transaction import Transaction, parser_name

if TYPE_CHECKING:
    from .session import Session

T = TypeVar("T")
COMMAND_MARK = "__daqhub_command__"


class Arg:
    """What a value may be: ``kind`` (``bool``, ``int``, ``float`` or ``str``), ``range``
    (inclusive, a finite number; ``unit`` follows it in refusals), ``choices`` (of a
    mapping, its keys: a :class:`Parameter` or :class:`Command` sends the values), and
    ``rule``, a function of the value that raises ValueError in its own words (a check the
    driver already has). Each one given is checked, in that order, by :meth:`check`: the one
    rule for what the toolkit sends and what ``daqhub validate`` accepts."""

    def __init__(self, kind: type | None = None, *, range: tuple[float, float] | None = None,
                 choices: Sequence[Any] | Mapping[Any, Any] | None = None, unit: str = "",
                 rule: Callable[[Any], Any] | None = None) -> None:
        self.kind, self.range, self.choices, self.unit, self.rule = kind, range, choices, unit, rule

    def check(self, name: str, value: Any) -> Any:
        """``value`` as the wire carries it (translated by mapping choices); a ValueError
        naming ``name``, what it may be and what it got, if it is not allowed."""
        if self.kind is not None and not value_fits(self.kind.__name__, value):
            raise ValueError(f"{name} must be {a_kind(self.kind.__name__)}, got {value!r}")
        if self.range is not None:
            low, high = self.range
            if (not value_fits("float", value) or not math.isfinite(value)
                    or not low <= value <= high):
                raise ValueError(f"{name} must be a number{self.allowed()}"
                                 f"{' ' + self.unit if self.unit else ''}, got {value!r}")
        if self.choices is not None and not _among(value, self.choices):
            raise ValueError(f"{name} must be{self.allowed()}, got {value!r}")
        if self.rule is not None:
            self.rule(value)
        return self.choices[value] if isinstance(self.choices, Mapping) else value

    def allowed(self) -> str:
        """`` from 1 to 9`` or `` one of 'a', 'b'`` (empty: anything of its kind), for
        refusals and the generated commands' docstrings."""
        if self.range is not None:
            return f" from {self.range[0]:g} to {self.range[1]:g}"
        if self.choices is not None:
            return f" one of {', '.join(map(repr, self.choices))}"
        return ""


def _among(value: Any, choices: Sequence[Any] | Mapping[Any, Any]) -> bool:
    """Whether ``value`` is one of ``choices`` (a list from a script is none of a mapping's
    keys, not the TypeError ``in`` raises for it)."""
    try:
        return value in choices
    except TypeError:
        return False


def command(fn: Callable[..., Any] | None = None, /, *,
            rule: Callable[..., Any] | Arg | None = None, **args: Arg) -> Callable[..., Any]:
    """Mark a session method (a plan, a Transaction, or plain code) as a user command.

    Both flavors get a method of the same name, signature and docstring; the command list
    shown to users is built from these marks and the declarations of this module.

    ``@command(speed=Arg(choices=SPEEDS))`` also declares checks of its arguments
    (:class:`Arg`): a value one refuses is a ValueError naming the instrument (the object's
    ``id``), the command and the argument, raised before the method runs (nothing sent),
    and ``daqhub validate`` refuses a routine step with it. Each value of a ``*args`` or
    ``**kwargs`` is checked by its ``Arg``; a default is not (it is the driver's, not the
    caller's). ``rule``, a function taking the arguments by name (defaults filled in; a
    ``*args`` as a tuple, a ``**kwargs`` as a dict, under their names), checks them together
    after each passed its own (an ESP300's left limit below its right one), raising
    ValueError in its own words. The same marks on a helper's method declare the checks of
    the command a :class:`Delegate` forwards to it.
    """
    if isinstance(rule, Arg):  # the check of an argument named ``rule``
        args, rule = {**args, "rule": rule}, None
    if fn is None:
        return functools.partial(_checked, args=args, rule=rule)
    return _checked(fn, args, rule)


def _checked(fn: Callable[..., Any], args: Mapping[str, Arg],
             rule: Callable[..., Any] | None = None) -> Callable[..., Any]:
    if not args and rule is None:
        setattr(fn, COMMAND_MARK, True)
        return fn
    sig = inspect.signature(fn)
    names = list(sig.parameters)[1:]
    if unknown := sorted(set(args) - set(names)):
        raise TypeError(f"{fn.__qualname__}: @command checks {', '.join(unknown)}, which it "
                        f"does not take")
    if rule is not None:
        _rule_fits(fn, names, rule)

    def check(*values: Any, **named: Any) -> None:
        try:
            bound = sig.bind(None, *values, **named)  # None stands for self
        except TypeError:
            return  # the number of arguments: Python's (and validate's) to report
        for name, value in list(bound.arguments.items())[1:]:
            arg = args.get(name)
            if arg is None:
                continue
            kind = sig.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                for i, each in enumerate(value):
                    arg.check(f"{name}[{i}]", each)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                for key, each in value.items():
                    arg.check(key, each)
            else:
                arg.check(name, value)
        if rule is not None:
            bound.apply_defaults()
            rule(**dict(list(bound.arguments.items())[1:]))

    @functools.wraps(fn)
    def checked(owner: Any, /, *values: Any, **named: Any) -> Any:
        try:
            check(*values, **named)
        except (ValueError, TypeError) as exc:  # TypeError: a rule met a value of a kind
            who = getattr(owner, "id", None)  # no Arg checked (``"x" < 1.0``)
            refusal = TypeError if isinstance(exc, TypeError) else ValueError
            raise refusal(f"{who + ': ' if isinstance(who, str) else ''}{fn.__name__}: "
                          f"{exc}") from None
        return fn(owner, *values, **named)

    setattr(checked, ARGUMENT_CHECK, check)
    setattr(checked, COMMAND_MARK, True)
    return checked


def _rule_fits(fn: Callable[..., Any], names: Sequence[str], rule: Callable[..., Any]
               ) -> None:
    """Refuse, when the class is defined, a whole-call ``rule`` that cannot take ``fn``'s
    arguments by name (a function of one value, as :class:`Arg` takes, failed at the first
    call only, with Python's TypeError), or one given to a method with an argument of its own
    named ``rule``: ``rule=`` would be that argument's check or the whole call's, as the
    value is an :class:`Arg` or a function."""
    where = f"{fn.__qualname__}: @command(rule={getattr(rule, '__name__', repr(rule))})"
    if "rule" in names:
        raise TypeError(f"{where}: {fn.__name__} takes an argument named rule, so rule= can "
                        f"only be that argument's check, an Arg (rule=Arg(str, choices=...)); "
                        f"check the arguments together in the method's own code")
    try:
        rule_sig = inspect.signature(rule)
    except (TypeError, ValueError):  # a builtin without one: its call will tell
        return
    try:
        bind_arguments(rule_sig, (), dict.fromkeys(names))
    except TypeError as exc:
        raise TypeError(f"{where}: the rule is given {fn.__name__}'s arguments by name "
                        f"({', '.join(names) or 'none'}), and cannot take them: {exc}"
                        ) from None


class _Declared:
    name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        for base in owner.__mro__[1:]:
            taken = vars(base).get(name)
            if taken is not None and not isinstance(taken, _Declared):
                raise TypeError(f"{owner.__qualname__}.{name}: the name is taken by "
                                f"{base.__qualname__}.{name}; declare it under another name")
        self.name = name


class Parameter(_Declared, Generic[T]):
    """A value of the instrument that can be read (``get``) and, if ``set`` is given, changed.

    ``parse`` turns the reply text into the value (``float`` by default; a ValueError becomes
    a reply error naming the command). ``range`` (inclusive) and ``choices`` are checked
    before anything is sent, so bad input gets a clear ``ValueError`` and the instrument is
    left as it was. ``choices`` given as a mapping translates the user's value to what the
    wire carries (``{"W": 1, "dBm": 3}``) and the parsed reply back. ``format`` turns the
    (translated) value into its text for the template (default: ``format()``'s own). ``ack``
    is the reply a set command must get (``"OK"``), None when the instrument stays silent.
    ``setting=False`` leaves it out of the settings snapshot (a reading, not a setting).
    ``kind`` (``bool``, ``int``, ``float`` or ``str``) is the type a set value must have,
    checked before sending and by ``daqhub validate``: a format such as ``str(int(bool(on)))``
    took ``"off"`` as true.
    """

    def __init__(self, get: str | None, set: str | None = None, *,
                 parse: Callable[[str], Any] = float, unit: str = "",
                 range: tuple[float, float] | None = None,
                 choices: Sequence[Any] | Mapping[Any, Any] | None = None,
                 format: Callable[[Any], str] | None = None, ack: str | None = None,
                 doc: str = "", setting: bool = True, urgent: bool = False,
                 kind: type | None = None) -> None:
        if get is None and set is None:
            raise ValueError("a Parameter needs a query, a set command or both")
        self.get, self.set, self.parse, self.unit = get, set, parse, unit
        self.arg = Arg(kind, range=range, choices=choices, unit=unit)
        self.format, self.ack = format, ack
        self.doc, self.setting, self.urgent = doc, setting and get is not None, urgent

    def query(self, session: Session) -> Transaction[T]:
        """The transaction that reads the value."""
        if self.get is None:
            raise TypeError(f"{self.name} is write-only")
        command = _filled(self.get, (), session, self.name)
        return Transaction(command, self.reply_parser, urgent=self.urgent)

    @functools.cached_property
    def reply_parser(self) -> Callable[[str], Any]:
        """``parse``, read back through the choices when they map user values to wire ones
        (made once: it is the same for every query)."""
        raw = self.parse
        choices = self.arg.choices
        if not isinstance(choices, Mapping):
            return raw
        back = {wire: user for user, wire in choices.items()}

        def parse(text: str) -> Any:
            wire = raw(text)
            if wire not in back:
                raise ValueError(f"not one of the known values {sorted(map(str, back))}")
            return back[wire]
        parse.__qualname__ = f"{parser_name(raw)} and the choices of {self.name}"
        return parse

    def check(self, value: Any) -> Any:
        """``value`` as the wire carries it; ValueError (nothing sent) if it is not allowed."""
        return self.arg.check(self.name, value)

    def assign(self, session: Session, value: Any) -> Transaction[None]:
        """The transaction that sets the value (after :meth:`check`)."""
        if self.set is None:
            raise TypeError(f"{self.name} is read-only")
        wire = self.check(value)
        text = _formatted(self.format, wire, session, self.name)
        return Transaction(_filled(self.set, (text,), session, self.name), _ack(self.ack),
                           urgent=self.urgent)

    def template_problem(self) -> str | None:
        """What is wrong with the templates (a query takes no value, a set command one)."""
        return (_template_problem(self.get, 0, "the query") if self.get is not None else None
                ) or (_template_problem(self.set, 1, "the set command")
                      if self.set is not None else None)

    def commands(self) -> dict[str, Callable[..., Any]]:
        """The commands this declaration gives a session: ``name`` and ``set_name``."""
        out: dict[str, Callable[..., Any]] = {}
        unit = f" ({self.unit})" if self.unit else ""
        if self.get is not None:
            def get(session: Session) -> Transaction[T]:
                return self.query(session)
            get.__doc__ = f"{self.doc or self.name}{unit}: sends {self.get!r}."
            out[self.name] = _named(get, self.name, [])
        if self.set is not None:
            def set_(session: Session, value: Any) -> Transaction[None]:
                return self.assign(session, value)
            set_.__doc__ = (f"Set {self.doc or self.name}{unit}{self.arg.allowed()}: sends "
                            f"{self.set!r}.")
            setattr(set_, ARGUMENT_CHECK, self.check)
            out[f"set_{self.name}"] = _named(set_, f"set_{self.name}", ["value"], self.arg.kind)
        return out


class Command(_Declared):
    """A plain command: ``template`` filled with the call's arguments, its reply parsed by
    ``parse`` (None: no reply, or the ``ack`` it must get). ``kind``, ``range`` and
    ``choices`` are what each argument may be (:class:`Arg`, as for a :class:`Parameter`):
    checked before anything is sent, and by ``daqhub validate``. The arguments are given in
    order or by name (``define_position(position=0)``), as the command's signature says."""

    def __init__(self, template: str, *args: str, parse: Callable[[str], Any] | None = None,
                 format: Callable[[Any], str] | None = None, ack: str | None = None,
                 urgent: bool = False, doc: str = "", kind: type | None = None,
                 range: tuple[float, float] | None = None,
                 choices: Sequence[Any] | Mapping[Any, Any] | None = None) -> None:
        self.template, self.args, self.parse, self.format = template, args, parse, format
        self.ack, self.urgent, self.doc = ack, urgent, doc
        self.arg = Arg(kind, range=range, choices=choices)
        self.signature = inspect.Signature(_parameters(args, kind))

    def check(self, *values: Any, **named: Any) -> list[Any]:
        """The values (given in order or by name) as the wire carries them, in the order of
        the arguments; ValueError naming the argument if one is not allowed, TypeError
        naming the command if they are not its arguments."""
        try:
            given = bind_arguments(self.signature, values, named).args
        except TypeError as exc:
            raise TypeError(f"{self.name} takes {len(self.args)} argument(s) "
                            f"({', '.join(self.args)}): {exc}") from None
        return [self.arg.check(name, v) for name, v in zip(self.args, given, strict=True)]

    def transaction(self, session: Session, *values: Any, **named: Any) -> Transaction[Any]:
        try:
            wire = self.check(*values, **named)
        except ValueError as exc:
            raise ValueError(f"{session.id}: {self.name}: {exc}") from None
        texts = [_formatted(self.format, v, session, self.name) for v in wire]
        parse = self.parse if self.parse is not None else _ack(self.ack)
        return Transaction(_filled(self.template, texts, session, self.name), parse,
                           urgent=self.urgent)

    def template_problem(self) -> str | None:
        """What is wrong with the template (one field per declared argument)."""
        return _template_problem(self.template, len(self.args), "the command")

    def commands(self) -> dict[str, Callable[..., Any]]:
        def run(session: Session, /, *values: Any, **named: Any) -> Transaction[Any]:
            return self.transaction(session, *values, **named)
        allowed = self.arg.allowed()
        each = f"; {', '.join(self.args)}{allowed}" if allowed and self.args else ""
        run.__doc__ = f"{self.doc or self.name}{each}: sends {self.template!r}."
        setattr(run, ARGUMENT_CHECK, self.check)
        return {self.name: _named(run, self.name, self.args, self.arg.kind)}


class Delegate(_Declared):
    """Commands carried out by a helper object the session holds (``self.<attribute>``),
    whose methods of the same names return plans: ``Delegate("axis", Axis, "home", "stop")``.

    ``cls`` is the helper's class, for the commands' signatures and docstrings, and the
    checks of their arguments (``@command(percent=Arg(...))`` on the helper's method).
    """

    def __init__(self, attribute: str, cls: type, *names: str) -> None:
        self.attribute, self.cls, self.names = attribute, cls, names

    def commands(self) -> dict[str, Callable[..., Any]]:
        out = {}
        for name in self.names:
            def run(session: Session, /, *args: Any, _name: str = name, **kwargs: Any) -> Any:
                return getattr(getattr(session, self.attribute), _name)(*args, **kwargs)
            target = getattr(self.cls, name)
            run.__doc__ = target.__doc__
            sig = inspect.signature(target)
            run.__signature__ = sig  # type: ignore[attr-defined]
            run.__name__ = run.__qualname__ = name
            check = getattr(target, ARGUMENT_CHECK, None)
            if check is not None:  # the helper's method checks them when called
                setattr(run, ARGUMENT_CHECK, check)
            out[name] = command(run)
        return out


def _formatted(format: Callable[[Any], str] | None, value: Any, session: Session,
               name: str) -> Any:
    """A value's text for a template; a value the formatter refuses names who and what."""
    if format is None:
        return value
    try:
        return format(value)
    except (ValueError, TypeError, ArithmeticError) as exc:  # the wrong kind, inf into int()
        raise ValueError(f"{session.id}: {name} {exc}") from None


def _filled(template: str, values: Sequence[Any], session: Session, name: str) -> str:
    """``template`` with ``values`` and the session's named fields. What ``str.format``
    refuses names the instrument, the declaration and the template (its own error named
    neither): a named field the session does not have is a TypeError, a value the format
    spec does not take (``'H'`` for ``{:d}``) a ValueError. Nothing is sent either way."""
    try:
        return template.format(*values, **session.fields)
    except KeyError as exc:
        have = ", ".join(sorted(session.fields)) or "none"
        raise TypeError(f"{session.id}: {name}: the template {template!r} needs the field "
                        f"{{{exc.args[0]}}}, which the session's fields do not have (they "
                        f"are: {have})") from None
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"{session.id}: {name}: the template {template!r} cannot take "
                         f"{', '.join(map(repr, values)) or 'no value'}: {exc}") from None


#: a field's name up to its attribute or index (``axis`` of ``{axis.name}``, ``0`` of ``{0[1]}``)
_FIELD_NAME = re.compile(r"[^.\[]*")


def _template_problem(template: str, values: int, what: str) -> str | None:
    """Why ``template`` cannot take ``values`` values (in ``{}`` or ``{0}`` fields) besides
    the session's named fields, or None. ``what`` says which template it is."""
    auto, numbered = 0, set()
    pending = [template]
    try:
        while pending:
            for _, field, spec, _ in string.Formatter().parse(pending.pop()):
                if field is None:
                    continue
                if spec and "{" in spec:  # a nested field: {:{width}}
                    pending.append(spec)
                base = _FIELD_NAME.match(field).group()  # type: ignore[union-attr]
                if base == "":
                    auto += 1
                elif base.isdigit():
                    numbered.add(int(base))
                elif not base.isidentifier():
                    return (f"{what} template {template!r} has the field {{{field}}}; a field "
                            "is {} for a value, or a name from the session's fields")
    except ValueError as exc:  # a lone brace
        return f"{what} template {template!r} is not a str.format template: {exc}"
    if auto and numbered:
        return f"{what} template {template!r} mixes {{}} with numbered fields"
    found = auto or len(numbered)
    if numbered and numbered != set(range(found)):
        return f"{what} template {template!r} skips a value (fields {sorted(numbered)})"
    if found == values:
        return None
    if values == 0:
        return (f"{what} template {template!r} has a field for a value, and it takes none "
                "(named fields, such as {axis}, come from the session's fields)")
    if found == 0:
        return (f"{what} template {template!r} has no field ({{}}) for a value: it would "
                f"send {template!r} whatever the value")
    return f"{what} template {template!r} has {found} fields for values, and it takes {values}"


def check_templates(cls: type) -> None:
    """Refuse a session class whose declarations' templates cannot take their values, with
    a TypeError naming the declaration and the template: run when the class is defined, so
    the plugin fails to load instead of sending ``HEAT`` for ``set_heater(False)``.

    Named fields are not looked up here: :attr:`Session.fields` is filled per instance, and
    one it lacks is refused when the command is built (:func:`_filled`)."""
    for klass in cls.__mro__:
        for name, value in vars(klass).items():
            if isinstance(value, Parameter | Command):
                problem = value.template_problem()
                if problem is not None:
                    raise TypeError(f"{klass.__qualname__}.{name}: {problem}")


@functools.cache  # one per acknowledgement text, not one per transaction
def _ack(expected: str | None) -> Callable[[str], None] | None:
    if expected is None:
        return None

    def ack(text: str) -> None:
        if text != expected:
            raise ValueError(f"expected {expected!r}")
    ack.__qualname__ = f"ack {expected!r}"
    return ack


def _named(fn: Callable[..., Any], name: str, args: Sequence[str],
           kind: type | None = None) -> Callable[..., Any]:
    """Give a generated command its user-facing name and signature (``inspect`` shows them)."""
    fn.__name__ = fn.__qualname__ = name
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              *_parameters(args, kind)]
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    setattr(fn, COMMAND_MARK, True)
    return fn


def _parameters(names: Sequence[str], kind: type | None) -> list[inspect.Parameter]:
    """A generated command's arguments, given in order or by name; ``kind`` annotates them,
    so the checks of scripts and routines see it."""
    return [inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              annotation=inspect.Parameter.empty if kind is None else kind)
            for a in names]


def declared_commands(cls: type) -> dict[str, Callable[..., Any]]:
    """Every command of a session class, in declaration order (base classes first)."""
    out: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        made_by: dict[str, str] = {}  # command -> the declaration of this class that made it
        for name, value in vars(klass).items():
            if isinstance(value, Parameter | Command | Delegate):
                made = value.commands()
            elif callable(value) and getattr(value, COMMAND_MARK, False):
                made = {name: value}
            else:
                out.pop(name, None)  # a subclass replaced the command by something else
                continue
            for command in made:  # one class, two declarations, one name: neither may win
                other = made_by.setdefault(command, name)
                if other != name:
                    raise TypeError(f"{klass.__qualname__}: {other!r} and {name!r} both make "
                                    f"the command {command!r}; declare one under another name")
            out.update(made)
    return out


@functools.cache
def urgent_commands(cls: type) -> frozenset[str]:
    """The commands of a session class that take the urgent lane and no argument (an ESP300's
    ``abort``): the runtime runs them at once, beside the command in flight, as it runs
    ``stop``; an urgent command queued behind a ``home`` would come when the motion ended."""
    names: set[str] = set()
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            names.discard(name)  # a subclass may redeclare it as something else
            if isinstance(value, Command) and value.urgent and not value.args:
                names.add(name)
    return frozenset(names)


def parameters(cls: type) -> dict[str, Parameter[Any]]:
    """Declared parameters of a session class by name (base classes first)."""
    out: dict[str, Parameter[Any]] = {}
    for klass in reversed(cls.__mro__):
        out.update((n, v) for n, v in vars(klass).items() if isinstance(v, Parameter))
    return out
