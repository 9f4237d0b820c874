"""Storage sessions: ids, output directories, and routing the unified stream to backends.

A run writes each flavor's data to its own session directory,
``<output_dir>/v2/<session>/`` and ``<output_dir>/v4/<session>/``, through the
storage backend the lab file names for that flavor (``hdf5``, ``arrow`` or a
third-party one). The router opens every backend before acquisition starts,
so files and datasets exist from the channel declarations, then routes each
unified-stream batch by its ``source`` column.

Guarantees that live here rather than in each backend:

- a session id is unique even for processes started in the same second (UTC
  time plus a random suffix, and the session directory is created
  exclusively, so a collision is detected and a fresh id drawn);
- data reaches the disk on a bounded interval even when a channel goes quiet:
  a background thread calls ``flush()`` on every writer idle for longer than
  its ``flush_interval`` (a writer attribute; 1 s when it has none). Calls to
  one writer are serialized, so a backend never sees two threads at once;
- every sample a writer loses is counted once, by the sink that fed it: a
  backend raises :class:`WriteFailed` with the samples a failure left out of its
  files (those it still held, not just the batch in hand) and whose they were, and a
  flush that fails outside ``write()`` (the background one, ``flush()``) keeps its
  loss for the writer's next ``write()`` or ``close()`` to raise, never for another
  flavor's batch;
- one flavor's writer never holds up another's: each flavor is a sink of its own
  (:meth:`StorageSession.lanes`), which the runtime feeds from a queue and thread of
  its own and closes on a thread of its own, so a backend that hangs in ``write()``
  or ``close()`` costs its own flavor's data only (both flavors' used to be lost);
- a backend is a plugin's code, so what it does wrong is named with its flavor, name
  and distribution (``v2 storage backend hdf5 (daqhub 0.1)``): an ``open()`` that
  raises (``sys.exit()`` too) or returns no writer, or one whose ``flush_interval`` is no
  number of seconds, a ``close()`` that does not return its list of files;
- an ``open()`` is waited for :data:`OPEN_TIMEOUT` at most (a network share may take a few
  seconds; one that never answers hung the start for ever): it runs on a daemon thread of
  its own, which a hung ``open()`` keeps (a thread cannot be stopped; the process still
  exits), and a Ctrl-C ends the wait at once.

Ids become file and HDF5 group names, so :func:`check_id` confines them to a
safe alphabet: no configuration can make a backend write outside its
session directory.
"""

from __future__ import annotations

import collections
import contextlib
import math
import numbers
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import jsonschema
import pyarrow as pa
import pyarrow.compute as pc

from . import __version__
from .measurement import ChannelSpec, DataError, check_id, value_for_error
from .outdir import resolved, unwritable
from .resources.filelock import remove_stale_locks
from .schema import META_CHANNEL, META_INSTRUMENT, channel_schema, declared_channel
from .specs import FLAVORS, Flavor, StorageBackend, StorageTarget, StorageWriter

if TYPE_CHECKING:
    from .host import PluginHost

T = TypeVar("T")
DEFAULT_FLUSH_INTERVAL = 1.0
#: Longest a ``write()`` waits for its writer while another thread flushes it.
WRITE_LOCK_TIMEOUT = 30.0
#: Longest ``close()`` waits for the background flusher to finish its current flush.
FLUSHER_JOIN_TIMEOUT = 30.0
#: Longest :meth:`StorageSession.open` waits for one backend's ``open()``.
OPEN_TIMEOUT = 30.0
#: That wait is taken in slices this long: a signal that lands just as a wait blocks is
#: handled only once the wait ends (CPython looks for signals between bytecodes), which
#: made a Ctrl-C, and the second one too, wait out the whole bound now and then.
WAIT_SLICE_S = 0.2

_SESSION_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


