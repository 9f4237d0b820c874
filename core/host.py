"""The plugin host: discovery, validation, isolation of broken plugins, listing.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that
fails to import, and a hook call stops at the first implementation that
raises. A lab with one broken third-party driver must still run everything
else, so the host loads entry points in its own loop and calls collecting
hooks one implementation at a time, turning every failure into a
:class:`PluginProblem` that names the distribution, its version and the error.
Strict mode (for CI) raises on the first problem instead.

Set ``DAQHUB_TRACE_HOOKS=1`` to print every hook call and its result to stderr.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from . import __version__, hookspecs
from .specs import CliCommand, ConfigProblem, Converter, Format, InstrumentType, StorageBackend

GROUP = "daqhub"
TRACE_ENV = "DAQHUB_TRACE_HOOKS"
NOTIFICATION_HOOKS = ("daqhub_session_started", "daqhub_session_stopped",
                      "daqhub_resource_event", "daqhub_instrument_event")
T = TypeVar("T")


@dataclass(frozen=True)
class PluginProblem:
    """Something wrong with one plugin; the host carries on without that part of it."""

    distribution: str
    version: str
    plugin: str
    error: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} ({self.plugin}): {self.error}"


class PluginError(RuntimeError):
    """Raised in strict mode for the first plugin problem."""

    def __init__(self, problem: PluginProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    entry_point: str
    hooks: list[str] = field(default_factory=list)


class PluginHost:
    """Loads plugins and gives the core one typed method per hook."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.problems: list[PluginProblem] = []
        self.plugins: dict[str, PluginInfo] = {}
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()
        if os.environ.get(TRACE_ENV):
            self.pm.trace.root.setwriter(lambda msg: sys.stderr.write(f"[daqhub hooks] {msg}"))
            self.pm.enable_tracing()

    # --- loading ----------------------------------------------------------------

    def report(self, problem: PluginProblem) -> None:
        self.problems.append(problem)
        if self.strict:
            raise PluginError(problem)

    def load_entry_points(self, group: str = GROUP) -> None:
        """Load every plugin of the entry-point group, reporting the broken ones."""
        eps = sorted(md.entry_points(group=group),
                     key=lambda ep: ((ep.dist.name if ep.dist else ""), ep.name))
        for ep in eps:
            dist_name = ep.dist.name if ep.dist else "<unknown distribution>"
            version = ep.dist.version if ep.dist else "?"
            plugin_name = f"{dist_name}:{ep.name}"
            if plugin_name in self.plugins:
                continue
            if ep.dist is not None and (why := _incompatible(ep.dist)):
                self.report(PluginProblem(dist_name, version, ep.name, why))
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a plugin's import may raise anything
                self.report(PluginProblem(dist_name, version, ep.name,
                                          f"failed to import {ep.value}: {_short(exc)}",
                                          traceback.format_exc()))
                continue
            if isinstance(obj, type):
                self.report(PluginProblem(dist_name, version, ep.name,
                                          f"entry point {ep.value} names a class; name a module "
                                          "or a module-level object"))
                continue
            self.register(obj, plugin_name, dist_name, version, ep.value)

    def register(self, obj: object, name: str, distribution: str = "<in-process>",
                 version: str = "", entry_point: str = "") -> bool:
        """Register one plugin object; False (and a report) when it is broken."""
        short = name.split(":", 1)[-1]
        try:
            self.pm.register(obj, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self.report(PluginProblem(distribution, version, short,
                                      f"invalid hook implementation: {_short(exc)}"))
            return False
        unknown = [hc.name for hc in self.pm.get_hookcallers(obj) or [] if not hc.has_spec()]
        if unknown:
            self.pm.unregister(obj)
            self.report(PluginProblem(distribution, version, short,
                                      f"implements unknown hook(s) {', '.join(unknown)}; "
                                      f"known hooks: {', '.join(self.hook_names())}"))
            return False
        hooks = sorted(hc.name for hc in self.pm.get_hookcallers(obj) or [])
        self.plugins[name] = PluginInfo(short, distribution, version, entry_point, hooks)
        self._cache.clear()
        return True

    def hook_names(self) -> list[str]:
        return sorted(n for n in dir(hookspecs) if n.startswith("daqhub_"))

    # --- calling hooks one implementation at a time ---------------------------------

    def _call_each(self, hook: str, *, only: str | None = None, lenient: bool = False,
                   **kwargs: Any) -> list[tuple[PluginInfo, Any]]:
        """``lenient``: a raising plugin is recorded but never raises, even in strict mode
        (notifications run on several threads at once, so strict is not toggled)."""
        caller = getattr(self.pm.hook, hook)
        out = []
        for impl in reversed(caller.get_hookimpls()):  # registration order
            if only is not None and impl.plugin_name != only:
                continue
            info = self.plugins.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "?", "", "")
            args = {k: kwargs[k] for k in impl.argnames}
            try:
                out.append((info, impl.function(**args)))
            except Exception as exc:  # isolate one plugin's bug from the rest
                problem = PluginProblem(info.distribution, info.version, info.name,
                                        f"hook {hook} raised {_short(exc)}",
                                        traceback.format_exc())
                if lenient:
                    self.problems.append(problem)
                else:
                    self.report(problem)
        return out

    def _collect(self, hook: str, kind: type[T] | tuple[type[T], ...],
                 **kwargs: Any) -> list[tuple[PluginInfo, T]]:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        items: list[tuple[PluginInfo, T]] = []
        for info, result in self._call_each(hook, **kwargs):
            if result is None:
                continue
            if not isinstance(result, Iterable) or isinstance(result, str | bytes | Mapping):
                self.report(PluginProblem(info.distribution, info.version, info.name,
                                          f"hook {hook} must return a list, got "
                                          f"{type(result).__name__}"))
                continue
            for item in result:
                if not isinstance(item, kind):
                    self.report(PluginProblem(info.distribution, info.version, info.name,
                                              f"hook {hook} returned a {type(item).__name__}, "
                                              f"expected "
                                              f"{' or '.join(k.__name__ for k in kinds)}"))
                    continue
                items.append((info, item))
        return items

    def _cached(self, key: str, build: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]  # type: ignore[no-any-return]

    def _unique(self, hook: str, kind: type[T], key: Callable[[T], Any],
                label: Callable[[T], str],
                check: Callable[[T], list[str]] | None = None) -> dict[Any, tuple[PluginInfo, T]]:
        """Collect declarations; drop invalid ones and every side of a clash, with reports."""
        found: dict[Any, list[tuple[PluginInfo, T]]] = {}
        for info, item in self._collect(hook, kind):
            bad = check(item) if check else []
            if bad:
                self.report(PluginProblem(info.distribution, info.version, info.name,
                                          f"invalid {label(item)}: {'; '.join(bad)}"))
                continue
            found.setdefault(key(item), []).append((info, item))
        out = {}
        for k, entries in found.items():
            if len(entries) == 1:
                out[k] = entries[0]
                continue
            owners = ", ".join(f"{i.distribution} {i.version}" for i, _ in entries)
            for info, item in entries:
                self.report(PluginProblem(info.distribution, info.version, info.name,
                                          f"{label(item)} is declared by several plugins "
                                          f"({owners}); none of them is used"))
        return out

    # --- the typed facade -------------------------------------------------------------

    def instrument_types(self) -> dict[tuple[str, str], InstrumentType]:
        """(type name, flavor) -> declaration, from every plugin."""
        found = self._cached("types", lambda: self._unique(
            "daqhub_instrument_types", InstrumentType, lambda t: (t.name, t.flavor),
            lambda t: f"instrument type {t.name!r} ({t.flavor})", InstrumentType.problems))
        return {k: v[1] for k, v in found.items()}

    def instrument_type(self, name: str, flavor: str) -> InstrumentType | None:
        return self.instrument_types().get((name, flavor))

    def type_owner(self, name: str, flavor: str) -> PluginInfo | None:
        self.instrument_types()
        found = self._cache["types"]
        entry = found.get((name, flavor))
        return entry[0] if entry else None

    def type_names(self) -> list[str]:
        return sorted({name for name, _ in self.instrument_types()})

    def storage_backends(self) -> dict[str, StorageBackend]:
        found = self._cached("storage", lambda: self._unique(
            "daqhub_storage_backends", StorageBackend, lambda b: b.name,
            lambda b: f"storage backend {b.name!r}"))
        return {k: v[1] for k, v in found.items()}

    def converters(self) -> list[Converter]:
        return [c for _, c in self._cached("converters", lambda: self._collect(
            "daqhub_converters", Converter))]

    def converter(self, source: Format, target: Format) -> Converter:
        for c in self.converters():
            if c.source == source and c.target == target:
                return c
        raise LookupError(f"no converter from {source!r} to {target!r} is installed")

    def cli_commands(self) -> dict[str, CliCommand]:
        found = self._cached("cli", lambda: self._unique(
            "daqhub_cli_commands", CliCommand, lambda c: c.name,
            lambda c: f"command {c.name!r}"))
        return {k: v[1] for k, v in found.items()}

    def serial_url_packages(self) -> list[str]:
        return self._cached("serial", lambda: sorted({
            p for _, p in self._collect("daqhub_serial_url_packages", str)}))

    def validate_config(self, config: Mapping[str, Any]
                        ) -> list[tuple[PluginInfo, ConfigProblem]]:
        """Every plugin's problems with ``config``; a plain sentence becomes a pathless one."""
        found: list[tuple[PluginInfo, ConfigProblem | str]] = self._collect(
            "daqhub_validate_config", (ConfigProblem, str), config=config)
        return [(info, ConfigProblem(item) if isinstance(item, str) else item)
                for info, item in found]

    def notify(self, hook: str, *, plugin: str | None = None, **kwargs: Any) -> None:
        """Tell every plugin (or only ``plugin``) of an event; a plugin that raises is
        reported, never propagated. A run delivers these through ``runtime.notify``, one
        thread per plugin, so a slow listener never holds up an instrument."""
        if hook not in NOTIFICATION_HOOKS:
            raise ValueError(f"{hook} is not a notification hook")
        self._call_each(hook, only=plugin, lenient=True, **kwargs)  # never stops a run

    def notification_plugins(self) -> list[str]:
        """Names of the plugins that implement at least one notification hook."""
        names = {impl.plugin_name for hook in NOTIFICATION_HOOKS
                 for impl in getattr(self.pm.hook, hook).get_hookimpls()}
        return sorted(names)

    # --- listing ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Everything ``daqhub plugins`` shows, JSON-ready."""
        self.instrument_types(), self.storage_backends(), self.converters()  # fill the caches
        found_types = self._cache["types"]
        backends = self._cache["storage"]
        converters = self._cache["converters"]
        dists: dict[str, dict[str, Any]] = {}
        own = _dist_version("daqhub")
        def dist(name: str, version: str) -> dict[str, Any]:
            return dists.setdefault(name, {
                "name": name, "version": version, "plugins": [], "hooks": [],
                "instrument_types": [], "storage_backends": [], "converters": [],
                "problems": []})

        for info in self.plugins.values():
            d = dist(info.distribution, info.version)
            d["plugins"].append(info.name)
            d["hooks"] = sorted(set(d["hooks"]) | set(info.hooks))
        for p in self.problems:  # a distribution whose plugin failed is listed with why
            dist(p.distribution, p.version)["problems"].append(p.error)
        dist("daqhub", own)
        for (name, flavor), (info, t) in sorted(found_types.items()):
            dists[info.distribution]["instrument_types"].append({
                "name": name, "flavor": flavor, "transport": t.transport,
                "capabilities": list(t.capabilities), "description": t.description})
        for name, (info, b) in sorted(backends.items()):
            dists[info.distribution]["storage_backends"].append(
                {"name": name, "description": b.description})
        for info, c in converters:
            dists[info.distribution]["converters"].append(
                {"name": c.name, "source": c.source, "target": c.target})
        return {
            "daqhub": own,
            "distributions": sorted(dists.values(), key=lambda d: (d["name"] != "daqhub",
                                                                   d["name"])),
            "problems": [{"distribution": p.distribution, "version": p.version,
                          "plugin": p.plugin, "error": p.error} for p in self.problems],
        }


def _short(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " | ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _dist_version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return __version__


def _incompatible(dist: md.Distribution) -> str | None:
    """Why a distribution's declared daqhub range excludes the running daqhub, if it does."""
    if dist.name == "daqhub":
        return None
    try:
        running = Version(_dist_version("daqhub"))
    except InvalidVersion:
        return None
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.name.lower() != "daqhub" or req.marker is not None and not req.marker.evaluate(
                {"extra": ""}):
            continue
        if req.specifier and not req.specifier.contains(running, prereleases=True):
            return (f"requires daqhub {req.specifier}, but daqhub {running} is running; "
                    "install a matching version of the plugin")
    return None


_default: PluginHost | None = None
_default_lock = threading.Lock()


def default_host() -> PluginHost:
    """The process's plugin host, loaded from the installed entry points on first use."""
    global _default
    with _default_lock:
        if _default is None:
            host = PluginHost()
            host.load_entry_points()
            _default = host
        return _default


def problems_text(problems: Sequence[PluginProblem]) -> str:
    return "\n".join(f"  - {p}" for p in problems)
