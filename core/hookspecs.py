"""Every extension point of daqhub, in one file.

A plugin is a module (or a module-level object) named by an entry point in the
group ``daqhub``::

    [project.entry-points.daqhub]
    acme = "daqhub_acme.plugin"

and implements any of the hooks below with ``@hookimpl``::

    from daqhub.hookspecs import hookimpl

    @hookimpl
    def daqhub_instrument_types():
        return [InstrumentType(...)]

A hook implementation may take a subset of the arguments a spec lists; a
misspelled argument or a hook name that is not listed here is reported as a
broken plugin (the host keeps running without it). Hooks that collect return a
list; the host merges the lists of all plugins and reports clashes (two
plugins declaring the same instrument type in the same flavor, or the same
storage backend) instead of letting the last one win silently.

The core never calls ``pm.hook.x(...)`` directly: :class:`daqhub.host.PluginHost`
has one typed method per hook, and calls each implementation itself, one at a time, in
registration order (installed plugins: by distribution name, then entry-point name), so one
plugin's exception cannot hide another's result. What that means for pluggy's features:

* hook wrappers (``wrapper=True``, ``hookwrapper=True``) are not supported: a plugin with
  one is reported as broken and not used;
* ``firstresult`` is not used: every hook either collects every plugin's list or tells
  every plugin;
* ``tryfirst``/``trylast`` are ignored (registration order decides);
* ``pluggy``'s own tracing sees nothing: set ``DAQHUB_TRACE_HOOKS=1`` for the host's trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pluggy

from .specs import CliCommand, ConfigProblem, Converter, InstrumentType, StorageBackend

PROJECT = "daqhub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- what a plugin provides -------------------------------------------------

@hookspec
def daqhub_instrument_types() -> Sequence[InstrumentType]:
    """Instrument types this plugin provides, one entry per flavor.

    A driver with both flavors returns two ``InstrumentType``s with the same
    ``name``: one ``flavor="v2"`` (a blocking class the V2 runtime polls from a
    thread) and one ``flavor="v4"`` (an actor the V4 runtime supervises).
    """


@hookspec
def daqhub_capabilities() -> Sequence[type]:
    """Capabilities this plugin adds (a shutter, a filter wheel ...) beyond the core's.

    A capability is a ``typing.Protocol`` class: its name is what an ``InstrumentType`` lists
    in ``capabilities``, its public methods what every such type implements (blocking in a v2
    class, ``async def`` in a v4 actor; the host checks both when it loads the type). See
    :mod:`daqhub.capabilities` for the core's own.
    """


@hookspec
def daqhub_storage_backends() -> Sequence[StorageBackend]:
    """Storage backends (``hdf5``, ``arrow``, ...) a lab can name as ``storage = "..."``."""


@hookspec
def daqhub_converters() -> Sequence[Converter]:
    """Converters between measurement formats (``v2``, ``unified``, ``arrow``)."""


@hookspec
def daqhub_serial_url_packages() -> Sequence[str]:
    """Packages holding pyserial URL handlers (``protocol_<scheme>`` modules).

    The serial manager adds them to ``serial.protocol_handler_packages`` so a
    lab file can name ports such as ``sim://elliptec`` that a plugin serves.
    A ``protocol_<scheme>`` module may also define ``canonical_url(url) -> str``, naming
    the device a URL reaches (two spellings of one simulated bus give one string): the core
    keys shared ports by it, so both spellings share one port and one lock.
    """


@hookspec
def daqhub_cli_commands() -> Sequence[CliCommand]:
    """Extra ``daqhub`` subcommands (e.g. ``daqhub sim`` from daqhub-sims)."""


@hookspec
def daqhub_validate_config(config: Mapping[str, Any]) -> Sequence[ConfigProblem | str]:
    """Extra problems this plugin finds in a parsed lab file.

    Called after the core's own validation with the whole parsed file; return an empty list
    when all is well. A :class:`~daqhub.specs.ConfigProblem` carries the path of the value at
    fault, so the lab gets its line number; a plain sentence is reported at line 1.
    """


# --- what a plugin is told (notifications; return values are ignored) --------

@hookspec
def daqhub_session_started(session_id: str, output_dirs: Mapping[str, str]) -> None:
    """A run started; ``output_dirs`` maps flavor to its session directory."""


@hookspec
def daqhub_session_stopped(session_id: str, report: Mapping[str, Any]) -> None:
    """A run ended; ``report`` is the shutdown report (what stopped, was forced, leaked)."""


@hookspec
def daqhub_resource_event(resource: str, event: str, detail: str) -> None:
    """A shared resource changed state: ``event`` is ``disconnected`` or ``reconnected``."""


@hookspec
def daqhub_instrument_event(instrument_id: str, event: str, detail: str) -> None:
    """An instrument changed state: ``disconnected``, ``reconnected``, ``restarted`` or ``failed``.

    Meant for alerting plugins (mail, chat, a lab dashboard).
    """
