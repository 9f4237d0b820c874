"""What plugins hand to the core: instrument types, storage backends, converters.

These are plain frozen dataclasses so a plugin author can read every field in
one place, and so the host can validate a declaration before anything uses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

import pyarrow as pa

from .measurement import FLAVORS, ChannelSpec, Flavor

if TYPE_CHECKING:
    from .resources.serial import SharedSerialPort
    from .resources.visa import SharedVisaResource

Transport: TypeAlias = Literal["serial", "visa", "none"]
TRANSPORTS: tuple[Transport, ...] = ("serial", "visa", "none")

_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9][a-z0-9_]*)+$")


@dataclass
class InstrumentContext:
    """Everything a factory gets to build one instrument of either flavor.

    Hardware arrives as a handle on a core-owned shared resource: a driver never
    opens a port or a VISA session itself, which is what lets both flavors share
    a bus without interleaving.
    """

    instrument_id: str
    type_name: str
    config: Mapping[str, Any]
    channels: Sequence[ChannelSpec]
    port: SharedSerialPort | None = None
    visa: SharedVisaResource | None = None


ChannelsFor: TypeAlias = Callable[[Mapping[str, Any]], Sequence[ChannelSpec]]


@dataclass(frozen=True)
class InstrumentType:
    """One instrument type in one flavor, as a plugin declares it.

    ``config_schema`` is a JSON schema (an ``object`` with ``properties``) for the
    keys of the instrument's block beyond the ones the core owns (``id``,
    ``type``, ``port``/``resource``...). ``channels`` is a list, or a function of
    the validated block when channels depend on configuration (user-defined
    SCPI readings).
    """

    name: str
    flavor: Flavor
    transport: Transport
    factory: Callable[[InstrumentContext], Any]
    channels: Sequence[ChannelSpec] | ChannelsFor
    description: str
    config_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    capabilities: tuple[str, ...] = ()
    #: pyserial settings for ``transport == "serial"`` (baudrate, rtscts, ...), overridable per lab.
    serial_settings: Mapping[str, Any] = field(default_factory=dict)

    def channels_for(self, config: Mapping[str, Any]) -> list[ChannelSpec]:
        chans = self.channels(config) if callable(self.channels) else self.channels
        return list(chans)

    def problems(self) -> list[str]:
        out = []
        if not _TYPE_NAME.match(self.name):
            out.append(f"type name {self.name!r} must look like 'vendor.model' (lower case)")
        if self.flavor not in FLAVORS:
            out.append(f"flavor {self.flavor!r} is not one of {FLAVORS}")
        if self.transport not in TRANSPORTS:
            out.append(f"transport {self.transport!r} is not one of {TRANSPORTS}")
        if not callable(self.factory):
            out.append("factory is not callable")
        schema = self.config_schema
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            out.append("config_schema must be a JSON schema of type 'object'")
        if not callable(self.channels):
            out += channel_problems(self.channels)
        return out


def channel_problems(channels: object) -> list[str]:
    """What is wrong with a channel declaration (a static list, or what a channels function
    returned): it must be a sequence of uniquely named :class:`ChannelSpec`."""
    if not isinstance(channels, Sequence) or isinstance(channels, str | bytes):
        return [f"channels must be a list of ChannelSpec, got {type(channels).__name__}"]
    bad = [f"item {i} is a {type(c).__name__}" for i, c in enumerate(channels)
           if not isinstance(c, ChannelSpec)]
    if bad:
        return [f"channels must be ChannelSpec objects: {', '.join(bad)}"]
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        return [f"duplicate channel names in {names}"]
    return []


class StorageWriter(Protocol):
    """An open storage session of one backend for one flavor.

    The router serializes calls to one writer, though they may come from different
    threads. A writer may expose ``flush_interval`` (seconds): the router then also
    flushes it when it has been idle that long. ``flush()`` must be cheap when nothing
    new was written, and ``close()`` may follow a failed open (cleanup).
    """

    def write(self, batch: pa.RecordBatch) -> None:
        """Take one unified-stream batch (one channel of one instrument)."""

    def flush(self) -> None:
        """Make everything written so far durable and readable by plain tools."""

    def close(self) -> list[Path]:
        """Flush, close and return the files written."""


@dataclass(frozen=True)
class StorageTarget:
    """Where and what a storage backend writes, fixed before acquisition starts."""

    directory: Path
    session_id: str
    #: instrument id -> its channel declarations
    channels: Mapping[str, Sequence[ChannelSpec]]
    #: instrument id -> type name and block from the lab file (stored with the data)
    instruments: Mapping[str, Mapping[str, Any]]
    lab_config: str
    versions: Mapping[str, str]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StorageBackend:
    name: str
    open: Callable[[StorageTarget], StorageWriter]
    description: str
    #: JSON schema of backend options accepted in the lab file's ``[storage.<name>]`` table
    options_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})


Format: TypeAlias = Literal["v2", "unified", "arrow"]


@dataclass(frozen=True)
class Converter:
    """A conversion between measurement formats.

    ``v2``: a sequence of ``Measurement``; ``unified``: a sequence of
    ``UnifiedMeasurement``; ``arrow``: one channel ``RecordBatch`` of the
    unified schema. Converters into ``arrow`` take the channel declaration too.
    """

    name: str
    source: Format
    target: Format
    convert: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class ConfigProblem:
    """A problem a plugin finds in a lab file, with where it is, so the error names its line.

    ``path`` leads from the top of the parsed file to the offending value, with list
    indexes as ints: ``("v4", "instruments", 2, "address")`` is the ``address`` key of the
    third ``[[v4.instruments]]`` block. An empty path points at the file as a whole.
    """

    message: str
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class CliCommand:
    """A ``daqhub <name> ...`` subcommand a plugin adds (``daqhub sim`` comes this way).

    ``main`` gets the arguments after the command name and returns an exit code (None
    counts as 0; anything else but an int is reported as the plugin's mistake, exit 3).
    """

    name: str
    help: str
    main: Callable[[list[str]], int | None]
