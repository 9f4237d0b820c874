"""The commands an instrument type has, known from its driver class before anything runs.

Both the Lab API (an unknown attribute of a handle is an ``AttributeError`` at
once, whatever the flavor) and routine validation (``daqhub validate`` names a
step the type lacks, or one with the wrong number of arguments) need to know a
type's commands without connecting to hardware; the driver class says it. The same class
says what a command's arguments may be (the runtime refuses others, whoever sends them), and
a command's result goes to a remote caller in the plain values of :func:`plain_result`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa

from .instrument import public_methods
from .measurement import Columns, Measurement, Scalar
from .specs import InstrumentType

#: attribute of a command holding a check of its arguments (a callable taking them, raising
#: ValueError for what the command itself would refuse before sending anything): the driver
#: toolkit gives its generated setters their Parameter's range and choices, so that
#: ``daqhub validate`` finds ``["set_wavelength", 5000]`` before the run sends it
ARGUMENT_CHECK = "__daqhub_argument_check__"


def driver_class(itype: InstrumentType) -> type | None:
    """The class the type's factory builds (a class, or a ``functools.partial`` of one)."""
    factory: Any = itype.factory
    while isinstance(factory, functools.partial):
        factory = factory.func
    return factory if isinstance(factory, type) else None


def command_names(itype: InstrumentType) -> list[str] | None:
    """The type's commands, or None when its factory is a function (then unknown until run)."""
    cls = driver_class(itype)
    return public_methods(cls) if cls is not None else None


def argument_problem(itype: InstrumentType, command: str, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any] | None = None) -> tuple[str, str] | None:
    """Why ``command(*args)`` cannot be called on the type, and what to do, or None when it
    can (or is unknown): the number of arguments, a value of another kind where the
    driver's signature says ``float``, ``int``, ``bool`` or ``str`` (a routine's
    ``["move_absolute", "abc"]``), or a value the command's own check refuses
    (:data:`ARGUMENT_CHECK`)."""
    cls = driver_class(itype)
    sig = command_signature(cls, command)
    if sig is None:
        return None
    kwargs = kwargs or {}
    try:
        bound = bind_arguments(sig, (None, *args), kwargs)  # None stands for self
    except TypeError as exc:
        params = [p for p in list(sig.parameters.values())[1:]
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        need = sum(1 for p in params if p.default is p.empty)
        shape = ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}"
                          for p in params)
        count = f"{need}" if need == len(params) else f"{need} to {len(params)}"
        takes = f"{command} takes {count} argument{'s' if len(params) != 1 else ''} ({shape})"
        if kwargs:  # a count of the positions says nothing of a misspelt or doubled keyword
            return f"{takes}: {exc}", "fix the arguments"
        return f"{takes}, got {len(args)}", "fix the number of arguments"
    hint = f"daqhub plugins {itype.name} lists its commands and arguments"
    for name, value in list(bound.arguments.items())[1:]:
        param = sig.parameters[name]
        kind = param.annotation
        kind = kind.__name__ if isinstance(kind, type) else str(kind)
        # *args and **kwargs are bound as a tuple and a dict: their annotation is each value's
        values = (value if param.kind is param.VAR_POSITIONAL else
                  value.values() if param.kind is param.VAR_KEYWORD else (value,))
        for each in values:
            if not value_fits(kind, each):
                return f"{command}'s {name} is {a_kind(kind)}, got {each!r}", hint
    check = getattr(getattr(cls, command), ARGUMENT_CHECK, None)
    if check is not None:
        try:
            check(*args, **kwargs)
        except (ValueError, TypeError) as exc:  # TypeError: a value of another kind
            return f"{command}: {exc}", hint
    return None


def bind_arguments(sig: inspect.Signature, args: tuple[Any, ...], kwargs: Mapping[str, Any]
                   ) -> inspect.BoundArguments:
    """``sig.bind(*args, **kwargs)``, whose TypeError names a keyword the signature does not
    take, or one given twice, before an argument it then lacks: ``bind`` alone said
    ``define_position(pos=0)`` was "missing a required argument: 'position'", not a word of
    ``pos``."""
    try:
        return sig.bind(*args, **kwargs)
    except TypeError:
        sig.bind_partial(*args, **kwargs)  # raises the TypeError about the keywords, if any
        raise


