"""The plugin host: discovery, validation, isolation of broken plugins, listing.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that
fails to import, and a hook call stops at the first implementation that
raises. A lab with one broken third-party driver must still run everything
else, so the host loads entry points in its own loop and calls collecting
hooks one implementation at a time, turning every failure into a
:class:`PluginProblem` that names the distribution, its version and the error.
Strict mode (for CI) raises once a step (loading, collecting one hook) is done, with every
problem that step found, so CI sees them all in one run.

Set ``DAQHUB_TRACE_HOOKS=1`` to print to stderr every plugin import (with its duration)
and every hook call: plugin, arguments, duration and result. The host traces its own calls,
since it calls implementations itself rather than through ``pm.hook`` (pluggy's tracing
would see nothing).

Plugin code that does not return is named, not waited for in silence: the host records what
each thread is in (:class:`PluginCall`: a hook, an import, a storage backend's ``open()``),
and one watcher thread says on stderr which call has not returned after
:data:`SLOW_CALL_S`; a Ctrl-C that ends such a call says which it ended. Only the main thread
ever receives a real Ctrl-C, so a ``KeyboardInterrupt`` anywhere else is the plugin's own
doing and is contained like any other error (:func:`is_plugin_fault`).
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import __version__, hookspecs
from .capabilities import CAPABILITIES, implementation_problems
from .instrument import V2Instrument, V4Actor
from .specs import (
    CliCommand,
    ConfigProblem,
    Converter,
    Format,
    InstrumentType,
    StorageBackend,
)

GROUP = "daqhub"
#: the distribution of daqhub's own plugins (its converters and storage backends)
OWN_DISTRIBUTION = "daqhub"
TRACE_ENV = "DAQHUB_TRACE_HOOKS"
#: a distribution whose plugins take longer than this to import is flagged by ``daqhub plugins``
SLOW_IMPORT_S = 1.0
#: plugin code (a hook, an import, a backend's open()) that has not returned after this many
#: seconds is named on stderr, once: a command that loads plugins must not hang unexplained
SLOW_CALL_S = 5.0
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
    """Raised in strict mode with every plugin problem of the step that found them."""

    def __init__(self, problems: Sequence[PluginProblem]) -> None:
        self.problems = list(problems)
        self.problem = self.problems[0]
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    entry_point: str
    hooks: list[str] = field(default_factory=list)

    @property
    def release(self) -> str:
        """``daqhub-evil 0.1`` (a plugin registered in-process may have no version)."""
        return f"{self.distribution} {self.version}".strip()

    def __str__(self) -> str:
        """``daqhub-evil 0.1 (evil)``, as a :class:`PluginProblem` names it."""
        return f"{self.release} ({self.name})"


def is_plugin_fault(exc: BaseException) -> bool:
    """Whether ``exc``, raised by plugin code, is the plugin's failure to contain and name:
    anything but a ``KeyboardInterrupt`` on the main thread, the only thread a real Ctrl-C
    reaches. Elsewhere a ``KeyboardInterrupt``, like ``SystemExit`` or ``GeneratorExit``, is
    the plugin's own doing, and let through it ended the thread it ran on (a notification
    lane: every later notification of that plugin lost, no alarm, exit 0)."""
    return not (isinstance(exc, KeyboardInterrupt)
                and threading.current_thread() is threading.main_thread())


#: collecting hooks whose None is "nothing to say", not a forgotten ``return``: a lab check
#: that finds nothing wrong (a None there made every lab invalid)
NOTHING_TO_SAY = frozenset({"daqhub_validate_config"})


class PluginCall:
    """Plugin code a thread is in, as a context manager around the call: what it is (``hook
    daqhub_instrument_types``, ``open()``), whose (``who``: a :class:`PluginInfo`, a storage
    backend's label) and since when.

    Inside it, :func:`current_call` tells what the thread is in (a signal handler names it);
    a call still running after :data:`SLOW_CALL_S` is named on stderr once (``notice``
    False: not, as a run's notification lanes raise alarms of their own); one that a Ctrl-C
    ends says so, with ``after`` (what goes on regardless) and the note on the exception.
    ``limit``: how long the caller waits at most, said in the notice."""

    __slots__ = ("what", "who", "since", "limit", "after", "notice", "noticed", "_thread",
                 "_outer")

    def __init__(self, what: str, who: object, *, limit: float | None = None,
                 after: str = "", notice: bool = True) -> None:
        self.what, self.who, self.limit, self.after = what, who, limit, after
        self.notice = notice
        self.noticed = False
        self.since = 0.0
        self._thread = 0
        self._outer: PluginCall | None = None

    def __str__(self) -> str:
        return f"{self.what} of {self.who}"

    def took(self) -> float:
        return time.perf_counter() - self.since

    def __enter__(self) -> PluginCall:
        # every hook call passes here: two dict operations, no lock (see _Watch)
        self._thread = ident = threading.get_ident()
        self._outer = _WATCH.calls.get(ident)
        self.since = time.perf_counter()
        _WATCH.calls[ident] = self
        if _WATCH.parked and self.notice:
            _WATCH.rouse()
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if self._outer is None:
            _WATCH.calls.pop(self._thread, None)
        else:
            _WATCH.calls[self._thread] = self._outer
        if exc is not None and not is_plugin_fault(exc) and not getattr(exc, "__notes__", ()):
            # a Ctrl-C ended this call (the innermost: an outer one finds the note)
            said = f"daqhub: interrupted in {self} after {self.took():.1f} s" + (
                f"; {self.after}" if self.after else "")
            exc.add_note(said)
            _tell(said)


def current_call() -> PluginCall | None:
    """The plugin code this thread is in now, innermost, if any (a signal handler runs in
    the main thread, so there it tells what the main thread was in)."""
    return _WATCH.calls.get(threading.get_ident())


def _tell(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # stderr's reader went away, or it is closed: nobody to tell


class _Watch:
    """What plugin code each thread is in (thread id -> innermost :class:`PluginCall`), and
    one daemon thread for the process that names a call once it has run for
    :data:`SLOW_CALL_S`. It looks at most once per :data:`SLOW_CALL_S` while calls come and
    go, and waits for the next call while none does: a call costs two dict operations, not a
    timer or a thread."""

    def __init__(self) -> None:
        self.calls: dict[int, PluginCall] = {}
        #: the watcher waits for a call to start: the next to start wakes it (rouse)
        self.parked = True
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def rouse(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name="daqhub-plugin-watch",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def _main(self) -> None:
        while True:
            self._wake.clear()
            self.parked = True  # before looking: a call that starts after the look wakes it
            wait = self._tell_slow()
            if wait is None:
                self._wake.wait()  # a call started: it is due SLOW_CALL_S from now, if ever
                wait = SLOW_CALL_S
            self.parked = False  # the calls that start meanwhile are seen at the next look
            time.sleep(wait)

    def _tell_slow(self) -> float | None:
        """Name every call past :data:`SLOW_CALL_S` not named yet; the seconds until the next
        one could be, None when no call is left to watch."""
        now = time.perf_counter()
        main = threading.main_thread().ident
        wait: float | None = None
        for ident, call in tuple(self.calls.items()):
            if not call.notice or call.noticed:
                continue
            left = call.since + SLOW_CALL_S - now
            if left > 0:
                wait = left if wait is None else min(wait, left)
                continue
            call.noticed = True
            bound = f"; daqhub waits {call.limit:g} s at most" if call.limit is not None else ""
            stop = " (Ctrl-C stops waiting)" if ident == main else ""
            _tell(f"daqhub: still waiting for {call}: it has not returned in "
                  f"{now - call.since:.1f} s{bound}{stop}")
        return wait


_WATCH = _Watch()


_TypeTables = tuple[dict[Any, tuple[PluginInfo, InstrumentType]],
                    dict[Any, list[tuple[PluginInfo, InstrumentType]]],
                    dict[Any, list[str]]]


class PluginHost:
    """Loads plugins and gives the core one typed method per hook."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.problems: list[PluginProblem] = []
        #: told of every notification hook that raised (a run turns it into an alarm)
        self.notify_listeners: list[Callable[[PluginProblem], None]] = []
        self.plugins: dict[str, PluginInfo] = {}
        #: seconds each distribution's entry points took to import
        self.import_times: dict[str, float] = {}
        self._order: dict[str, int] = {}  # plugin name -> registration number
        self._cache: dict[str, Any] = {}
        self.reserved_commands: frozenset[str] = frozenset()  # see reserve_commands
        self._lock = threading.Lock()
        self._step = threading.local()  # the problems of this thread's current step
        self._trace = bool(os.environ.get(TRACE_ENV))

    # --- loading ----------------------------------------------------------------

    def load_problems(self) -> list[PluginProblem]:
        """The problems of the plugins that did not load (an import that failed, a daqhub
        range that excludes this one, hooks daqhub does not know): nothing of them is used.
        A loaded plugin's later problems (a hook that raised, a declaration refused) are not
        among them."""
        loaded = {(info.distribution, info.name) for info in self.plugins.values()}
        return [p for p in self.problems if (p.distribution, p.plugin) not in loaded]

    def report(self, problem: PluginProblem) -> None:
        self.problems.append(problem)
        found = getattr(self._step, "found", None)
        if found is not None:
            found.append(problem)

    @contextmanager
    def _collecting(self, isolated: bool = False) -> Iterator[list[PluginProblem]]:
        """The problems this thread reports inside the block (a notification another thread
        reports meanwhile is not part of this step); ``isolated``: not part of an enclosing
        step either."""
        outer = getattr(self._step, "found", None)
        found: list[PluginProblem] = []
        self._step.found = found
        try:
            yield found
        finally:
            self._step.found = outer
            if outer is not None and not isolated:
                outer.extend(found)

    @contextmanager
    def _strict_step(self) -> Iterator[None]:
        """In strict mode, raise once the step is done with every problem it found."""
        with self._collecting() as found:
            yield
        if self.strict and found:
            raise PluginError(found)

    def _say(self, text: str) -> None:
        sys.stderr.write(f"[daqhub hooks] {text}\n")

    def load_entry_points(self, group: str = GROUP) -> None:
        """Load every plugin of the entry-point group, reporting the broken ones."""
        with self._strict_step():
            self._load_entry_points(group)

    def _load_entry_points(self, group: str) -> None:
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
            started = time.perf_counter()
            try:
                with PluginCall(f"import of {ep.value}", f"{dist_name} {version}"):
                    obj = ep.load()
            except BaseException as exc:  # a plugin's import may raise anything: sys.exit()
                # in it ended every command with 0 and nothing said, --strict too
                if not is_plugin_fault(exc):
                    raise
                self.report(PluginProblem(dist_name, version, ep.name,
                                          f"failed to import {ep.value}: {_short(exc)}",
                                          traceback.format_exc()))
                continue
            finally:
                took = time.perf_counter() - started
                self.import_times[dist_name] = self.import_times.get(dist_name, 0.0) + took
                if self._trace:
                    self._say(f"load {plugin_name} = {ep.value} ({dist_name} {version}): "
                              f"import {took * 1000:.1f} ms")
            if isinstance(obj, type):
                self.report(PluginProblem(dist_name, version, ep.name,
                                          f"entry point {ep.value} names a class; name a module "
                                          "or a module-level object"))
                continue
            self._register(obj, plugin_name, dist_name, version, ep.value)

    def register(self, obj: object, name: str, distribution: str = "<in-process>",
                 version: str = "", entry_point: str = "") -> bool:
        """Register one plugin object; False (and a report) when it is broken."""
        with self._strict_step():
            ok = self._register(obj, name, distribution, version, entry_point)
        return ok

    def _register(self, obj: object, name: str, distribution: str, version: str,
                  entry_point: str) -> bool:
        short = name.split(":", 1)[-1]
        try:
            self.pm.register(obj, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self.report(PluginProblem(distribution, version, short,
                                      f"invalid hook implementation: {_short(exc)}"))
            return False
        callers = self.pm.get_hookcallers(obj) or []
        unknown = [hc.name for hc in callers if not hc.has_spec()]
        wrappers = [hc.name for hc in callers for impl in hc.get_hookimpls()
                    if impl.plugin is obj and (impl.wrapper or impl.hookwrapper)]
        if unknown or wrappers:
            self.pm.unregister(obj)
            why = (f"implements unknown hook(s) {', '.join(unknown)}; known hooks: "
                   f"{', '.join(self.hook_names())}" if unknown else
                   f"implements {', '.join(wrappers)} as a wrapper, which daqhub does not "
                   f"support (see daqhub.hookspecs)")
            self.report(PluginProblem(distribution, version, short, why))
            return False
        hooks = sorted(hc.name for hc in callers)
        unmarked = [n for n in _unmarked_hooks(obj, hooks) if n in self.hook_names()]
        if not hooks:  # listed with "-" and no word: a lab said only "unknown type"
            self.pm.unregister(obj)
            hint = (f"; {', '.join(unmarked)} lack(s) @hookimpl (from daqhub.hookspecs import "
                    "hookimpl)" if unmarked else "")
            self.report(PluginProblem(distribution, version, short,
                                      f"{entry_point or name} implements no daqhub hook, so it "
                                      f"adds nothing{hint}"))
            return False
        if unmarked:  # registered for the hooks it marks; these are never called
            self.report(PluginProblem(distribution, version, short,
                                      f"{', '.join(unmarked)} lack(s) @hookimpl (from "
                                      "daqhub.hookspecs import hookimpl): daqhub never calls "
                                      f"{'it' if len(unmarked) == 1 else 'them'}"))
        self.plugins[name] = PluginInfo(short, distribution, version, entry_point, hooks)
        self._order[name] = len(self._order)
        self._cache.clear()
        if self._trace:
            self._say(f"register {name} ({distribution} {version}): {', '.join(hooks)}")
        return True

    def hook_names(self) -> list[str]:
        return sorted(n for n in dir(hookspecs) if n.startswith("daqhub_"))

    # --- calling hooks one implementation at a time ---------------------------------

    def _call_each(self, hook: str, *, only: str | None = None,
                   **kwargs: Any) -> list[tuple[PluginInfo, Any]]:
        """Each implementation in turn (only ``only``'s when given), each isolated."""
        caller = getattr(self.pm.hook, hook)
        out = []
        # registration order (installed plugins: by distribution, then entry-point name),
        # whatever order pluggy keeps them in
        impls = sorted(caller.get_hookimpls(), key=lambda i: self._order.get(i.plugin_name, -1))
        # a run's notification lanes raise alarms of their own for a hook that does not return
        notice = hook not in NOTIFICATION_HOOKS
        what = f"hook {hook}"
        for impl in impls:
            if only is not None and impl.plugin_name != only:
                continue
            info = self.plugins.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "?", "", "")
            args = {k: kwargs[k] for k in impl.argnames}
            started = time.perf_counter()
            try:
                with PluginCall(what, info, notice=notice):
                    result = impl.function(**args)
            except BaseException as exc:  # isolate one plugin's bug from the rest
                if not is_plugin_fault(exc):
                    raise  # a Ctrl-C (PluginCall has said where it came)
                result = exc
                problem = PluginProblem(info.distribution, info.version, info.name,
                                        f"hook {hook} raised {_short(exc)}",
                                        traceback.format_exc())
                self.report(problem)
            else:
                out.append((info, result))
            if self._trace:
                shown = ", ".join(f"{k}={_brief(v)}" for k, v in args.items())
                self._say(f"call {hook}({shown}) -> {impl.plugin_name}: "
                          f"{(time.perf_counter() - started) * 1000:.2f} ms, "
                          f"{'raised' if isinstance(result, BaseException) else 'returned'} "
                          f"{_brief(result)}")
        return out

    def _collect(self, hook: str, kind: type[T] | tuple[type[T], ...],
                 **kwargs: Any) -> list[tuple[PluginInfo, T]]:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        items: list[tuple[PluginInfo, T]] = []
        for info, result in self._call_each(hook, **kwargs):
            if result is None and hook in NOTHING_TO_SAY:
                continue
            if result is None:  # read as "nothing to add", it hid every declaration it made
                self.report(PluginProblem(info.distribution, info.version, info.name,
                                          f"hook {hook} returned None: did it forget "
                                          "`return`? (return [] when it has nothing)"))
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
                with self._strict_step():
                    self._cache[key] = build()
            return self._cache[key]  # type: ignore[no-any-return]

    def _unique(self, hook: str, kind: type[T], key: Callable[[T], Any],
                label: Callable[[T], str],
                check: Callable[[T], list[str]] | None = None,
                clashes: dict[Any, list[tuple[PluginInfo, T]]] | None = None,
                rejected: dict[Any, list[str]] | None = None,
                own_wins: bool = False, choose_in: str = "",
                ) -> dict[Any, tuple[PluginInfo, T]]:
        """Collect declarations; drop invalid ones and every side of a clash, with reports.

        ``clashes`` receives the dropped sides, so a lab using one is told why, and
        ``choose_in`` names where a lab file chooses one of them, if it can;
        ``rejected`` why invalid ones were dropped, so a lab using one is told; ``own_wins``:
        in a clash with daqhub's own declaration, daqhub's is used and the others are
        reported as not used (what no lab file chooses: converters, storage backends)."""
        found: dict[Any, list[tuple[PluginInfo, T]]] = {}
        for info, item in self._collect(hook, kind):
            bad = check(item) if check else []
            if bad:
                why = f"invalid {label(item)}: {'; '.join(bad)}"
                self.report(PluginProblem(info.distribution, info.version, info.name, why))
                if rejected is not None:
                    rejected.setdefault(key(item), []).append(
                        f"{info.distribution} {info.version} ({info.name}): {why}")
                continue
            found.setdefault(key(item), []).append((info, item))
        out = {}
        for k, entries in found.items():
            if len(entries) == 1:
                out[k] = entries[0]
                continue
            owners = ", ".join(f"{i.distribution} {i.version}" for i, _ in entries)
            own = [e for e in entries if own_wins and e[0].distribution == OWN_DISTRIBUTION]
            if len(own) == 1:
                out[k] = own[0]
                for info, item in entries:
                    if info.distribution != OWN_DISTRIBUTION:
                        self.report(PluginProblem(
                            info.distribution, info.version, info.name,
                            f"{label(item)} is declared by daqhub too ({owners}); daqhub's "
                            f"own is used, not this one"))
                continue
            if clashes is not None:
                clashes[k] = entries
            unless = f" unless a lab file chooses one in {choose_in}" if choose_in else ""
            for info, item in entries:
                self.report(PluginProblem(info.distribution, info.version, info.name,
                                          f"{label(item)} is declared by several plugins "
                                          f"({owners}); none of them is used{unless}"))
        return out

    # --- the typed facade -------------------------------------------------------------

    def _types(self) -> _TypeTables:
        known = self.capabilities()

        def check(t: InstrumentType) -> list[str]:
            cls = _class_of(t.factory)
            if cls is None:  # a plain function: what it builds is known only when called
                return _type_problems(t)
            return _type_problems(t) + implementation_problems(cls, t.flavor, t.capabilities,
                                                               known)

        def build() -> _TypeTables:
            clashes: dict[Any, list[tuple[PluginInfo, InstrumentType]]] = {}
            rejected: dict[Any, list[str]] = {}
            found = self._unique(
                "daqhub_instrument_types", InstrumentType, lambda t: (t.name, t.flavor),
                lambda t: f"instrument type {t.name!r} ({t.flavor})", check, clashes,
                rejected, choose_in="[daqhub.providers]")
            return found, clashes, rejected

        return self._cached("types", build)

    def instrument_types(self) -> dict[tuple[str, str], InstrumentType]:
        """(type name, flavor) -> declaration, from every plugin."""
        return {k: v[1] for k, v in self._types()[0].items()}

    def type_clashes(self) -> dict[tuple[str, str], list[tuple[PluginInfo, InstrumentType]]]:
        """(type name, flavor) declared by several plugins -> every declaration (none is used
        unless a lab chooses one with ``[daqhub.providers]``)."""
        return dict(self._types()[1])

    def capabilities(self) -> dict[str, type]:
        """Capability name -> its Protocol class: the core's and every plugin's."""
        def build() -> dict[str, type]:
            found = self._unique("daqhub_capabilities", type, lambda c: c.__name__,
                                 lambda c: f"capability {c.__name__!r}",
                                 lambda c: [f"the core already defines {c.__name__}"]
                                 if c.__name__ in CAPABILITIES else [])
            return {**CAPABILITIES, **{k: v[1] for k, v in found.items()}}
        return self._cached("capabilities", build)

    def type_rejections(self) -> dict[tuple[str, str], list[str]]:
        """(type name, flavor) -> why each declaration of it was refused at load."""
        return dict(self._types()[2])

    def instrument_type(self, name: str, flavor: str,
                        provider: str | None = None) -> InstrumentType | None:
        """The declaration in use; with ``provider``, the one that distribution declares
        (which is how a lab settles a clash)."""
        entry = self._type_entry(name, flavor, provider)
        return entry[1] if entry else None

    def _type_entry(self, name: str, flavor: str, provider: str | None
                    ) -> tuple[PluginInfo, InstrumentType] | None:
        found, clashes, _ = self._types()
        if provider is None:
            return found.get((name, flavor))
        candidates = clashes.get((name, flavor)) or [e for e in [found.get((name, flavor))] if e]
        want = dist_key(provider)
        return next((e for e in candidates if dist_key(e[0].distribution) == want), None)

    def type_owner(self, name: str, flavor: str,
                   provider: str | None = None) -> PluginInfo | None:
        entry = self._type_entry(name, flavor, provider)
        return entry[0] if entry else None

    def type_names(self) -> list[str]:
        return sorted({name for name, _ in self.instrument_types()})

    def storage_backends(self) -> dict[str, StorageBackend]:
        return {k: v[1] for k, v in self._storage_entries().items()}

    def storage_backend_owner(self, name: str) -> PluginInfo | None:
        """Who declares storage backend ``name`` (None: no one): what a failure of it names."""
        entry = self._storage_entries().get(name)
        return None if entry is None else entry[0]

    def storage_clashes(self) -> dict[str, list[tuple[PluginInfo, StorageBackend]]]:
        """Backend name declared by several plugins, none of them daqhub -> every
        declaration: none is used (no lab file chooses one), and a lab naming it is told
        why rather than that it is unknown."""
        return dict(self._storage()[1])

    def _storage_entries(self) -> dict[str, tuple[PluginInfo, StorageBackend]]:
        return self._storage()[0]

    def _storage(self) -> tuple[dict[str, tuple[PluginInfo, StorageBackend]],
                                dict[str, list[tuple[PluginInfo, StorageBackend]]]]:
        """daqhub's own backend wins a clash, as its converters do: a plugin's ``hdf5``
        took daqhub's away (both dropped), and every lab storing v2 data, the demo lab's
        too, was told its backend was unknown."""
        def build() -> tuple[dict[str, tuple[PluginInfo, StorageBackend]],
                             dict[str, list[tuple[PluginInfo, StorageBackend]]]]:
            clashes: dict[Any, list[tuple[PluginInfo, StorageBackend]]] = {}
            found = self._unique("daqhub_storage_backends", StorageBackend, lambda b: b.name,
                                 lambda b: f"storage backend {b.name!r}", clashes=clashes,
                                 own_wins=True)
            return found, clashes
        return self._cached("storage", build)

    def _converters(self) -> dict[tuple[Format, Format], tuple[PluginInfo, Converter]]:
        """(source, target) -> the converter in use and who declares it.

        One converter per pair: another plugin's for a pair daqhub converts itself is
        reported and not used (the first registered used to be taken, so a plugin replaced
        daqhub's own without a word); a pair only plugins convert, declared by several of
        them, is reported and none is used, as with storage backends."""
        return self._cached("converters", lambda: self._unique(
            "daqhub_converters", Converter, lambda c: (c.source, c.target),
            lambda c: f"converter {c.name!r} ({c.source} -> {c.target})",
            _converter_problems, own_wins=True))

    def converters(self) -> list[Converter]:
        """The converters in use, one per (source, target)."""
        return [c for _, c in self._converters().values()]

    def converter(self, source: Format, target: Format) -> Converter:
        return self._converter_entry(source, target)[1]

    def converter_owner(self, source: Format, target: Format) -> PluginInfo:
        """Who declares the converter in use from ``source`` to ``target``: what a failure
        of it names."""
        return self._converter_entry(source, target)[0]

    def _converter_entry(self, source: Format, target: Format
                         ) -> tuple[PluginInfo, Converter]:
        entry = self._converters().get((source, target))
        if entry is None:
            raise LookupError(f"no converter from {source!r} to {target!r} is installed")
        return entry

    def reserve_commands(self, names: Iterable[str]) -> None:
        """Command names no plugin may take: the CLI's own (a plugin's ``run`` used to
        replace ``daqhub run`` without a word). A plugin command so named is reported."""
        self.reserved_commands = frozenset(names)
        self._cache.pop("cli", None)

    def _cli_found(self) -> dict[str, tuple[PluginInfo, CliCommand]]:
        def own(c: CliCommand) -> list[str]:
            return [f"daqhub has a command {c.name!r} of its own; the plugin's is not used"
                    ] if c.name in self.reserved_commands else []
        return self._cached("cli", lambda: self._unique(
            "daqhub_cli_commands", CliCommand, lambda c: c.name,
            lambda c: f"command {c.name!r}", check=own))

    def cli_commands(self) -> dict[str, CliCommand]:
        return {k: v[1] for k, v in self._cli_found().items()}

    def cli_commands_of(self, distribution: str) -> list[str]:
        """The names of the commands ``distribution`` adds, sorted."""
        return sorted(k for k, (info, _) in self._cli_found().items()
                      if dist_key(info.distribution) == dist_key(distribution))

    def serial_url_packages(self) -> list[str]:
        return self._cached("serial", lambda: sorted({
            p for _, p in self._collect("daqhub_serial_url_packages", str)}))

    def validate_config(self, config: Mapping[str, Any]
                        ) -> list[tuple[PluginInfo, ConfigProblem]]:
        """Every plugin's problems with ``config``; a plain sentence becomes a pathless one.

        A check that raises (or returns the wrong thing) is a problem of the lab's validation
        too: its silence must not read as "valid"."""
        with self._collecting() as failures:
            found: list[tuple[PluginInfo, ConfigProblem | str]] = self._collect(
                "daqhub_validate_config", (ConfigProblem, str), config=config)
        out = [(info, ConfigProblem(item) if isinstance(item, str) else item)
               for info, item in found]
        for p in failures:
            info = PluginInfo(p.plugin, p.distribution, p.version, "")
            out.append((info, ConfigProblem(f"its lab check failed: {p.error}")))
        return out

    def notify(self, hook: str, *, plugin: str | None = None, **kwargs: Any) -> None:
        """Tell every plugin (or only ``plugin``) of an event; a plugin that raises is
        reported (to ``notify_listeners`` too), never propagated: a listener's bug must not
        stop a run. A run delivers these through ``runtime.notify``, one thread per plugin,
        so a slow listener never holds up an instrument."""
        if hook not in NOTIFICATION_HOOKS:
            raise ValueError(f"{hook} is not a notification hook")
        with self._collecting(isolated=True) as failed:  # never a strict failure
            self._call_each(hook, only=plugin, **kwargs)
        for problem in failed:
            for listener in list(self.notify_listeners):
                listener(problem)

    def notification_plugins(self) -> list[str]:
        """Names of the plugins that implement at least one notification hook."""
        names = {impl.plugin_name for hook in NOTIFICATION_HOOKS
                 for impl in getattr(self.pm.hook, hook).get_hookimpls()}
        return sorted(names)

    # --- listing ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Everything ``daqhub plugins`` shows, JSON-ready."""
        self.instrument_types(), self.storage_backends(), self.converters()  # fill the caches
        found_types = self._cache["types"][0]
        backends = self._storage_entries()
        converters = self._cache["converters"]
        dists: dict[str, dict[str, Any]] = {}
        own = _dist_version("daqhub")
        def dist(name: str, version: str) -> dict[str, Any]:
            return dists.setdefault(name, {
                "name": name, "version": version, "plugins": [], "hooks": [],
                "import_s": round(self.import_times.get(name, 0.0), 4),
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
        for info, c in converters.values():
            dists[info.distribution]["converters"].append(
                {"name": c.name, "source": c.source, "target": c.target})
        return {
            "daqhub": own,
            "distributions": sorted(dists.values(), key=lambda d: (d["name"] != "daqhub",
                                                                   d["name"])),
            "problems": [{"distribution": p.distribution, "version": p.version,
                          "plugin": p.plugin, "error": p.error} for p in self.problems],
        }


def _class_of(factory: Callable[..., Any]) -> type | None:
    """The class an instrument factory builds: itself, or a ``functools.partial`` of it."""
    target = getattr(factory, "func", factory)
    return target if isinstance(target, type) else None


def _unmarked_hooks(obj: object, marked: Sequence[str]) -> list[str]:
    """The ``daqhub_*`` functions of a plugin object that pluggy did not register because
    they lack ``@hookimpl``: what a plugin meant to add and never will."""
    return sorted(n for n in dir(obj) if n.startswith("daqhub_") and n not in marked
                  and callable(getattr(obj, n, None)))


def _brief(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _short(exc: BaseException) -> str:
    """One line: the exception, and the one it was raised from (Python 3.11 wraps an error
    raised in ``__set_name__``, so the toolkit's own message is only in the cause)."""
    text = str(exc).strip().replace("\n", " | ")
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if exc.__cause__ is None else f"{line} (from {_short(exc.__cause__)})"


def dist_key(name: str) -> str:
    """Distribution names compare as pip compares them (``daqhub_newport`` and
    ``Daqhub-Newport`` are ``daqhub-newport``)."""
    return canonicalize_name(name)


def _converter_problems(c: Converter) -> list[str]:
    """A converter declaration's own checks, at load rather than at its first conversion."""
    formats = get_args(Format)
    out = [f"{end} {fmt!r} is not one of {', '.join(formats)}"
           for end, fmt in (("source", c.source), ("target", c.target)) if fmt not in formats]
    return out + ([] if callable(c.convert) else ["convert is not callable"])


def _type_problems(t: InstrumentType) -> list[str]:
    """A declaration's own checks plus its flavor's contract, checked when it loads rather
    than when an instrument of it first starts."""
    out = t.problems()
    contract = {"v2": V2Instrument, "v4": V4Actor}.get(t.flavor)
    if contract is not None and isinstance(t.factory, type) and not issubclass(t.factory,
                                                                               contract):
        out.append(f"a {t.flavor} type's class must subclass {contract.__name__}; "
                   f"{t.factory.__qualname__} does not")
    return out


@functools.cache
def _dist_version(name: str) -> str:
    """Remembered: reading a distribution's metadata (an email-format file parsed anew each
    time) was a third of opening a storage session, which records the versions; the code
    this process runs does not change version under it."""
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
