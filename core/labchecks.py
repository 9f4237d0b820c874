"""Lab checks that meet the plugins and the hardware: which declaration of a type a lab uses
(``[daqhub.providers]``, clashes, refused declarations), the plugins' own lab checks, what a
channels function returns for each block, lab entries that reach one device under two
names, and what the live data service and the dashboard refuse beyond their schemas.

They report through the validator's collector (see :mod:`daqhub.config`), so every problem
has its file and line like the core's own checks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jsonschema

from . import serve_config
from .host import PluginHost
from .resources import register_url_packages
from .resources.identity import (
    line_of,
    line_settings,
    normalize_backend,
    serial_identity,
    visa_identity,
    visa_serial_identity,
)
from .specs import FLAVORS, InstrumentType, channel_problems
from .web import settings as web_settings

if TYPE_CHECKING:
    from .config import InstrumentConfig


class Collector(Protocol):
    """Where problems go: at the line of a key path, or at a line; with the lab file's
    directory and whether the lab PC's own checks are left out (``validate --offline``)."""

    base_dir: Path
    offline: bool

    def add(self, path: Sequence[Any], message: str, suggestion: str = "") -> None: ...
    def add_at(self, line: int, message: str, suggestion: str = "") -> None: ...


class ChosenTypes(dict[tuple[str, str], InstrumentType]):
    """The types a lab can use, after its ``[daqhub.providers]`` choices, with who declares
    each and the declarations nobody chose between."""

    def __init__(self) -> None:
        super().__init__()
        self.owners: dict[tuple[str, str], str] = {}
        self.clashes: dict[tuple[str, str], list[str]] = {}
        self.rejected: dict[tuple[str, str], list[str]] = {}


def chosen_types(c: Collector, host: PluginHost, providers: Mapping[str, str]) -> ChosenTypes:
    types = ChosenTypes()
    for key, t in host.instrument_types().items():
        owner = host.type_owner(*key)
        types[key] = t
        types.owners[key] = f"{owner.distribution} {owner.version}" if owner else "?"
    types.rejected = host.type_rejections()
    for key, entries in host.type_clashes().items():
        types.clashes[key] = sorted(f"{i.distribution} {i.version}" for i, _ in entries)
    for tname, dist in providers.items():
        declared = sorted({o for (n, _), o in types.owners.items() if n == tname}
                          | {o for (n, _), os_ in types.clashes.items() if n == tname
                             for o in os_})
        for flavor in FLAVORS:
            types.pop((tname, flavor), None)
            types.clashes.pop((tname, flavor), None)
            chosen = host.instrument_type(tname, flavor, dist)
            owner = host.type_owner(tname, flavor, dist)
            if chosen is not None and owner is not None:
                types[(tname, flavor)] = chosen
                types.owners[(tname, flavor)] = f"{owner.distribution} {owner.version}"
        if not any((tname, f) in types for f in FLAVORS):
            c.add(("daqhub", "providers", tname),
                  f"provider {dist!r} does not declare instrument type {tname!r}",
                  f"it is declared by {', '.join(declared)}" if declared
                  else "no installed distribution declares it")
    return types


def check_plugin_rules(c: Collector, host: PluginHost, data: Mapping[str, Any]
                       ) -> frozenset[tuple[Any, ...]]:
    """Every plugin's ``daqhub_validate_config`` problems, reported with the plugin's name;
    returns the instrument blocks they refuse (``(flavor, "instruments", i)``), which
    :func:`check_channels` then leaves alone: a channels function is given a block its
    plugin accepts, so what is wrong with the user's block is said once, by the check."""
    register_url_packages(host.serial_url_packages())  # so plugins' checks know every port
    refused = set()
    for info, problem in host.validate_config(data):
        c.add(problem.path, f"{problem.message} (from plugin {info.distribution})")
        if len(problem.path) >= 3 and problem.path[0] in FLAVORS \
                and problem.path[1] == "instruments":
            refused.add(tuple(problem.path[:3]))
    return frozenset(refused)


def check_channels(c: Collector, types: ChosenTypes, inst: InstrumentConfig,
                   path: tuple[Any, ...], refused: Collection[tuple[Any, ...]] = ()) -> None:
    """Call a channels function for this block now, so its mistakes name plugin, type and
    line here rather than surfacing as an AttributeError when the run starts. A block in
    ``refused`` (:func:`check_plugin_rules`) is not called for: its plugin has said what is
    wrong with it, and what its channels function makes of it is no bug. Of a block the
    plugin accepts, a channels function that raises, or returns no channel list, is one."""
    key = (inst.type, inst.flavor)
    t = types[key]
    if not callable(t.channels) or path in refused:
        return
    try:
        found: object = t.channels(inst.block)
    except Exception as exc:
        bad = [f"raised {type(exc).__name__}: {exc}"]
    else:
        bad = channel_problems(found)
    for why in bad:
        c.add(path, f"the channels function of type {inst.type!r} ({inst.flavor}, from plugin "
                    f"{types.owners.get(key, '?')}) for this block: {why}",
              "a bug in the plugin; report it to its authors")


