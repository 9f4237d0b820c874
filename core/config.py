"""Lab files: loading, validation that reports every problem at once, the JSON schema.

A lab technician fixes a lab file faster from one complete list of problems,
each with ``file:line`` and a suggestion, than from a first-error-only
traceback, so validation never stops at the first problem and never raises
anything but :class:`ConfigError` (whatever the bytes in the file).

tomllib gives values but no line numbers; :func:`locate_keys` recovers them
from the text with a small line scanner (tables, arrays of tables, keys).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import select
import stat
import time
import tomllib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from . import firstparty
from .commands import command_names
from .host import PluginHost, dist_key
from .labchecks import (
    ChosenTypes,
    check_channels,
    check_plugin_rules,
    check_services,
    check_shared_devices,
    chosen_types,
)
from .measurement import check_id
from .outdir import lab_path, unwritable
from .resources.identity import normalize_backend
from .resources.visa import VisaSessionManager, sim_file_problem
from .routines import ROUTINE_SCHEMA, routine_problems, step_lines
from .scan import POINTS_KEYS
from .schema_words import not_allowed
from .serve_config import SERVE_SCHEMA
from .specs import FLAVORS, InstrumentType
from .web.settings import WEB_SCHEMA, web_extra_problem, web_settings

# Schemes pyserial (or a plugin's URL handler) resolves; a path without one must exist.
URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
VISA_LOCK_SCOPES = ("resource", "board", "global")
#: the longest duration a lab file may give (115 days): beyond it waits overflow
MAX_SECONDS = 1e7
#: the largest lab file read: a big lab is a few hundred KiB; beyond this it is no lab file
#: (a device node, a log given by mistake), and reading it whole could exhaust memory
MAX_LAB_BYTES = 16 * 2**20
#: seconds a lab given as a pipe or a device (``<(cat lab.toml)``, ``/dev/stdin``) may send
#: nothing before it is given up: a FIFO nobody writes to would otherwise block for ever
LAB_READ_WAIT = 10.0


def seconds(description: str = "", *, minimum: float = 0.0, default: float | None = None,
            exclusive: bool = True) -> dict[str, Any]:
    """Schema of a duration: positive (or >= ``minimum``), finite, at most MAX_SECONDS."""
    out: dict[str, Any] = {"type": "number", "maximum": MAX_SECONDS,
                           ("exclusiveMinimum" if exclusive else "minimum"): minimum}
    if description:
        out["description"] = description
    if default is not None:
        out["default"] = default
    return out


RESTART_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "how a v4 actor that crashes is restarted (per lab, or per instrument)",
    "properties": {
        "max_restarts": {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 5,
                         "description": "restarts allowed within window_s before 'failed'"},
        "window_s": seconds("the window max_restarts counts in", default=60),
        "backoff_first_s": seconds("wait before the first restart", default=0.2),
        "backoff_max_s": seconds("the backoff doubles up to this", default=5),
        "read_timeout_s": seconds("a read that takes longer is cancelled and counted as an "
                                  "error", default=10),
        "call_timeout_s": seconds("a command that takes longer is cancelled", default=60),
        "start_timeout_s": seconds("start() or close() that takes longer fails", default=10),
    },
}

BUDGET_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "limits that raise an alarm when exceeded",
    "properties": {
        "max_cpu_percent": {"type": "number", "exclusiveMinimum": 0,
                            "description": "alarm when a subsystem uses more of one core"},
        "max_rss_mb": {"type": "number", "exclusiveMinimum": 0},
        "max_queue_depth": {"type": "integer", "minimum": 1},
        "max_mailbox_depth": {"type": "integer", "minimum": 1},
        "interval_s": seconds("sampling period", default=1.0),
    },
}

DAQHUB_KEYS: dict[str, Any] = {
    "output_dir": {"type": "string", "description": "root of all session directories",
                   "default": "data"},
    "visa_lock_scope": {"enum": list(VISA_LOCK_SCOPES), "default": "resource",
                        "description": "serialize VISA I/O per resource, per GPIB board, or "
                                       "globally (for a VISA library that is not thread-safe)"},
    "shutdown_timeout": seconds("seconds the phased shutdown may take in total", default=15),
    "lock_timeout": seconds("seconds any wait for a shared resource may take", default=2),
    "loop_watchdog_s": seconds("alarm when the v4 event loop is blocked this long",
                               default=0.3),
    "budget": BUDGET_SCHEMA,
    "providers": {"type": "object", "additionalProperties": {"type": "string"},
                  "description": "instrument type -> the distribution that provides it, "
                                 "when several installed distributions declare it"},
    "web": WEB_SCHEMA,
    "serve": SERVE_SCHEMA,
    "restart": RESTART_SCHEMA,
    "workers": {"type": "integer", "minimum": 1, "maximum": 64, "default": 1,
                "description": "processes the instruments run in, sharded by shared port or "
                               "VISA resource (1: all in the daqhub process)"},
}
FLAVOR_KEYS: dict[str, Any] = {
    "enabled": {"type": "boolean", "default": True},
    "storage": {"type": "string",
                "description": "storage backend name (daqhub plugins lists them)"},
    "output_dir": {"type": "string",
                   "description": "where this flavor's sessions go (default "
                                  "<output_dir>/<flavor>; an output directory given beside "
                                  "the lab, --output-dir DIR, replaces it: DIR/<flavor>)"},
    "instruments": {"type": "array"},
}
COMMON_INSTRUMENT_KEYS: dict[str, Any] = {
    "id": {"type": "string", "pattern": ID_RE.pattern,
           "description": "unique name of the instrument (used in file and group names)"},
    "type": {"type": "string", "description": "instrument type, e.g. newport.esp300"},
    "poll_hz": {"type": "number", "minimum": 1 / MAX_SECONDS, "maximum": 10000, "default": 10,
                "description": "how often the runtime reads the instrument's channels"},
    "enabled": {"type": "boolean", "default": True},
    "restart": RESTART_SCHEMA,
}
TRANSPORT_KEYS: dict[str, dict[str, Any]] = {
    "serial": {
        "port": {"type": "string", "description": "device path, pyserial URL (sim://, "
                 "socket://, rfc2217://) or USB identity usb:VID:PID[:SERIAL]"},
        "baudrate": {"type": "integer", "minimum": 50, "maximum": 4000000,
                     "description": "overrides the instrument type's default"},
    },
    "visa": {
        "resource": {"type": "string", "description": "VISA resource name, e.g. GPIB0::5::INSTR"},
        "visa_backend": {"type": "string", "default": "@py",
                         "description": "@py, @ivi, @sim or path/to/file.yaml@sim"},
    },
    "none": {},
}
REQUIRED_BY_TRANSPORT = {"serial": ["port"], "visa": ["resource"], "none": []}
#: the instrument-block keys the core owns (any transport's), not a driver's
CORE_INSTRUMENT_KEYS = frozenset({*COMMON_INSTRUMENT_KEYS,
                                  *(k for keys in TRANSPORT_KEYS.values() for k in keys)})


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str
    suggestion: str = ""

    def __str__(self) -> str:
        hint = f" ({self.suggestion})" if self.suggestion else ""
        where = f"{self.file}:{self.line}" if self.line else self.file  # 0: the whole file
        return f"{where}: {self.message}{hint}"


class ConfigError(Exception):
    """A lab file has problems; ``problems`` lists all of them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class InstrumentConfig:
    id: str
    type: str
    flavor: str
    block: Mapping[str, Any]
    line: int

    @property
    def poll_hz(self) -> float:
        return float(self.block.get("poll_hz", 10))

    @property
    def enabled(self) -> bool:
        """The block's own ``enabled`` (its flavor's is :attr:`FlavorConfig.enabled`)."""
        return self.block.get("enabled", True) is not False