class ArgumentsRefused(ValueError):
    """A command not sent: its arguments are not what its driver takes
    (:func:`argument_problem`). A ValueError, as the Lab API raised it; a remote caller (the
    dashboard, the data service) answers it as the client's mistake, not the instrument's."""


def check_arguments(instrument_id: str, itype: InstrumentType | None, command: str,
                    args: tuple[Any, ...], kwargs: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`ArgumentsRefused` for a command whose arguments the instrument's type
    refuses (``itype`` None: not running here, nothing to check). The runtime checks every
    command so, whoever sends it: the dashboard and the data service sent theirs unchecked,
    and ``set_output("off")`` went out as ``OUTP 1`` (a string is true)."""
    problem = None if itype is None else argument_problem(itype, command, args, kwargs)
    if problem is not None:
        raise ArgumentsRefused(f"{instrument_id}: {problem[0]} ({problem[1]})")


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ in ("bool", "bool_")  # numpy's


@functools.lru_cache(maxsize=1024)
def command_signature(cls: type | None, command: str) -> inspect.Signature | None:
    """A command's signature (None: unknown), read once per class and command: a script's
    every command is checked (:func:`argument_problem`) and timed
    (:func:`daqhub.command_limits.wait_limit`) by it."""
    if cls is None:
        return None
    try:
        return inspect.signature(getattr(cls, command))
    except (AttributeError, TypeError, ValueError):
        return None


def a_kind(kind: str) -> str:
    """``a float``, ``an int``: a kind as refusals name it."""
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def value_fits(kind: str, value: Any) -> bool:
    """Whether ``value`` is a ``kind`` (``"bool"``, ``"int"``, ``"float"``, ``"str"``; any
    other kind is not checked here): the one rule for commands' and parameters' values."""
    accepts = _SIMPLE.get(kind)
    return accepts is None or accepts(value)


#: annotations a command's value is checked against (a driver's signature says them); numbers
#: of numpy's kinds pass, as a script's ``np.linspace`` values must
_SIMPLE: dict[str, Callable[[Any], bool]] = {
    "float": lambda v: isinstance(v, numbers.Real) and not _is_bool(v),
    "int": lambda v: isinstance(v, numbers.Integral) and not _is_bool(v),
    "bool": _is_bool,
    "str": lambda v: isinstance(v, str),
}


class NotSendable(TypeError):
    """A command's result holds a value that has no JSON form."""


def plain_result(value: Any) -> Any:
    """A remote command's result (the data service's ``call``, the dashboard's command box) in
    plain JSON values, as close to what the Lab API returns in the run's own process as JSON
    allows.

    A sample (:class:`Measurement`, :class:`Scalar`, :class:`Columns`) or a dataclass
    (:class:`Spectrum`, :class:`Image`) is a dict of its fields, an Arrow batch or table its
    rows (``to_pylist``), a numpy array (nested) lists, a numpy number a Python one, an enum
    its value. Anything else raises :class:`NotSendable`: the service sent ``str(result)``,
    and a client took ``"Measurement(instrument_id='stage', ..."`` for the answer; the page
    showed a batch's repr where ``daqhub view`` showed its rows.
    """
    if isinstance(value, Enum):  # before int and str: an IntEnum or StrEnum is one too
        return plain_result(value.value)
    if value is None or isinstance(value, str | int | float):  # bool too; a subclass as is
        return value
    if isinstance(value, np.ndarray | np.generic):
        return plain_result(value.tolist())
    if isinstance(value, pa.RecordBatch | pa.Table | pa.Array | pa.ChunkedArray):
        return plain_result(value.to_pylist())
    if isinstance(value, pa.Scalar):
        return plain_result(value.as_py())
    if isinstance(value, Measurement | Scalar | Columns):  # slotted, not dataclasses
        return {name: plain_result(getattr(value, name)) for name in value.__slots__}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_result(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        bad = [k for k in value if not (k is None or isinstance(k, str | int | float))]
        if bad:
            raise NotSendable(f"a dict key of type {type(bad[0]).__name__}")
        return {k: plain_result(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_result(v) for v in value]
    raise NotSendable(f"a value of type {type(value).__name__}")