class StorageError(RuntimeError):
    """Storage could not be opened, written or closed; the message says which flavor and why.

    ``result``, from ``close()``: what it would have returned for the flavors that did close
    (one flavor's failure does not hide the files of the others)."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class WriteFailed(StorageError):
    """Samples that are in no file: ``lost`` counts them, exactly.

    A backend holds samples before they reach the disk (HDF5 blocks, coalesced
    Arrow batches), so a failed write loses more than the batch in hand; and a
    file removed while it was written loses everything written to it. A sink
    counts ``lost``, not the batch's rows. ``result`` is what ``close()`` would
    have returned (the files still in place) when ``close()`` raises this after
    closing everything.

    ``by_instrument`` says whose samples they were (instrument id -> samples): what a
    writer held belongs to every instrument it held rows of, not to the batch in hand,
    so without it a report charged one batch's instrument and called the others clean.
    It may cover only part of ``lost`` (a failure joined with one that does not say); a
    sink charges the rest as it can (to the batch in hand, at most its rows).
    """

    def __init__(self, message: str, lost: int, result: Any = None, *,
                 by_instrument: Mapping[str, int] | None = None) -> None:
        super().__init__(message, result)
        self.lost = lost
        self.by_instrument = {i: n for i, n in (by_instrument or {}).items() if n > 0}

    @classmethod
    def joined(cls, failures: Sequence[WriteFailed], result: Any = None) -> WriteFailed:
        """Several failures as one, their losses (and whose they were) added."""
        if len(failures) == 1 and result is None:
            return failures[0]
        return cls("; ".join(map(str, failures)), sum(f.lost for f in failures), result,
                   by_instrument=_summed(f.by_instrument for f in failures))


# --- ids and directories ------------------------------------------------------------


def new_session_id(now: datetime | None = None) -> str:
    """``YYYYmmddTHHMMSSZ-<8 hex>``: sorts by start time, unique across processes.

    The random suffix makes a clash between processes started in the same
    second a 1-in-4-billion event, and :class:`StorageSession` creates the
    directory exclusively and draws again if even that happens.
    """
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(4)}"


def is_session_id(text: str) -> bool:
    return bool(_SESSION_ID.match(text))


def flavor_dirs(output_dir: Path | str) -> dict[Flavor, Path]:
    """The default per-flavor directories under a lab's ``output_dir``."""
    base = Path(output_dir)
    return {flavor: base / flavor for flavor in FLAVORS}


def check_output_dirs(v2_dir: Path | str | None, v4_dir: Path | str | None) -> list[str]:
    """Problems with the flavors' output directories (None: flavor disabled).

    The same or nested directories are refused because one flavor's sessions
    would then sit inside the other's tree, and cleaning or archiving one
    would take the other's data with it. Each directory must be writable, or
    creatable under a writable parent (:func:`.outdir.unwritable`).
    """
    problems: list[str] = []
    dirs = {f: Path(d) for f, d in (("v2", v2_dir), ("v4", v4_dir)) if d is not None}
    if len(dirs) == 2:
        a, b = (resolved(dirs["v2"]), resolved(dirs["v4"]))
        if a == b:
            problems.append(f"v2 and v4 output directories are the same ({a}); give each flavor "
                            f"its own, e.g. {a / 'v2'} and {a / 'v4'}")
        elif a.is_relative_to(b) or b.is_relative_to(a):
            inner, outer = ("v2", "v4") if a.is_relative_to(b) else ("v4", "v2")
            problems.append(f"the {inner} output directory ({dirs[inner]}) is inside the "
                            f"{outer} one ({dirs[outer]}); use two directories side by side")
    for flavor, d in dirs.items():
        why = unwritable(d)
        if why:
            problems.append(f"{flavor} output directory {d}: {why}")
    return problems


def versions_of(host: PluginHost | None) -> dict[str, str]:
    """daqhub's version and that of every distribution with a plugin loaded, as stored with
    the data: one whose plugins all failed to load took no part in the session, and listed
    it read as if it had."""
    if host is None:
        return {"daqhub": __version__}
    out = {info.distribution: info.version for info in host.plugins.values()
           if not info.distribution.startswith("<")}  # skip plugins registered in-process
    out.setdefault("daqhub", __version__)
    return out


def option_problems(backend: str, schema: Mapping[str, Any], options: Mapping[str, Any]
                    ) -> list[str]:
    """Backend options checked against the backend's JSON schema, as plain sentences."""
    validator = jsonschema.Draft202012Validator(dict(schema))
    out = []
    for err in sorted(validator.iter_errors(dict(options)), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in err.path)
        out.append(f"storage option {backend}{'.' + where if where else ''}: {err.message}")
    return out


# --- for backends -------------------------------------------------------------------


def file_identity(path: Path) -> tuple[int, int]:
    """Device and inode of the file at ``path``: taken at open, checked by :func:`moved_away`."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def moved_away(path: Path, identity: tuple[int, int]) -> str | None:
    """Why the file opened as ``identity`` is no longer at ``path``, or None while it is.

    A file removed while it is open takes every write without an error (the
    data goes to an inode nobody can open once it is closed), so a writer checks
    at close that what it wrote is still where it says.
    """
    try:
        now = file_identity(path)
    except FileNotFoundError:
        return f"{path} was removed while it was being written"
    except OSError as exc:
        return f"{path} cannot be checked after writing: {exc}"
    if now != identity:
        return f"{path} was replaced by another file while it was being written"
    return None


def raise_close_losses(path: Path, gone: str | None, kept: Mapping[str, int],
                       failed: WriteFailed | None) -> None:
    """What a writer's close must still say after closing its file at ``path``: everything
    is lost when the file was removed meanwhile (``gone``, from :func:`moved_away`; the
    rows it kept, ``kept`` per instrument, too), else what ``failed`` lost, the file still
    being there."""
    if gone:
        lost = WriteFailed(f"{gone}: its {sum(kept.values())} row(s) are lost",
                           sum(kept.values()), by_instrument=kept)
        raise WriteFailed.joined([lost, *([failed] if failed else [])], [])
    if failed is not None:
        raise WriteFailed.joined([failed], [path])


def replace_whole(path: Path, write: Callable[[Path], object]) -> None:
    """Make the file at ``path`` whole or not at all: ``write`` makes it as a temporary file
    beside it, which then replaces it (``os.replace``). A failure (a full disk) leaves
    ``path`` as it was, removes the temporary and raises: written in place, a full disk
    left part of a file (20 KiB of a ``budget.json`` that was not JSON). The temporary is
    this thread's own, so two threads writing one file (a late fetch overlapping the next)
    never write into each other's."""
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def discard_writes(fd: int) -> None:
    """Send whatever is still written through ``fd`` to ``/dev/null``.

    After a write error a file is left as the disk has it: HDF5 flushes its caches
    when a file is closed, whatever happened before (with the disk still full its
    close fails and the process crashes at exit), and an IPC writer ends its stream
    with a marker that would call a cut stream complete. The descriptor stays open,
    so the libraries close normally.
    """
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