@dataclass(frozen=True)
class FlavorConfig:
    flavor: str
    enabled: bool
    storage: str
    output_dir: Path
    instruments: list[InstrumentConfig] = field(default_factory=list)


@dataclass(frozen=True)
class LabConfig:
    path: str
    text: str
    data: Mapping[str, Any]
    output_dir: Path
    flavors: dict[str, FlavorConfig]
    storage_options: Mapping[str, Mapping[str, Any]]
    visa_lock_scope: str = "resource"
    shutdown_timeout: float = 15.0
    lock_timeout: float = 2.0
    budget: Mapping[str, Any] = field(default_factory=dict)
    serve: Mapping[str, Any] = field(default_factory=dict)
    routines: list[dict[str, Any]] = field(default_factory=list)
    #: instrument type -> distribution chosen in ``[daqhub.providers]``
    providers: Mapping[str, str] = field(default_factory=dict)
    restart: Mapping[str, Any] = field(default_factory=dict)
    loop_watchdog_s: float = 0.3
    workers: int = 1

    def instruments(self) -> list[InstrumentConfig]:
        """The instruments that run: enabled, in an enabled flavor. Every count and list of
        what a lab runs (validate's summary, run's "starting N", the refusal of a lab with
        nothing to run) reads this, so a lab of disabled instruments is refused like an
        empty one rather than "run" with nothing in it."""
        return [i for f in self.flavors.values() if f.enabled for i in f.instruments
                if i.enabled]


def idle_instruments(flavors: Iterable[FlavorConfig]) -> dict[str, str]:
    """Instrument id -> why it will not run (its flavor, or its own ``enabled = false``)."""
    return {inst.id: "its flavor is disabled" if not f.enabled else "it has enabled = false"
            for f in flavors for inst in f.instruments if not f.enabled or not inst.enabled}


# --- line numbers ---------------------------------------------------------------------