def check_shared_devices(c: Collector, types: ChosenTypes, instruments: Sequence[InstrumentConfig],
                         url_packages: Sequence[str]) -> None:
    """Entries that reach one device share one resource, so they must open it one way and
    agree on its line. A VISA ``ASRL`` resource on a local device is that device's serial
    port (:func:`~daqhub.resources.identity.visa_serial_identity`), but the two managers
    cannot share one handle: the second to open it would be refused as in use."""
    seen: dict[str, tuple[InstrumentConfig, dict[str, Any], str, str]] = {}
    for inst in instruments:
        t = types[(inst.type, inst.flavor)]
        if t.transport == "serial":
            name, what, opener = str(inst.block["port"]), "port", "a serial port"
            line = line_of(line_settings(t.serial_settings, inst.block))
            try:
                key = "serial " + serial_identity(name, url_packages)
            except ValueError as exc:
                c.add_at(inst.line, str(exc))
                continue
        elif t.transport == "visa":
            name, what = str(inst.block["resource"]), "resource"
            backend = normalize_backend(str(inst.block.get("visa_backend", "@py")))
            opener = f"a VISA resource ({backend})"
            line = {k: inst.block.get(k) for k in ("read_termination", "write_termination")
                    if k in inst.block}
            device = visa_serial_identity(name, backend)
            key = f"serial {device}" if device else f"visa {visa_identity(name)} {backend}"
        else:
            continue
        first = seen.setdefault(key, (inst, line, name, opener))
        other, other_line, other_name, other_opener = first
        if other is inst:
            continue
        if other_opener != opener:
            c.add_at(inst.line,
                     f"instrument {inst.id!r} (line {inst.line}) opens {name!r} as {opener} and "
                     f"instrument {other.id!r} (line {other.line}) opens {other_name!r} as "
                     f"{other_opener}, but both reach the device {key.split(' ', 1)[1]}: one "
                     "handle cannot serve both, and the second would be refused as in use",
                     "name the device the same way in both entries (both `port = ...`, or both "
                     "`resource = ...` with one visa_backend)")
            continue
        clash = {k: (other_line[k], v) for k, v in line.items()
                 if k in other_line and other_line[k] != v}
        if clash:
            same = "" if other_name == name else f" ({other_name!r} and {name!r} reach " \
                                                  f"the same device, {key.split(' ', 1)[1]})"
            text = ", ".join(f"{k}={a!r} at line {other.line} vs {b!r} at line {inst.line}"
                             for k, (a, b) in clash.items())
            c.add_at(inst.line,
                     f"instrument {inst.id!r} (line {inst.line}) and instrument {other.id!r} "
                     f"(line {other.line}) share a {what}{same} but not its settings: {text}",
                     "one device has one line: give both the same settings")


def check_services(c: Collector, daq: Mapping[str, Any],
                   overridden: Collection[tuple[str, str]] = ()) -> None:
    """What ``run`` refuses in ``[daqhub.serve]`` and ``[daqhub.web]`` beyond their schemas
    (an address it cannot read, a port above 65535, a token it needs and the environment
    lacks, TLS files), on the line of the key at fault. The rules are the service's and the
    dashboard's own (their ``table_problems``), so ``validate`` and ``run`` cannot disagree.
    A key its schema refuses (or does not know) is the schema's to report: the rules see
    the others. So is a table with ``enabled = false``: ``run`` does not read it. A key in
    ``overridden`` (``("serve", "address")`` for ``run --serve``, ``("web", "listen")`` for
    ``--web``) is not the one run uses, so neither it nor a rule that depends on it (the
    token a non-loopback address needs) is judged: the flag's value is run's to check."""
    checks = {"serve": (serve_config.SERVE_SCHEMA, lambda table: serve_config.table_problems(
                  table, c.base_dir, offline=c.offline)),
              "web": (web_settings.WEB_SCHEMA, web_settings.table_problems)}
    for name, (schema, problems) in checks.items():
        table = daq.get(name)
        if not isinstance(table, dict) or table.get("enabled", True) is False:
            continue
        left_out = {e.path[0] for e in jsonschema.Draft202012Validator(schema).iter_errors(table)
                    if e.path} | {key for where, key in overridden if where == name}
        for key, why in problems({k: v for k, v in table.items()
                                  if k in schema["properties"] and k not in left_out}):
            c.add(("daqhub", name, key), why)