class DeclaredChannels(Generic[T]):
    """Finds the declared channel a batch belongs to, refusing anything undeclared.

    Backends lay out their files from the declarations before acquisition, so a
    batch of an undeclared channel, or one whose declaration (unit, dtype,
    shape) or columns differ from what was declared, cannot be stored faithfully
    and is refused with the channel's name. Lookups are cached on the schema
    metadata bytes, so the per-batch cost is a dict lookup and a schema compare.
    """

    def __init__(self, target: StorageTarget, make: Callable[[str, ChannelSpec], T]) -> None:
        self._declared: dict[tuple[str, str], ChannelSpec] = {}
        self._schemas: dict[tuple[str, str], pa.Schema] = {}
        self.items: dict[tuple[str, str], T] = {}
        for iid, specs in target.channels.items():
            for spec in specs:
                key = (iid, spec.name)
                self._declared[key] = spec
                self._schemas[key] = channel_schema(iid, spec, unified=True)
                self.items[key] = make(iid, spec)
        self._cache: dict[tuple[bytes, bytes], tuple[str, str]] = {}

    def lookup(self, batch: pa.RecordBatch) -> T:
        schema = batch.schema
        meta = schema.metadata or {}
        raw = (meta.get(META_INSTRUMENT, b""), meta.get(META_CHANNEL, b""))
        key = self._cache.get(raw)
        if key is None:
            key = self._resolve(batch)
            self._cache[raw] = key
        if not schema.equals(self._schemas[key], check_metadata=False):
            raise DataError(f"batch of {key[0]}.{key[1]} has columns {schema.names} of types "
                            f"{[str(t) for t in schema.types]}; the declaration gives "
                            f"{[str(t) for t in self._schemas[key].types]} (storage takes "
                            "unified-stream batches)")
        return self.items[key]

    def _resolve(self, batch: pa.RecordBatch) -> tuple[str, str]:
        return declared_channel(batch.schema, self._declared)


# --- the router ---------------------------------------------------------------------


@dataclass(frozen=True)
class FlavorStorage:
    """What one flavor stores and with which backend, known before acquisition starts."""

    backend: str
    #: instrument id -> its channel declarations
    channels: Mapping[str, Sequence[ChannelSpec]]
    #: instrument id -> its block from the lab file (type name and settings)
    instruments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: the flavor's base directory; None: ``<output_dir>/<flavor>``
    directory: Path | None = None