_KEY = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER_RE = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(#.*)?$")
_ASSIGN_RE = re.compile(rf"^\s*({_DOTTED})\s*=")


def _split_key(dotted: str) -> list[str]:
    parts = re.findall(_KEY, dotted)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def locate_keys(text: str) -> dict[tuple[Any, ...], int]:
    """Map key paths (``("v2", "instruments", 0, "port")``) to 1-based line numbers.

    Best effort: it follows tables, arrays of tables and dotted keys, and skips
    the inside of multi-line strings and arrays. Anything it cannot place is
    reported at the line of its enclosing table.
    """
    where: dict[tuple[Any, ...], int] = {}
    counters: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    in_multiline: str | None = None
    depth = 0
    for n, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        if depth > 0:
            depth += line.count("[") - line.count("]")
            continue
        m = _HEADER_RE.match(line)
        if m:
            path = tuple(_split_key(m.group(2)))
            if m.group(1) == "[[":
                idx = counters.get(path, -1) + 1
                counters[path] = idx
                table = (*_resolve(path, counters), idx)
                where.setdefault(table[:-1], n)  # the array itself: its first table
            else:
                table = _resolve(path, counters)
            where.setdefault(table, n)
            continue
        m = _ASSIGN_RE.match(line)
        if m:
            key = (*table, *_split_key(m.group(1)))
            where.setdefault(key, n)
            rest = line[m.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
            if not in_multiline:
                code = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", rest).split("#", 1)[0]
                depth = max(0, code.count("[") - code.count("]"))
    return where


def _resolve(path: tuple[str, ...], counters: dict[tuple[Any, ...], int]) -> tuple[Any, ...]:
    """A header path inside arrays of tables points at their latest element."""
    out: list[Any] = []
    for i, part in enumerate(path):
        out.append(part)
        prefix = tuple(path[: i + 1])
        if prefix in counters and i < len(path) - 1:
            out.append(counters[prefix])
    return tuple(out)


def _line_of(where: Mapping[tuple[Any, ...], int], path: Sequence[Any]) -> int:
    p = tuple(path)
    while p:
        if p in where:
            return where[p]
        p = p[:-1]
    return 1


def closest(word: str, candidates: Sequence[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.5)


def _did_you_mean(word: str, candidates: Sequence[str]) -> str:
    near = closest(word, candidates)
    return f"did you mean {' or '.join(repr(c) for c in near)}?" if near else ""


# --- validation -------------------------------------------------------------------------

class _Collector:
    def __init__(self, file: str, where: Mapping[tuple[Any, ...], int],
                 base_dir: Path | None = None, offline: bool = False,
                 url_packages: Sequence[str] = ()) -> None:
        self.base_dir = base_dir or Path.cwd()
        self.offline = offline  # away from the lab PC: no port or directory existence checks
        self.url_packages = list(url_packages)
        self.file = file
        self.where = where
        self.problems: list[Problem] = []

    def add(self, path: Sequence[Any], message: str, suggestion: str = "") -> None:
        self.add_at(_line_of(self.where, path), message, suggestion)

    def add_at(self, line: int, message: str, suggestion: str = "") -> None:
        self.problems.append(Problem(self.file, line, message, suggestion))


def _check_keys(c: _Collector, table: Mapping[str, Any], allowed: Sequence[str],
                path: Sequence[Any], what: str) -> None:
    for key in table:
        if key not in allowed:
            c.add((*path, key), f"unknown key {key!r} in {what}",
                  _unknown_key_hint(path, key, table[key], allowed))


def _unknown_key_hint(path: Sequence[Any], key: str, value: Any, allowed: Sequence[str]
                      ) -> str:
    """The closest allowed key, written as the table header when the value is a table."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        form = "[[{}]]"
    elif isinstance(value, dict):
        form = "[{}]"
    else:
        return _did_you_mean(key, allowed)
    if not path and key.rstrip("s") == "instrument":
        return "instruments belong to a flavor: [[v2.instruments]] or [[v4.instruments]]"
    near = closest(key, allowed)
    prefix = [str(p) for p in path if isinstance(p, str)]
    return ("did you mean " + " or ".join(form.format(".".join([*prefix, n])) for n in near)
            + "?") if near else ""


def _schema_problems(c: _Collector, value: Any, schema: Mapping[str, Any],
                     path: Sequence[Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path))):
        epath = (*path, *err.path)
        if err.validator == "additionalProperties":
            allowed = list(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance,
                                                                              dict) else []
            for key in extra:
                c.add((*epath, key), f"unknown key {key!r}",
                      _unknown_key_hint(epath, key, err.instance[key], allowed)
                      or f"valid keys: {', '.join(sorted(allowed))}")
        elif err.validator == "required":
            for key in err.validator_value:
                if isinstance(err.instance, dict) and key not in err.instance:
                    c.add(epath, f"{key!r} is required", _required_hint(c, key, err.schema))
        else:
            name = ".".join(str(p) for p in err.path) or "value"
            c.add(epath, *not_allowed(name, err.instance, err.schema))


def _required_hint(c: _Collector, key: str, schema: Mapping[str, Any]) -> str:
    if key == "port" and not c.offline:
        return _existing_ports_hint()
    if key == "resource":
        return "e.g. GPIB0::5::INSTR; daqhub ports lists the VISA resources"
    return str(schema.get("properties", {}).get(key, {}).get("description", ""))


def _existing_ports_hint() -> str:
    try:
        from serial.tools import list_ports
        existing = [p.device for p in list_ports.comports()]
    except Exception:  # listing ports is a courtesy; its failure must not hide the problem
        existing = []
    sim = "sim://<device> for a simulator"
    return (f"existing ports: {', '.join(existing)}; or {sim}" if existing else
            f"no serial ports found; use {sim}")


def instrument_schema(t: InstrumentType, *, core_checks: bool = True) -> dict[str, Any]:
    """JSON schema of one instrument block of type ``t``: core keys plus the plugin's keys.

    ``core_checks=False`` leaves out what the validator checks itself with better
    messages (the id's form and presence).
    """
    own = dict(t.config_schema.get("properties", {}))
    common = dict(COMMON_INSTRUMENT_KEYS)
    if not core_checks:
        common["id"] = {}
    props = {**common, **TRANSPORT_KEYS[t.transport], **own, "type": {"const": t.name}}
    required = sorted({*(("id",) if core_checks else ()), "type",
                       *REQUIRED_BY_TRANSPORT[t.transport], *t.config_schema.get("required", [])})
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": required,
                              "additionalProperties": False, "description": t.description}
    for key in ("allOf", "anyOf", "oneOf", "dependentRequired", "$defs"):
        if key in t.config_schema:
            schema[key] = t.config_schema[key]
    return schema


def _check_port(c: _Collector, port: str, path: Sequence[Any]) -> None:
    if URL_RE.match(port):
        scheme = port.split("://", 1)[0].lower()
        provider = firstparty.URL_SCHEMES.get(scheme)
        if provider is not None:
            served = firstparty.is_installed(provider)
        else:
            handlers = ["serial.urlhandler", *c.url_packages]
            served = any(firstparty.module_exists(f"{pkg}.protocol_{scheme}") for pkg in handlers)
        if not served:
            c.add(path, f"no installed package serves {scheme}:// ports ({port!r})",
                  firstparty.missing_provider(provider, f"{scheme}://")
                  or "pyserial serves socket://, rfc2217://, loop:// and spy://")
        return
    if port.startswith("usb:") or c.offline:
        return
    if not os.path.exists(port):
        c.add(path, f"serial device {port!r} does not exist", _existing_ports_hint())


def serial_port_problem(port: str, url_packages: Sequence[str] = ()) -> str | None:
    """What is wrong with a serial port as a lab file would give it, or None: the lab
    file's own check, for tools that ask for one port (``daqhub new``)."""
    c = _Collector("", {}, url_packages=url_packages)
    _check_port(c, port, ())
    if not c.problems:
        return None
    p = c.problems[0]
    return f"{p.message} ({p.suggestion})" if p.suggestion else p.message


def visa_resource_problem(resource: str) -> str | None:
    """What is wrong with a VISA resource name as a lab file would give it, or None: the
    lab file's own check, for tools that ask for one name (``daqhub new``)."""
    c = _Collector("", {})
    _check_visa(c, resource, ())
    return c.problems[0].message if c.problems else None


def finite_problem(value: Any, name: str) -> str | None:
    """Why ``value`` (a number, or a list or table of them) is refused as not finite, or
    None: the lab file's own rule, for tools that ask for one value (``daqhub new``)."""
    c = _Collector("", {})
    _check_finite(c, value, (name,))
    return c.problems[0].message if c.problems else None


def _check_visa(c: _Collector, resource: str, path: Sequence[Any]) -> None:
    from pyvisa import rname
    example = "e.g. GPIB0::5::INSTR, TCPIP::10.0.0.2::INSTR, ASRL/dev/ttyUSB0::INSTR"
    try:
        parsed = rname.parse_resource_name(resource)
    except (rname.InvalidResourceName, ValueError) as exc:
        c.add(path, f"malformed VISA resource name {resource!r}: {exc}".replace("\n", " "),
              example)
        return
    # pyvisa's parser takes any text as a GPIB address; IEEE 488 allows 0-30 (secondary 0-31)
    for attr, top in (("primary_address", 30), ("secondary_address", 31)):
        value = getattr(parsed, attr, None)
        if value in (None, ""):
            continue
        if not str(value).isdigit() or int(value) > top:
            c.add(path, f"malformed VISA resource name {resource!r}: GPIB {attr.replace('_', ' ')}"
                        f" {value!r} is not a number from 0 to {top}", example)


def _is_within(a: Path, b: Path) -> bool:
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def output_override(given: str | os.PathLike[str] | None) -> Path | None:
    """An ``output_dir`` given beside a lab (``--output-dir``, ``open_lab(output_dir=)``),
    absolute: ``~`` is expanded as in a lab file, a relative path is from the working
    directory."""
    return None if given is None else lab_path(Path.cwd(), os.fspath(given)).resolve()


def check_output_dir(path: Path) -> str | None:
    """Why ``path`` cannot be created or written, if it cannot (storage's own check)."""
    why = unwritable(path)
    return f"output directory {path} {why}" if why else None


def validate(data: Mapping[str, Any], text: str, file: str, host: PluginHost,
             base_dir: Path, output_dir: Path | None = None, offline: bool = False,
             overridden: Collection[tuple[str, str]] = ()
             ) -> tuple[LabConfig | None, list[Problem]]:
    """``output_dir`` (``daqhub run --output-dir``, ``open_lab(output_dir=)``) replaces every
    output directory the file gives: each flavor's sessions go to ``<output_dir>/<flavor>``,
    whatever ``[daqhub]``, ``[v2]`` or ``[v4] output_dir`` say (relative or absolute), so the
    directory asked for is where all the data go; ``offline`` leaves out what only the lab
    PC can check (ports, output directories); ``overridden``: the service keys the caller
    gives values for (``run --serve``, ``--web``), which the file's are not judged for
    (:func:`~daqhub.labchecks.check_services`)."""
    where = locate_keys(text)
    c = _Collector(file, where, base_dir, offline, host.serial_url_packages())
    _check_finite(c, data, ())
    _check_keys(c, data, ["daqhub", "v2", "v4", "storage", "routines"], (), "the lab file")
    daq = data.get("daqhub", {})
    if not isinstance(daq, dict):
        c.add(("daqhub",), "[daqhub] must be a table")
        daq = {}
    _schema_problems(c, daq, {"type": "object", "properties": DAQHUB_KEYS,
                              "additionalProperties": False}, ("daqhub",))
    check_services(c, daq, overridden)  # what run refuses in [daqhub.serve] and [daqhub.web]
    out_root = output_dir if output_dir is not None else lab_path(
        base_dir, str(daq.get("output_dir", "data")))
    backends = host.storage_backends()
    providers = {k: v for k, v in (daq.get("providers") or {}).items() if isinstance(v, str)} \
        if isinstance(daq.get("providers"), dict) else {}
    types = chosen_types(c, host, providers)
    type_names = sorted({n for n, _ in types} | {n for n, _ in types.clashes})
    unloaded = _unloaded_plugins(host)
    seen_ids: dict[str, tuple[str, int]] = {}
    flavors: dict[str, FlavorConfig] = {}
    storage_tbl = data.get("storage", {})
    if not isinstance(storage_tbl, dict):
        c.add(("storage",), "[storage] must be a table of backend options")
        storage_tbl = {}
    refused = check_plugin_rules(c, host, data)  # first: their blocks are not read for channels
    for flavor in FLAVORS:
        section = data.get(flavor)
        if section is None:
            continue
        if not isinstance(section, dict):
            c.add((flavor,), f"[{flavor}] must be a table")
            continue
        _schema_problems(c, section, {"type": "object", "properties": FLAVOR_KEYS,
                                      "additionalProperties": False}, (flavor,))
        enabled = section.get("enabled", True) is not False
        storage = section.get("storage", "hdf5" if flavor == "v2" else "arrow")
        if isinstance(storage, str) and storage not in backends:
            _unknown_backend(c, (flavor, "storage"), storage, host)
        fdir = section.get("output_dir")
        fdir_path = lab_path(base_dir, fdir) if isinstance(fdir, str) and output_dir is None \
            else out_root / flavor
        instruments: list[InstrumentConfig] = []
        items = section.get("instruments", [])
        if not isinstance(items, list):
            items = []
        for i, block in enumerate(items):
            path = (flavor, "instruments", i)
            if not isinstance(block, dict):
                c.add(path, f"[[{flavor}.instruments]] entries must be tables")
                continue
            inst = _check_instrument(c, block, path, flavor, types, type_names, seen_ids,
                                     unloaded)
            if inst:
                instruments.append(inst)
                check_channels(c, types, inst, path, refused)
        flavors[flavor] = FlavorConfig(flavor, enabled, str(storage), fdir_path.resolve(),
                                       instruments)
    for name, opts in storage_tbl.items():
        if name not in backends:
            _unknown_backend(c, ("storage", name), name, host, options=True)
        elif not isinstance(opts, dict):
            c.add(("storage", name), f"[storage.{name}] must be a table")
        else:
            _schema_problems(c, opts, backends[name].options_schema, ("storage", name))
    active = [f for f in flavors.values() if f.enabled]
    for f in active if not offline else []:
        why = check_output_dir(f.output_dir)
        if why and output_dir is not None:  # given beside the lab: no line of the file says it
            c.add_at(0, why)
        elif why:
            c.add((f.flavor, "output_dir") if (f.flavor, "output_dir") in where
                  else ("daqhub", "output_dir"), why)
    if len(active) == 2:
        a, b = active[0].output_dir, active[1].output_dir
        if a == b or _is_within(a, b) or _is_within(b, a):
            c.add(("v4", "output_dir") if ("v4", "output_dir") in where else ("daqhub",),
                  f"v2 and v4 output directories must be separate, got {a} and {b}",
                  "give each flavor its own directory; neither inside the other")
    routines = data.get("routines", [])
    if not isinstance(routines, list):
        c.add(("routines",), "routines must be an array of tables: [[routines]]")
        routines = []
    known = {inst.id: (types[(inst.type, inst.flavor)],
                       _channel_names(types[(inst.type, inst.flavor)], inst.block))
             for f in flavors.values() for inst in f.instruments}
    all_commands = sorted({n for t in types.values() for n in command_names(t) or []})
    idle = idle_instruments(flavors.values())
    first_routine: dict[str, tuple[int, int]] = {}  # instrument id -> (routine, its line)
    for i, r in enumerate(routines):
        before = len(c.problems)
        _schema_problems(c, r, ROUTINE_SCHEMA, ("routines", i))
        if len(c.problems) > before:
            continue  # malformed: its steps cannot be read
        here = _line_of(where, ("routines", i, "instrument"))
        first, first_line = first_routine.setdefault(r["instrument"], (i, here))
        if first != i:  # two runners would interleave their moves and records
            c.add_at(here, f"a second routine for {r['instrument']!r} (its first routine "
                     f"names it at line {first_line}); an instrument runs one routine",
                     "put the steps of both in one [[routines]], in the order they should run")
        if r["instrument"] not in seen_ids:
            c.add(("routines", i, "instrument"), f"routine names unknown instrument "
                  f"{r['instrument']!r}", _did_you_mean(r["instrument"], sorted(seen_ids)))
        elif r["instrument"] in idle:
            c.add(("routines", i, "instrument"), f"routine of {r['instrument']!r}, which "
                  f"will not run: {idle[r['instrument']]}", "enable it or remove the routine")
        _check_steps(c, r, ("routines", i))  # every problem of every step, at once
        lines = step_lines(text, _line_of(where, ("routines", i, "steps")), len(r["steps"]))
        c.problems += [Problem(file, line, msg, hint) for line, msg, hint in
                       routine_problems(r, known, all_commands, lines, idle)]
    check_shared_devices(c, types, [i for f in flavors.values() for i in f.instruments],
                         host.serial_url_packages())
    if c.problems:
        return None, sorted(c.problems, key=lambda p: p.line)
    return LabConfig(
        path=file, text=text, data=data, output_dir=out_root.resolve(), flavors=flavors,
        storage_options={k: dict(v) for k, v in storage_tbl.items()},
        visa_lock_scope=str(daq.get("visa_lock_scope", "resource")),
        shutdown_timeout=float(daq.get("shutdown_timeout", 15)),
        lock_timeout=float(daq.get("lock_timeout", 2)),
        budget=dict(daq.get("budget", {})),
        serve=dict(daq.get("serve", {})),
        routines=[dict(r) for r in routines],
        providers=providers,
        restart=dict(daq.get("restart", {})),
        loop_watchdog_s=float(daq.get("loop_watchdog_s", 0.3)),
        workers=int(daq.get("workers", 1)),
    ), []


def _channel_names(t: InstrumentType, block: Mapping[str, Any]) -> list[str]:
    """Channel names for routine checks; a block its type cannot read is reported elsewhere."""
    try:
        return [ch.name for ch in t.channels_for(block)]
    except Exception:  # a plugin's channels function: what it got wrong is reported elsewhere
        return []


def _check_finite(c: _Collector, value: Any, path: tuple[Any, ...]) -> None:
    """NaN and infinities are refused wherever they appear (TOML allows them)."""
    if isinstance(value, float) and not math.isfinite(value):
        name = ".".join(str(p) for p in path) or "value"
        c.add(path, f"{name}: {value} is not a finite number", "give a number")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_finite(c, v, (*path, k))
    elif isinstance(value, list):
        for k, v in enumerate(value):
            _check_finite(c, v, (*path, k))


MIN_SLEEP_S = 0.001


def _check_steps(c: _Collector, routine: Mapping[str, Any], path: tuple[Any, ...]) -> None:
    """``sleep`` takes one duration (1 ms up to MAX_SECONDS); a repeating routine needs a
    ``sleep`` step, else it may loop flat out: no other step is sure to take time (a
    ``wait_until_done`` of an axis already in place returns at once)."""
    paced = False
    for k, step in enumerate(routine["steps"]):
        name, args = step[0], step[1:]
        if name == "sleep":  # its form is routine_problems' to check; its range, ours
            d = args[0] if len(args) == 1 else 1.0
            if isinstance(d, int | float) and not isinstance(d, bool) \
                    and not MIN_SLEEP_S <= d <= MAX_SECONDS:
                c.add((*path, "steps", k), f"step {k + 1}: sleep needs one duration from "
                      f"{MIN_SLEEP_S:g} to {MAX_SECONDS:g} s, got {args!r}",
                      'e.g. ["sleep", 0.5]')
            paced = True
    if routine.get("repeat", False) and not paced:
        c.add((*path, "repeat"), "a repeating routine needs a sleep step: no other step is "
              "sure to take time (a wait_until_done of an axis already in place returns at "
              "once), and without one it may loop flat out", 'add e.g. ["sleep", 0.1]')


def instrument_id_problem(iid: str) -> tuple[str, str] | None:
    """What is wrong with ``iid`` as an instrument id, and what to do, or None: the one rule
    of lab files (validate, run) and ``daqhub new``'s question, which took ``con`` and
    ``run_id`` and left the refusal to the check of the finished file."""
    if not ID_RE.match(iid):
        return (f"instrument id {iid!r} is not a plain name",
                "use letters, digits, '_' and '-', starting with a letter (it names files)")
    if (why := check_id(iid, "instrument id")) is not None:  # storage's rule (con, nul ...)
        return why, ""
    if iid in POINTS_KEYS:
        return (f"instrument id {iid!r} is reserved: every points table (Lab.scan, routine "
                f"record steps) has a column {iid!r}, and a mover's setpoints would go in a "
                "second one", "give the instrument another id")
    return None


def _check_instrument(c: _Collector, block: Mapping[str, Any], path: tuple[Any, ...],
                      flavor: str, types: ChosenTypes,
                      type_names: Sequence[str], seen_ids: dict[str, tuple[str, int]],
                      unloaded: Sequence[str]) -> InstrumentConfig | None:
    """``unloaded``: the plugins whose types are missing (_unloaded_plugins); one of them
    may declare a type the lab names, and only its own error says why the type is unknown."""
    line = _line_of(c.where, path)
    iid = block.get("id")
    ok = True
    if iid is not None and not isinstance(iid, str):
        c.add((*path, "id"), f"instrument id must be a name in quotes, got {iid!r}",
              'e.g. id = "power"')
        ok = False
    elif not isinstance(iid, str) or not iid:
        c.add(path, "instrument has no 'id'", "add id = \"<name>\"")
        ok = False
    elif iid in seen_ids:
        other_flavor, other_line = seen_ids[iid]
        free = next(f"{iid}{k}" for k in range(2, 1000) if f"{iid}{k}" not in seen_ids)
        c.add((*path, "id"), f"duplicate instrument id {iid!r} (also in [[{other_flavor}."
              f"instruments]] at line {other_line})", f"ids are unique across v2 and v4; "
              f"{free!r} is free")
        ok = False
    else:
        wrong = instrument_id_problem(iid)
        if wrong is None or iid in POINTS_KEYS:  # known: a routine naming it is not
            seen_ids[iid] = (flavor, line)  # "unknown" as well
        if wrong is not None:
            c.add((*path, "id"), *wrong)
            ok = False
    tname = block.get("type")
    if not isinstance(tname, str):
        c.add(path, "instrument has no 'type'", f"installed types: {', '.join(type_names)}")
        return None
    t = types.get((tname, flavor))
    if t is None:
        other = [f for f in FLAVORS if (tname, f) in types]
        clash = types.clashes.get((tname, flavor))
        rejected = types.rejected.get((tname, flavor))
        if rejected and not clash:
            c.add((*path, "type"), f"type {tname!r} ({flavor}) is installed but its declaration "
                  f"was refused: {'; '.join(rejected)}", "a bug in the plugin; report it to its "
                  "authors (daqhub plugins lists every plugin problem)")
        elif clash:
            dists = [owner.rsplit(" ", 1)[0] for owner in clash]
            own = firstparty.type_provider(tname)  # not an impostor first in the alphabet
            pick = next((d for d in dists if dist_key(d) == own), dists[0])
            c.add((*path, "type"), f"type {tname!r} ({flavor}) {_clash(clash)} until the lab "
                  f"chooses one", f'choose one in the lab file: [daqhub.providers] "{tname}" = '
                  f'"{pick}"')
        elif other:
            c.add((*path, "type"), f"type {tname!r} has no {flavor} flavor",
                  f"it has {', '.join(other)}: move it to [[{other[0]}.instruments]]")
        else:
            _unknown(c, (*path, "type"), f"unknown instrument type {tname!r}",
                     firstparty.missing_provider(firstparty.type_provider(tname), tname) or
                     _did_you_mean(tname, type_names) or
                     (f"installed types: {', '.join(type_names)}" if type_names
                      else "no instrument types are installed"), unloaded)
        return None
    before = len(c.problems)
    _schema_problems(c, block, instrument_schema(t, core_checks=False), path)
    if t.transport == "serial" and isinstance(block.get("port"), str):
        _check_port(c, block["port"], (*path, "port"))
    block = dict(block)
    if t.transport == "visa" and isinstance(block.get("resource"), str):
        _check_visa(c, block["resource"], (*path, "resource"))
    if t.transport == "visa" and isinstance(block.get("visa_backend"), str):
        resolved, why = resolve_visa_backend(block["visa_backend"], c.base_dir)
        resource = block["resource"] if isinstance(block.get("resource"), str) else None
        if not why and (problem := sim_file_problem(resolved, resource)):
            why = f"visa_backend {block['visa_backend']!r}: {problem}"
        if why:
            c.add((*path, "visa_backend"), why)
        block["visa_backend"] = resolved
    if not ok or len(c.problems) > before:
        return None
    return InstrumentConfig(str(iid), tname, flavor, block, line)


def _unloaded_plugins(host: PluginHost, hook: str = "daqhub_instrument_types") -> list[str]:
    """The plugins whose declarations of ``hook`` are missing, each with why: not loaded (an
    import that failed, a daqhub version it does not support, a broken hook), or that hook
    failed."""
    failed = host.load_problems()
    return [str(p) for p in host.problems if p in failed or hook in p.error]


def _unknown(c: _Collector, path: Sequence[Any], message: str, hint: str,
             unloaded: Sequence[str]) -> None:
    """``message`` about an unknown name (an instrument type, a storage backend), with the
    plugins that failed to load: one of them may declare it, and only its own error says
    why it is unknown."""
    c.add(path, message + (
          f"; plugins that failed to load: {'; '.join(unloaded)}" if unloaded else ""),
          hint + ("; daqhub plugins lists every plugin problem" if unloaded else ""))


def _clash(owners: Sequence[str]) -> str:
    """What a lab is told of a name several distributions declare (``owners``: ``dist
    version``), none of which is used."""
    return (f"is declared by several installed distributions: {', '.join(owners)}; none of "
            "them is used")


def _unknown_backend(c: _Collector, path: Sequence[Any], name: str, host: PluginHost,
                     options: bool = False) -> None:
    """A storage backend the lab names (``options``: gives options for) that is not in use:
    declared by several plugins (no lab file chooses one), or unknown, perhaps because its
    plugin failed to load. It was "unknown" in every case, naming neither."""
    if clash := host.storage_clashes().get(name):
        owners = sorted(f"{i.distribution} {i.version}" for i, _ in clash)
        c.add(path, (f"options for storage backend {name!r}, which " if options else
                     f"storage backend {name!r} ") + _clash(owners),
              "uninstall all of them but one (daqhub plugins lists them)")
        return
    known = sorted(host.storage_backends())
    _unknown(c, path, f"{'options for ' if options else ''}unknown storage backend {name!r}",
             _did_you_mean(name, known) or f"installed backends: {', '.join(known) or 'none'}",
             _unloaded_plugins(host, "daqhub_storage_backends"))


def resolve_visa_backend(backend: str, base_dir: Path) -> tuple[str, str]:
    """A backend with a simulation file, made absolute; and why it is unusable, if it is.

    ``file.yaml@sim`` is relative to the lab file; ``package:path/file.yaml@sim`` is a
    file shipped inside an installed package (the demo lab uses daqhub-sims' files).
    """
    if not backend.endswith("@sim") or backend == "@sim":
        return backend, ""
    spec = backend[: -len("@sim")]
    m = re.match(r"^([A-Za-z_][\w.]*):(.+)$", spec)
    if m and not re.match(r"^[A-Za-z]:[\\/]", spec):  # not a Windows drive letter
        from importlib import resources
        try:
            path = Path(str(resources.files(m.group(1)) / m.group(2)))
        except ModuleNotFoundError:
            hint = firstparty.missing_provider(firstparty.PACKAGES.get(m.group(1)), m.group(1))
            return backend, (f"visa_backend {backend!r}: package {m.group(1)!r} is not installed"
                             + (f"; {hint}" if hint else ""))
    else:
        path = lab_path(base_dir, spec).resolve()
    if not path.is_file():
        return backend, f"visa_backend {backend!r}: simulation file {path} does not exist"
    return f"{path}@sim", ""


def parse(text: str | bytes, file: str, host: PluginHost, base_dir: Path | None = None,
          output_dir: Path | None = None, offline: bool = False,
          overridden: Collection[tuple[str, str]] = ()) -> LabConfig:
    """Validate a lab file's content; raises ConfigError listing every problem. ``output_dir``,
    ``offline`` and ``overridden``: as for :func:`validate`."""
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError([Problem(file, line, f"not UTF-8 text: {exc.reason} at byte "
                                                   f"{exc.start}")]) from None
    text = text.removeprefix("\ufeff")  # a byte order mark, as Windows editors write one
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(m.group(1)) if m else 1
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        col = f", column {m.group(2)}" if m else ""
        raise ConfigError([Problem(file, line, f"not valid TOML: {msg}{col}")]) from None
    except (RecursionError, ValueError) as exc:
        raise ConfigError([Problem(file, 1, f"not valid TOML: {exc}")]) from None
    lab, problems = validate(data, text, file, host, base_dir or Path.cwd(), output_dir,
                             offline, overridden)
    if problems:
        raise ConfigError(problems)
    assert lab is not None
    return lab


def load(path: str | os.PathLike[str], host: PluginHost, output_dir: Path | None = None,
         offline: bool = False, overridden: Collection[tuple[str, str]] = ()) -> LabConfig:
    """Read and validate the lab file at ``path`` (:func:`read_lab_bytes`); ``output_dir``,
    ``offline`` and ``overridden``: as for :func:`validate`. The paths in a lab that came
    through a pipe (``/dev/stdin``, ``<(...)``) are from the working directory, as ``run``'s
    service takes them: ``/proc/PID/fd`` is nowhere to keep data."""
    p = Path(path)
    try:
        raw = read_lab_bytes(p)
    except FileNotFoundError:
        raise ConfigError([Problem(str(p), 0, "the lab file does not exist")]) from None
    except OSError as exc:
        raise ConfigError([Problem(str(p), 0, f"cannot read the lab file: {exc.strerror or exc}")]
                          ) from None
    base = p.resolve().parent if p.is_file() else Path.cwd()
    return parse(raw, str(p), host, base, output_dir, offline, overridden)


def read_lab_bytes(p: Path) -> bytes:
    """The content of the lab file ``p``, of at most MAX_LAB_BYTES: ``/dev/zero`` was read
    until memory ran out. A pipe or a character device (``validate <(cat lab.toml)``,
    ``/dev/stdin``) is read until its end, but never waited on for more than LAB_READ_WAIT
    seconds of silence: a FIFO nobody writes to blocked validate and run in the read, where
    Ctrl-C could not stop them. A directory or a socket is no lab file."""
    st = p.stat()
    if stat.S_ISREG(st.st_mode):
        raw = b""
        if st.st_size <= MAX_LAB_BYTES:
            with p.open("rb") as f:
                raw = f.read(MAX_LAB_BYTES + 1)  # a file still growing stops here too
        if (size := max(st.st_size, len(raw))) > MAX_LAB_BYTES:
            raise ConfigError([Problem(str(p), 0, f"too large for a lab file: {size} bytes, "
                                                  f"more than {MAX_LAB_BYTES // 2**20} MiB")])
        return raw
    if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise ConfigError([Problem(str(p), 0, "not a file, pipe or device to read: a lab file "
                                              "is a TOML text file")])
    chunks: list[bytes] = []
    size = 0
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO's open waits too
    try:
        silent_until = time.monotonic() + LAB_READ_WAIT
        while size <= MAX_LAB_BYTES:
            left = silent_until - time.monotonic()
            if left <= 0:
                raise ConfigError([Problem(str(p), 0, f"nothing came from {p} for "
                                                      f"{LAB_READ_WAIT:g} s: a pipe or device "
                                                      "given as the lab file must send it and "
                                                      "close")])
            if not select.select([fd], [], [], min(left, 0.2))[0]:
                continue
            try:
                chunk = os.read(fd, 2**16)
            except BlockingIOError:  # readable, then taken by another reader
                continue
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            silent_until = time.monotonic() + LAB_READ_WAIT
    finally:
        os.close(fd)
    raise ConfigError([Problem(str(p), 0, f"too large for a lab file: more than "
                                          f"{MAX_LAB_BYTES // 2**20} MiB came from it")])


NO_INSTRUMENTS = "the lab has no enabled instruments; nothing to run"


def runnable_problems(lab: LabConfig) -> list[Problem]:
    """Why a valid lab still cannot run; ``run`` and ``validate`` refuse the same labs: one
    whose instruments are all disabled as one without any."""
    if lab.instruments():
        return []
    idle = idle_instruments(lab.flavors.values())
    hint = "".join(f"{iid} will not run: {why}; " for iid, why in idle.items())
    return [Problem(lab.path, 0, NO_INSTRUMENTS, f"{hint}enable one" if idle else
                    "add [[v2.instruments]] or [[v4.instruments]] tables")]


def runnable(lab: LabConfig) -> LabConfig:
    """``lab``, or the ConfigError of :func:`runnable_problems`: what the commands that
    check a lab as a whole (validate, migrate, new) refuse alike."""
    if problems := runnable_problems(lab):
        raise ConfigError(problems)
    return lab


def lab_pc_problems(lab: LabConfig, host: PluginHost) -> list[Problem]:
    """What this PC lacks that ``run`` refuses ``lab`` for, in run's own words: a VISA
    library (``@ivi``), a kind of resource the backend cannot open here (GPIB on ``@py``
    without linux-gpib, USB without PyUSB, VICP without PyVICP), the web extra for
    ``[daqhub.web]``, pyarrow's Flight for ``[daqhub.serve]``. ``validate`` (not
    ``--offline``) says these: it called such labs valid, and run then failed."""
    where = locate_keys(lab.text)
    out: list[Problem] = []
    daq = lab.data.get("daqhub", {})
    if web_settings(daq.get("web") if isinstance(daq, dict) else None, None) is not None \
            and (why := web_extra_problem()) is not None:  # run's own (dashboard_server)
        out.append(Problem(lab.path, _line_of(where, ("daqhub", "web")), why))
    if lab.serve and (why := firstparty.flight_absent()) is not None:  # run serves it
        out.append(Problem(lab.path, _line_of(where, ("daqhub", "serve")),
                           f"cannot serve live data: {why}"))
    with VisaSessionManager() as visa:  # run's own: its ResourceManager per backend
        for flavor in lab.flavors.values():
            for i, inst in enumerate(flavor.instruments):
                t = host.instrument_type(inst.type, inst.flavor, lab.providers.get(inst.type))
                if not (flavor.enabled and inst.enabled and t and t.transport == "visa"):
                    continue
                backend = str(inst.block.get("visa_backend", "@py"))
                if normalize_backend(backend).endswith("@sim"):
                    continue  # its file is validate's own check (sim_file_problem)
                try:
                    rm = visa.resource_manager(backend)
                except Exception as exc:  # as the run's start says it (visa_error_text)
                    why = str(exc)
                else:
                    why = _unopenable(rm, str(inst.block["resource"]))
                if why:
                    key = "visa_backend" if "visa_backend" in inst.block else "resource"
                    out.append(Problem(lab.path, _line_of(where, (inst.flavor, "instruments",
                                                                  i, key)),
                                       f"{inst.id}: {' '.join(why.split())}"))
    return out


def _unopenable(rm: Any, resource: str) -> str:
    """Why pyvisa-py would refuse to open ``resource`` on this PC for want of a library
    (GPIB without linux-gpib or gpib-ctypes, USB without PyUSB), in its words; '' when it
    would not, and for other VISA libraries. pyvisa-py registers such a kind of resource as
    unavailable, for GPIB under its interface class (its INSTR class picks one at open)."""
    from pyvisa import rname

    if not type(rm.visalib).__module__.startswith("pyvisa_py"):
        return ""
    try:
        from pyvisa_py.sessions import Session, UnavailableSession
    except ImportError:  # another pyvisa-py than the one this reads: run will tell
        return ""

    parsed = rname.parse_resource_name(resource)
    for kind in (parsed.resource_class, "INTFC"):
        try:
            cls = Session.get_session_class(parsed.interface_type_const, kind)
        except ValueError:  # not a kind pyvisa-py knows here
            continue
        if issubclass(cls, UnavailableSession):
            return str(cls.session_issue)
    return ""


def lab_schema(host: PluginHost) -> dict[str, Any]:
    """The JSON schema of a lab file, with one branch per installed instrument type."""
    types = host.instrument_types()
    flavor_schemas = {}
    for flavor in FLAVORS:
        branches = [instrument_schema(t) for (n, f), t in sorted(types.items()) if f == flavor]
        item: dict[str, Any] = {"type": "object", "required": ["id", "type"],
                                "properties": {"type": {"enum": sorted(
                                    n for (n, f) in types if f == flavor)}}}
        if branches:
            item["oneOf"] = branches
        props = {**FLAVOR_KEYS, "instruments": {"type": "array", "items": item}}
        flavor_schemas[flavor] = {"type": "object", "properties": props,
                                  "additionalProperties": False}
    storage = {name: b.options_schema for name, b in sorted(host.storage_backends().items())}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "daqhub lab file",
        "type": "object",
        "properties": {
            "daqhub": {"type": "object", "properties": DAQHUB_KEYS,
                       "additionalProperties": False},
            **flavor_schemas,
            "storage": {"type": "object", "properties": storage, "additionalProperties": False},
            "routines": {"type": "array", "items": ROUTINE_SCHEMA},
        },
        "additionalProperties": False,
    }