@dataclass
class _Slot:
    flavor: Flavor
    backend: str
    directory: Path
    writer: StorageWriter
    interval: float
    #: ``v2 storage backend hdf5 (daqhub 0.1)``: what a failure of this writer names
    label: str
    #: the ids of the instruments it stores
    instruments: frozenset[str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_flush: float = field(default_factory=time.monotonic)
    holder: str = ""
    closed: bool = False
    #: a flush outside write() failed: why, and the samples it lost (and whose), for the
    #: next write or close to raise
    failure: str = ""
    lost: int = 0
    lost_by: dict[str, int] = field(default_factory=dict)


class StorageSession:
    """One run's storage: a session directory and an open writer per enabled flavor."""

    def __init__(self, session_id: str, slots: dict[Flavor, _Slot]) -> None:
        self.session_id = session_id
        self._slots = slots
        #: instrument id (as its batches' schema metadata holds it) -> its flavor
        self._flavor_of = {iid.encode(): f for f, slot in slots.items()
                           for iid in slot.instruments}
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if slots:
            tick = max(0.01, min(s.interval for s in slots.values()) / 4)
            self._flusher = threading.Thread(target=self._flush_loop, args=(tick,),
                                             name=f"daqhub-storage-flush-{session_id}",
                                             daemon=True)
            self._flusher.start()

    # --- opening ----------------------------------------------------------------------

    @classmethod
    def open(cls, host: PluginHost, output_dir: Path | str,
             flavors: Mapping[Flavor, FlavorStorage], *, lab_config: str = "",
             session_id: str | None = None,
             versions: Mapping[str, str] | None = None) -> StorageSession:
        """Create the session directories and open every flavor's backend.

        ``session_id`` None draws a new one; giving one (to resume, or in tests)
        reuses its directories, and the backends' file locks then stop a second
        writer of the same files. Any failure closes what was already opened, and
        removes the session directories it created (a given id's are left as they were).
        """
        from .host import OWN_DISTRIBUTION  # loaded already (the caller has a host)

        problems = _plan_problems(host, flavors)
        dirs: dict[Flavor, Path] = {}
        defaults = flavor_dirs(output_dir)
        for flavor, plan in flavors.items():
            if flavor in defaults:
                dirs[flavor] = (Path(plan.directory) if plan.directory is not None
                                else defaults[flavor])
        problems += check_output_dirs(dirs.get("v2"), dirs.get("v4"))
        if session_id is not None and not is_session_id(session_id):
            why = check_id(session_id, "session id")
            if why:
                problems.append(why)
        if problems:
            raise StorageError("storage cannot start:\n" + "\n".join(f"  - {p}" for p in problems))
        fresh = session_id is None
        for d in dirs.values():
            remove_stale_locks(d)  # left by killed runs: they protect nothing any more
        session_id, session_dirs = _make_session_dirs(dirs, session_id)
        vers = dict(versions) if versions is not None else versions_of(host)
        backends = host.storage_backends()
        slots: dict[Flavor, _Slot] = {}
        try:
            for flavor, plan in flavors.items():
                target = StorageTarget(directory=session_dirs[flavor], session_id=session_id,
                                       channels=plan.channels, instruments=plan.instruments,
                                       lab_config=lab_config, versions=vers,
                                       options=plan.options)
                # whose code it is, named by its failures (a lab knows whose code failed)
                owner = host.storage_backend_owner(plan.backend)
                label = (f"{flavor} storage backend {plan.backend} "
                         f"({owner.release if owner else '?'})")
                slots[flavor] = _open_slot(backends[plan.backend], target, flavor, label,
                                           owner is not None
                                           and owner.distribution == OWN_DISTRIBUTION)
        except BaseException:
            for slot in slots.values():
                _discard(slot.writer)  # the original failure is the one to report
            if fresh:  # made for this session moments ago, so all in it is what the failed
                # open left (laid out, never written to), not only the files of the writers
                # that opened: a disk full at the start left a directory with a lock file
                for d in session_dirs.values():
                    shutil.rmtree(d, ignore_errors=True)
            raise
        return cls(session_id, slots)

    @property
    def directories(self) -> dict[Flavor, Path]:
        """Flavor -> its session directory (what ``daqhub_session_started`` announces)."""
        return {f: s.directory for f, s in self._slots.items()}

    @property
    def flavors(self) -> list[Flavor]:
        return list(self._slots)

    def lanes(self) -> dict[Flavor, FlavorSink]:
        """Each flavor's part of the session as a sink of its own, for a caller that gives
        each its own queue and thread (the runtime): one writer that hangs then holds up
        only its own flavor's batches."""
        return {flavor: FlavorSink(self, flavor, slot.label)
                for flavor, slot in self._slots.items()}

    def lane_of(self, batch: pa.RecordBatch) -> Flavor:
        """The flavor whose lane takes ``batch``: its instrument's, as the session was opened
        with them. The runtime tags an instrument's batches with its flavor as their source,
        by which :meth:`write` routes them, so this is the same writer, told by a dict
        lookup (reading the source column is most of write()'s routing cost, and every lane
        asks of every batch). A batch of an instrument the session does not know goes to
        the first flavor's lane, whose write() routes it by its source or refuses it,
        saying why: never to no lane."""
        flavor = self._flavor_of.get((batch.schema.metadata or {}).get(META_INSTRUMENT, b""))
        return flavor if flavor is not None else next(iter(self._slots))

    # --- writing ----------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        """Route one unified-stream batch to the writer of its source flavor.

        Raises :class:`WriteFailed` with every sample lost, this batch's and those of
        the writer's earlier failed flushes; other errors refuse just this batch.
        """
        rows = batch.num_rows
        if rows == 0:
            return
        failed: list[WriteFailed] = []
        for source, part in _split_by_source(batch, rows):
            slot = self._slots.get(source)
            if slot is None:
                iid, chan = _where(batch)
                raise StorageError(f"got {source} data of {iid}.{chan}, but {source} storage is "
                                   f"not enabled in this session (enabled: "
                                   f"{', '.join(self._slots) or 'none'})")
            if not slot.lock.acquire(timeout=WRITE_LOCK_TIMEOUT):
                raise StorageError(f"write of {slot.label} waited {WRITE_LOCK_TIMEOUT:.0f} s "
                                   f"for its writer, held by {slot.holder or 'another thread'}")
            try:  # inlined (no context manager): this runs for every batch of the run
                slot.holder = "a write"
                if slot.closed:
                    raise StorageError(f"{slot.flavor} storage of session {self.session_id} is "
                                       "closed")
                try:
                    slot.writer.write(part)
                except WriteFailed as exc:
                    failed.append(_handed_over(slot, exc))
                else:
                    if slot.failure:
                        failed.append(_handed_over(slot, None))
            finally:
                slot.holder = ""
                slot.lock.release()
        if failed:
            raise WriteFailed.joined(failed)

    def flush(self, flavor: Flavor | None = None) -> None:
        """Make everything written so far durable and readable by plain tools, now (only
        ``flavor``'s writer when given).

        A failure raises :class:`StorageError`; the samples it lost are raised by the
        writer's next ``write()`` or ``close()``, to the sink that counts them.
        """
        failures: list[str] = []
        for slot in self._slots.values() if flavor is None else [self._slots[flavor]]:
            with self._locked(slot, "flush"):
                if not self._flush_held(slot):
                    failures.append(slot.failure)
        if failures:
            raise StorageError("flush failed:\n" + "\n".join(f"  - {f}" for f in failures))

    def close(self, timeout: float | None = None) -> dict[Flavor, list[Path]]:
        """Flush and close every writer; return the files each flavor wrote.

        Every writer is closed even when one fails; the failures are then raised
        together: :class:`WriteFailed` when a writer's failure was one (samples lost, or a
        Parquet compaction that lost none: its ``lost`` says), :class:`StorageError`
        otherwise, either with the files of the flavors that closed as its ``result``.
        ``timeout`` bounds the waits for the background flusher and each writer's lock
        together (a runtime's shutdown passes what is left of its budget); None: their own
        bounds (:data:`FLUSHER_JOIN_TIMEOUT`, :data:`WRITE_LOCK_TIMEOUT`). A writer's own
        ``close()`` cannot be bounded here: the runtime closes each flavor
        (:meth:`close_flavor`) on a helper thread of its own.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def bound(cap: float) -> float:
            return cap if deadline is None else max(0.0, min(cap, deadline - time.monotonic()))

        self._stop.set()
        flusher_wait = bound(FLUSHER_JOIN_TIMEOUT)
        if self._flusher is not None:
            self._flusher.join(flusher_wait)
        out: dict[Flavor, list[Path]] = {}
        failures: list[str] = []
        lost: list[WriteFailed] = []
        for flavor, slot in self._slots.items():
            try:
                files = self._close_slot(slot, bound(WRITE_LOCK_TIMEOUT))
            except StorageError as exc:
                failures.append(str(exc))
                if isinstance(exc, WriteFailed):
                    out[flavor] = exc.result or []
                    lost.append(exc)
                continue
            if files is not None:
                out[flavor] = files
        if self._flusher is not None and self._flusher.is_alive():
            failures.append(f"the background flusher did not stop within "
                            f"{flusher_wait:.1f} s")
        if failures:
            message = f"storage session {self.session_id}:\n" + "\n".join(
                f"  - {f}" for f in failures)
            if lost:
                raise WriteFailed(message, sum(f.lost for f in lost), out,
                                  by_instrument=_summed(f.by_instrument for f in lost))
            raise StorageError(message, out)
        return out

    def holder(self, flavor: Flavor) -> str:
        """What holds ``flavor``'s writer now ("" when nothing does)."""
        return self._slots[flavor].holder

    def close_flavor(self, flavor: Flavor, timeout: float = WRITE_LOCK_TIMEOUT) -> list[Path]:
        """Flush and close one flavor's writer; the files it wrote (none when it was closed
        already). Raises :class:`WriteFailed` (the files still in place as its ``result``)
        when samples were lost or the writer's close raised one (a failed Parquet compaction
        loses none: its ``lost`` is 0), :class:`StorageError` when the close failed otherwise, each
        naming the backend and its distribution. ``timeout`` bounds the wait for its lock
        (a write or flush in progress)."""
        try:
            files = self._close_slot(self._slots[flavor], timeout)
        finally:  # a close that failed closed its slot all the same
            if all(s.closed for s in self._slots.values()):
                self._stop.set()  # nothing left for the background flusher
        return files or []

    def _close_slot(self, slot: _Slot, timeout: float) -> list[Path] | None:
        """:meth:`close_flavor`'s work; None when the slot was closed already."""
        failed: list[WriteFailed] = []  # what its failed flushes and its close lost
        files: list[Path] = []
        try:
            with self._locked(slot, "close", timeout):
                if slot.closed:
                    return None
                slot.closed = True
                if slot.failure:
                    failed.append(_handed_over(slot, None))
                try:
                    result = slot.writer.close()
                except WriteFailed as exc:
                    failed.append(_handed_over(slot, exc))
                    result = exc.result or []
                files = _listed_files(slot, result)
        except BaseException as exc:  # the lock's wait, the list of files, the backend's bug
            if not _plugin_fault(exc):
                raise
            err = exc if isinstance(exc, StorageError) else StorageError(
                f"{slot.label}: closing failed: {type(exc).__name__}: {exc}")
            if not failed:
                raise err from exc
            failed.append(WriteFailed(str(err), 0))
        if failed:
            raise WriteFailed.joined(failed, files)
        return files

    def __enter__(self) -> StorageSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------

    def _locked(self, slot: _Slot, purpose: str, timeout: float = WRITE_LOCK_TIMEOUT
                ) -> _SlotLock:
        return _SlotLock(slot, purpose, self.session_id, timeout)

    def _flush_held(self, slot: _Slot) -> bool:
        """Flush a writer whose lock the caller holds; False (and the slot keeps why, and
        what it lost) when that failed."""
        try:
            if not slot.closed:
                slot.writer.flush()
            return True
        except BaseException as exc:  # a sys.exit() in it ended the background flusher
            if not _plugin_fault(exc):
                raise
            slot.failure = f"{slot.label}: {type(exc).__name__}: {exc}"
            if isinstance(exc, WriteFailed):
                slot.lost += exc.lost
                slot.lost_by = _summed([slot.lost_by, exc.by_instrument])
            return False
        finally:
            slot.last_flush = time.monotonic()

    def _flush_loop(self, tick: float) -> None:
        """Flush writers that went quiet; busy writers flush inline on their own interval."""
        while not self._stop.wait(tick):
            for slot in self._slots.values():
                if time.monotonic() - slot.last_flush < slot.interval:
                    continue
                if not slot.lock.acquire(blocking=False):
                    continue  # a write is in progress; try again next tick
                try:
                    slot.holder = "the background flush"
                    self._flush_held(slot)
                finally:
                    slot.holder = ""
                    slot.lock.release()


class FlavorSink:
    """One flavor's part of a :class:`StorageSession` as a sink of its own
    (:meth:`StorageSession.lanes`): it takes that flavor's batches (:meth:`takes`), and its
    ``flush()`` and ``close()`` are that flavor's writer's only."""

    def __init__(self, session: StorageSession, flavor: Flavor, label: str) -> None:
        self.session = session
        self.flavor = flavor
        #: ``v2 storage backend hdf5 (daqhub 0.1)``
        self.label = label

    def takes(self, batch: pa.RecordBatch) -> bool:
        return self.session.lane_of(batch) == self.flavor

    def write(self, batch: pa.RecordBatch) -> None:
        self.session.write(batch)

    def flush(self) -> None:
        self.session.flush(self.flavor)

    def close(self, timeout: float = WRITE_LOCK_TIMEOUT) -> list[Path]:
        return self.session.close_flavor(self.flavor, timeout)

    def holder(self) -> str:
        """What holds this flavor's writer now ("a write", "the background flush", "a flush
        in thread ..."; "" when nothing does): what a write that has not returned waits for
        (the runtime's stuck-write alarm names it)."""
        return self.session.holder(self.flavor)


def _open_slot(backend: StorageBackend, target: StorageTarget, flavor: Flavor,
               label: str, own: bool) -> _Slot:
    """Open one flavor's writer. A plugin's ``open()`` that raised used to stop the lab with
    its bare message ("could not start the lab: cannot open"), naming no backend, and one
    that returned None failed at the first write; both are named here. What daqhub's own
    backends (``own``) raise is raised as it is: their errors name the option or file at
    fault, and callers catch them by type (a ``FileLockError`` says who holds the file)."""
    writer = _opened(backend, target, label, own)
    try:
        missing = [m for m in ("write", "flush", "close")
                   if not callable(getattr(writer, m, None))]
        if missing:
            raise StorageError(f"{label}: open() returned {value_for_error(writer)}, not a "
                               f"storage writer (it has no {', '.join(missing)})")
        interval = _flush_interval(writer, label)
    except BaseException:
        _discard(writer)  # in no slot yet: nothing else would close it
        raise
    return _Slot(flavor, backend.name, target.directory, writer, interval, label,
                 frozenset({*target.channels, *target.instruments}))


#: how long a start interrupted during a backend's ``open()`` waits for it to end: left to
#: its daemon thread as the process exited, h5py's open held h5py's global lock, which the
#: interpreter's exit then waited for for ever (an object's dealloc; 1 exit in ~25 hung)
INTERRUPT_GRACE_S = 2.0
#: the backends' ``open()`` calls under way, each on its daemon thread (:func:`opens_running`)
_RUNNING: set[_Opening] = set()


def opens_running() -> bool:
    """Whether a backend's ``open()`` given up on still runs: the interpreter's exit could
    wait for ever on a lock it holds (the ``daqhub`` command then ends with ``os._exit``)."""
    return bool(_RUNNING)


class _Opening:
    """One backend's ``open()`` on a daemon thread of its own, so that the wait for it has a
    bound and a Ctrl-C ends it. A writer it returns once nobody waits for it any more is
    closed there and then."""

    def __init__(self, backend: StorageBackend, target: StorageTarget) -> None:
        self.backend, self.target = backend, target
        self.writer: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._given_up = False
        self._lock = threading.Lock()

    def run(self) -> None:
        _RUNNING.add(self)
        try:
            writer, error = None, None
            try:
                writer = self.backend.open(self.target)
            except BaseException as exc:  # off the main thread, whatever it is is the backend's
                error = exc
            with self._lock:
                self.writer, self.error = writer, error
                self.done.set()
                late = self._given_up
            if late:
                _discard(writer)
        finally:
            _RUNNING.discard(self)

    def give_up(self) -> bool:
        """Stop waiting; True when ``open()`` has returned meanwhile: its outcome stands."""
        with self._lock:
            self._given_up = not self.done.is_set()
            return not self._given_up


def _opened(backend: StorageBackend, target: StorageTarget, label: str, own: bool) -> Any:
    """What ``backend.open(target)`` returned, waited for :data:`OPEN_TIMEOUT` at most. Its
    failure is a :class:`StorageError` naming the backend (an own backend's ``Exception``
    is raised as it is): whatever it raised, ``SystemExit`` too, which ended ``daqhub run``
    with 0 having run nothing."""
    from .host import PluginCall  # loaded already (the caller has a host)

    timeout = OPEN_TIMEOUT
    opening = _Opening(backend, target)
    left = "its open() goes on in a thread that cannot be stopped, until the process ends"
    try:
        with PluginCall("open()", label, limit=timeout, after=left):
            threading.Thread(target=opening.run, name=f"daqhub-storage-open:{label}",
                             daemon=True).start()
            deadline = time.monotonic() + timeout
            while not opening.done.wait(min(WAIT_SLICE_S, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    break
    except BaseException:  # a Ctrl-C: the start ends
        try:  # once an open under way (milliseconds) has ended: see INTERRUPT_GRACE_S
            opening.done.wait(INTERRUPT_GRACE_S)
        finally:
            if opening.give_up():
                _discard(opening.writer)  # it came as the wait ended
        raise
    if not opening.give_up():
        raise StorageError(f"{label} did not open {target.directory} within {timeout:g} s; "
                           f"{left} (a writer it returns then is closed at once)")
    exc = opening.error
    if exc is None:
        return opening.writer
    if own and isinstance(exc, Exception):
        raise exc
    raise StorageError(f"{label} could not open {target.directory}: "
                       f"{type(exc).__name__}: {exc}") from exc


def _flush_interval(writer: Any, label: str) -> float:
    """The writer's ``flush_interval`` in seconds: a number above 0 (the background flush
    runs on it), or absent (:data:`DEFAULT_FLUSH_INTERVAL`). None stopped the lab with a
    bare ``float()`` message naming no backend."""
    value = getattr(writer, "flush_interval", DEFAULT_FLUSH_INTERVAL)
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    seconds = float(value) if number else math.nan
    if not 0 < seconds < math.inf:
        raise StorageError(f"{label}: its writer's flush_interval is {value_for_error(value)}; "
                           f"it must be a number of seconds above 0 (finite), or absent for "
                           f"{DEFAULT_FLUSH_INTERVAL:g} s")
    return seconds


def _plugin_fault(exc: BaseException) -> bool:
    """``host.is_plugin_fault``: what a backend's writer raised is its failure to name (a
    ``sys.exit()`` too), but for a real Ctrl-C."""
    from .host import is_plugin_fault  # loaded already (the caller has a host)

    return is_plugin_fault(exc)


def _discard(writer: Any) -> None:
    """Close a writer whose failure is not the one to report (another failure is, or nobody
    waits for it any more); what it raises is dropped, but for a Ctrl-C."""
    close = getattr(writer, "close", None)
    if not callable(close):
        return
    try:
        close()
    except BaseException as exc:
        if not _plugin_fault(exc):
            raise


def _listed_files(slot: _Slot, result: Any) -> list[Path]:
    """What a writer's ``close()`` returned, which must be the list of the files it wrote:
    a string was listed a character a line as files, and None dropped every flavor's files
    from the report."""
    if isinstance(result, list | tuple) and all(isinstance(p, str | os.PathLike)
                                                 for p in result):
        return list(result)
    raise StorageError(f"{slot.label}: close() returned {value_for_error(result)}, not the "
                       "list of the files it wrote; its files are not listed")


def _handed_over(slot: _Slot, exc: WriteFailed | None) -> WriteFailed:
    """What the slot's writer lost, ``exc``'s samples plus those of its failed flushes that
    no write or close has raised yet: each lost sample is raised once."""
    why = [slot.failure] if slot.failure else []
    if exc is not None:
        why.append(f"{slot.label}: {exc}")
    lost = slot.lost + (exc.lost if exc is not None else 0)
    by = _summed([slot.lost_by, exc.by_instrument if exc is not None else {}])
    slot.failure, slot.lost, slot.lost_by = "", 0, {}
    return WriteFailed("; ".join(why), lost, by_instrument=by)


class _SlotLock:
    """A writer's lock taken with a deadline, naming who held it when it runs out."""

    def __init__(self, slot: _Slot, purpose: str, session_id: str,
                 timeout: float = WRITE_LOCK_TIMEOUT) -> None:
        self.slot, self.purpose, self.session_id = slot, purpose, session_id
        self.timeout = timeout

    def __enter__(self) -> None:
        slot = self.slot
        if not slot.lock.acquire(timeout=self.timeout):
            raise StorageError(f"{self.purpose} of {slot.label} waited {self.timeout:.1f} s for "
                               f"its writer, held by {slot.holder or 'another thread'}")
        slot.holder = f"a {self.purpose} in thread {threading.current_thread().name}"

    def __exit__(self, *exc: object) -> None:
        self.slot.holder = ""
        self.slot.lock.release()


def _plan_problems(host: PluginHost, flavors: Mapping[Flavor, FlavorStorage]) -> list[str]:
    problems: list[str] = []
    backends = host.storage_backends()
    for flavor, plan in flavors.items():
        if flavor not in FLAVORS:
            problems.append(f"unknown flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
            continue
        if plan.backend not in backends:
            known = ", ".join(sorted(backends)) or "none"
            problems.append(f"{flavor}: storage backend {plan.backend!r} is not installed "
                            f"(installed: {known})")
        for iid in {*plan.channels, *plan.instruments}:
            why = check_id(iid, f"{flavor} instrument id")
            if why:
                problems.append(why)
        for iid, specs in plan.channels.items():
            for spec in specs:
                why = check_id(spec.name, f"channel name of {iid}")
                if why:
                    problems.append(why)
    return problems


def _make_session_dirs(dirs: Mapping[Flavor, Path], session_id: str | None
                       ) -> tuple[str, dict[Flavor, Path]]:
    """Create ``<dir>/<session>`` for every flavor; draw a new id on any collision."""
    for _ in range(100):
        sid = session_id or new_session_id()
        made: list[Path] = []
        try:
            for d in dirs.values():
                d.mkdir(parents=True, exist_ok=True)
                (d / sid).mkdir(exist_ok=session_id is not None)
                made.append(d / sid)
        except FileExistsError:
            for m in made:
                m.rmdir()
            continue
        except OSError as exc:
            raise StorageError(f"cannot create session directory: {exc}") from exc
        return sid, {f: d / sid for f, d in dirs.items()}
    where = ", ".join(map(str, dirs.values()))
    raise StorageError(f"could not find a free session id under {where} in 100 tries")


def _summed(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Per-instrument counts added up (what :attr:`WriteFailed.by_instrument` holds)."""
    total: collections.Counter[str] = collections.Counter()
    for c in counts:
        total.update(c)
    return dict(total)


def _split_by_source(batch: pa.RecordBatch, rows: int
                     ) -> list[tuple[Flavor, pa.RecordBatch]]:
    """The batch's rows per source flavor: almost always all of them in one.

    The common case is checked by comparing the column with a cached constant
    column (~2 us); ``pc.unique`` (~35 us) was a large share of the time the
    Arrow writer needs for a whole 1000-row batch.
    """
    try:
        col = batch.column("source")  # one call into pyarrow, not three (see shown_bytes)
    except KeyError:
        iid, chan = _where(batch)
        raise DataError(f"batch of {iid}.{chan} has no 'source' column: storage takes "
                        "unified-stream batches (see daqhub.schema.with_source)") from None
    for candidate in FLAVORS:
        if col.equals(_constant(candidate, rows)):
            return [(candidate, batch)]
    out: list[tuple[Flavor, pa.RecordBatch]] = []
    for value in pc.unique(col).to_pylist():
        if value not in FLAVORS:
            iid, chan = _where(batch)
            raise DataError(f"batch of {iid}.{chan} has source {value!r}; expected "
                            f"{' or '.join(FLAVORS)}")
        flavor: Flavor = value
        out.append((flavor, batch.filter(pc.equal(col, value))))
    return out


_CONSTANTS: dict[tuple[str, int], pa.Array] = {}


def _constant(value: str, n: int) -> pa.Array:
    ref = _CONSTANTS.get((value, n))
    if ref is None:
        if len(_CONSTANTS) > 256:
            _CONSTANTS.clear()
        ref = _CONSTANTS[(value, n)] = pa.array([value] * n, type=pa.string())
    return ref


def _where(batch: pa.RecordBatch) -> tuple[str, str]:
    meta = batch.schema.metadata or {}
    iid = meta.get(META_INSTRUMENT, b"?").decode(errors="replace")
    chan = "?"
    raw = meta.get(META_CHANNEL)
    if raw:
        match = re.search(rb'"name":\s*"([^"]*)"', raw)
        chan = match.group(1).decode(errors="replace") if match else "?"
    return iid, chan
