"""Session records: metadata, settings snapshots and points tables, stored beside the data.

The streams say *what* was measured; these records say *how* (each instrument's
settings, the operator's notes) and *where the scan was* (one points row per
step, with the setpoints and the fresh readings taken there). They are kept in
memory and every flavor's session directory gets a complete copy, in that
flavor's format, so either half of a session can be read on its own:

* ``hdf5`` flavor: ``records.h5`` with ``/meta`` (attributes, one per key, plus
  ``json``, the whole metadata; a key named ``json`` or empty is in ``json`` alone),
  ``/settings`` (datasets ``time_ns``, ``instrument``, ``reason``, ``settings``: one
  row per snapshot, settings as a JSON object) and
  ``/points/<run_id>`` (one dataset per column, attribute ``unit``; a row without
  a value is NaN, 0 in a non-float column, "" in a text one or an empty array in a
  spectrum one, and listed in its attribute ``missing_rows``; group attributes
  ``complete``, ``stop_reason`` and ``columns`` in table order);
* any other backend: Arrow IPC files ``settings.arrow`` (same columns, session
  metadata in the schema metadata ``daqhub.meta``) and ``points-<run_id>.arrow``
  (the points table as returned, units in field metadata ``unit``).

Each file is replaced through a temporary file and ``os.replace``, so a reader (or
a crash, or a second Ctrl-C) never sees half a file. Points are written at most
every :data:`FLUSH_INTERVAL_S` during a run and always at its end. An ended run is
written once: its Arrow file is left alone afterwards, and ``records.h5`` is
updated from a copy of itself (settings and running runs replaced, new ended runs
added), rebuilt whole only when the session metadata changed or the file doubled
since it last was (the space of what was replaced is not reused). Rewriting every
run at every flush made a script of N scans cost O(N^2): 1.3 ms per run per flush,
so about 100 s in all for 400 scans.

A write that fails (a full disk, a directory made read-only) does not stop a scan, whose
rows are still returned, but it is not hidden: the last flush runs in the runtime's
shutdown, before the report is judged, and each flavor whose records could not be
written puts a line in the report's errors naming the files and the cause, so the run
is not ok (:meth:`SessionRecords.finish`). A failure a later flush made good (every
flush rewrites what is not on disk yet) was logged when it happened and is not one at the
end: the report judges what the session leaves on disk.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .storage import replace_whole

if TYPE_CHECKING:
    from .runtime.dual import DualRuntimeManager

log = logging.getLogger("daqhub.records")
FLUSH_INTERVAL_S = 1.0
#: Longest the settings snapshot at session start waits for one instrument.
SNAPSHOT_TIMEOUT_S = 10.0
#: Longest the last flush waits for a session-start snapshot still being taken (its
#: commands fail at once once the runtime has stopped, so it ends well within this).
START_WAIT_S = 2.0
META_SESSION = b"daqhub.meta"
HDF5_FILE = "records.h5"
SETTINGS_FILE = "settings.arrow"
SETTINGS_SCHEMA = pa.schema([pa.field("time_ns", pa.int64()), pa.field("instrument", pa.string()),
                             pa.field("reason", pa.string()), pa.field("settings", pa.string())])


def is_record_file(path: Path) -> bool:
    """Whether a file in a session directory holds these records (not a stream's data)."""
    return path.name in (HDF5_FILE, SETTINGS_FILE) or (
        path.name.startswith("points-") and path.suffix == ".arrow")


def changes_settings(method: str) -> bool:
    """Whether a command changes a setting (so a new snapshot is due): the ``set_*`` commands."""
    return method.startswith("set_")


def parse_meta(pairs: list[str]) -> dict[str, str]:
    """``key=value`` strings (``daqhub run --meta``) as a dict; a pair without ``=`` is refused,
    and so is a key given twice (only the last would be stored, without a word)."""
    out: dict[str, str] = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        key = k.strip()
        if not sep or not key:
            raise ValueError(f"--meta {p!r}: expected key=value, e.g. operator=Ada")
        if key in out:
            raise ValueError(f"--meta {p!r}: {key} is already {out[key]!r}; give each key once")
        out[key] = v
    return out


def failed_settings(exc: BaseException) -> dict[str, str]:
    """The snapshot stored for settings that could not be taken."""
    return {"error": f"{type(exc).__name__}: {exc}"}


@dataclass
class PointsRun:
    """One scan's rows as they accumulate; ``table()`` is what scripts get and files hold."""

    run_id: str
    schema: pa.Schema
    rows: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    stop_reason: str = "running"

    @property
    def ended(self) -> bool:
        return self.stop_reason != "running"

    def table(self) -> pa.Table:
        cols = {f.name: [r.get(f.name) for r in self.rows] for f in self.schema}
        meta = dict(self.schema.metadata or {})
        meta.update({b"daqhub.run_id": self.run_id.encode(),
                     b"daqhub.complete": b"true" if self.complete else b"false",
                     b"daqhub.stop_reason": self.stop_reason.encode()})
        return pa.table(cols, schema=self.schema.with_metadata(meta))


class SessionRecords:
    """Metadata, settings snapshots and points of one running lab; writes them to its sessions."""

    def __init__(self, rt: DualRuntimeManager, meta: Mapping[str, Any] | None = None) -> None:
        self.rt = rt
        self.meta = {str(k): v for k, v in (meta or {}).items()}
        json.dumps(self.meta)  # refuse what cannot be stored before anything starts
        self.settings: list[tuple[int, str, str, str]] = []
        self.runs: dict[str, PointsRun] = {}
        #: every failed write, as logged
        self.errors: list[str] = []
        #: flavor -> its records' failed writes (the report's errors, see :meth:`finish`)
        self.failures: dict[str, WriteFailure] = {}
        self._lock = threading.RLock()
        #: notified after each points row (a test or a live plot can wait on it)
        self.row_added = threading.Condition(self._lock)
        self._started = False
        #: set when :meth:`start` has ended (or was never begun and cannot be any more)
        self._start_ended = threading.Event()
        self._start_begun = False
        self._finished = False  # the last flush is done: nothing is written after it
        self._last_flush = 0.0
        #: a flavor's records (its directory or records.h5) -> what was last written there
        self._written: dict[Path, _Written] = {}
        rt.on_command.append(self._after_command)
        rt.on_stopped.append(self.finish)
        from .scan import RoutinePoints  # the engine imports these records

        for routine in rt.routines:
            routine.points = RoutinePoints(self, routine)

    # --- settings -----------------------------------------------------------------------

    def start(self, timeout: float = SNAPSHOT_TIMEOUT_S) -> None:
        """Take the session-start snapshot of every instrument and write the first files."""
        with self._lock:
            if self._finished:
                return
            self._start_begun = True
        try:
            self._snapshot_all(timeout)
        finally:
            self._start_ended.set()
        with self._lock:
            self._started = True
            self.flush()  # (nothing once finish() has made the last one)

    def start_in_background(self) -> None:
        """:meth:`start` on a thread of its own (it waits for every instrument to answer).

        A run stopped meanwhile has its last flush wait for it (:meth:`finish`) and
        nothing is written after that flush: the snapshot used to be written after the
        shutdown report, or never (a daemon thread at exit), with the report saying ok."""
        with self._lock:
            self._start_begun = True
        threading.Thread(target=self.start, name="daqhub-settings-snapshot",
                         daemon=True).start()

    def _snapshot_all(self, timeout: float) -> None:
        futures = {}
        for iid in self.rt.instrument_ids():
            try:
                futures[iid] = self.rt.submit(iid, "settings")
            except Exception as exc:
                self._add_settings(iid, "session start", {"error": str(exc)})
        deadline = time.monotonic() + timeout
        for iid, fut in futures.items():
            try:
                value = fut.result(max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                value = {"error": f"{type(exc).__name__}: {exc}" if str(exc)
                         else f"no answer within {timeout:g} s"}
            self._add_settings(iid, "session start", value)

    def snapshot(self, instrument_id: str, reason: str, timeout: float = SNAPSHOT_TIMEOUT_S
                 ) -> dict[str, Any]:
        """Ask one instrument for its settings now and store them."""
        try:
            value = self.rt.submit(instrument_id, "settings").result(timeout)
        except Exception as exc:
            value = failed_settings(exc)
        self.store_settings(instrument_id, reason, value)
        return value

    def store_settings(self, instrument_id: str, reason: str, value: Any) -> None:
        """Store settings the caller asked for itself and write them out (``Lab``'s
        ``settings()``, which raises a failure and stores it as :func:`failed_settings`)."""
        self._add_settings(instrument_id, reason, value)
        with self._lock:
            if self._started:
                self.flush()

    def _after_command(self, instrument_id: str, method: str) -> None:
        if changes_settings(method):
            self.snapshot(instrument_id, f"after {method}")

    def _add_settings(self, iid: str, reason: str, value: Any) -> None:
        try:
            text = json.dumps(value, default=str, sort_keys=True)
        except (TypeError, ValueError) as exc:
            text = json.dumps({"error": f"settings are not JSON-able: {exc}"})
        with self._lock:
            self.settings.append((time.time_ns(), iid, reason, text))

    # --- points -------------------------------------------------------------------------

    def new_run(self, kind: str, schema: pa.Schema) -> PointsRun:
        """A new points run, numbered per kind (``scan-3``) under the lock: runs started at
        once in several threads got one id, and the last one's table replaced the others'."""
        with self._lock:
            n = 1  # the first number free: runs are never removed, and another kind's ids
            while f"{kind}-{n}" in self.runs:  # can look like ours
                n += 1
            run = self.runs[f"{kind}-{n}"] = PointsRun(f"{kind}-{n}", schema)
            return run

    def widen_run(self, run: PointsRun, schema: pa.Schema) -> None:
        """Add the columns of ``schema`` that ``run`` lacks, after its own (null in the rows
        it already has)."""
        with self._lock:
            new = [f for f in schema if f.name not in run.schema.names]
            if new:
                run.schema = pa.schema([*run.schema, *new], metadata=run.schema.metadata)

    def add_row(self, run: PointsRun, row: Mapping[str, Any]) -> None:
        with self._lock:
            run.rows.append(dict(row))
            self.row_added.notify_all()
            if time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
                self.flush()

    def end_run(self, run: PointsRun, complete: bool, reason: str) -> pa.Table:
        with self._lock:
            run.complete = complete
            run.stop_reason = reason
            self.flush()
            return run.table()

    # --- files --------------------------------------------------------------------------

    def flush(self) -> None:
        """Rewrite every session's record files; a failure is logged and kept for the report
        (:meth:`finish`), never raised: a scan goes on, its rows are still returned."""
        with self._lock:
            self._last_flush = time.monotonic()
            if not self._started or self._finished:
                return
            meta = json.dumps(self.meta, default=str)
            for flavor, directory in self.rt.output_dirs().items():
                backend = self.rt.lab.flavors[flavor].storage
                unwritten = ["its record files"]  # until the writer knows which they are
                try:
                    if backend == "hdf5":
                        self._write_hdf5(directory / HDF5_FILE, meta, unwritten)
                    else:
                        self._write_arrow(directory, meta, unwritten)
                except Exception as exc:
                    why = f"{type(exc).__name__}: {exc}"
                    msg = f"{flavor} records in {directory}: {why}"
                    self.errors.append(msg)
                    log.error("could not write %s", msg)
                    failure = self.failures.setdefault(flavor, WriteFailure(directory))
                    failure.count += 1
                    failure.why, failure.unwritten = why, unwritten
                else:
                    if flavor in self.failures:
                        self.failures[flavor].unwritten = []  # all in place again

    def finish(self) -> list[str]:
        """The last flush, once the runtime has stopped (an ``on_stopped`` listener); the
        report's errors: a line per flavor whose records failed to write (see the module
        doc)."""
        late = []
        if self._start_begun and not self._start_ended.wait(START_WAIT_S):
            with self._lock:
                have = {iid for _, iid, reason, _ in self.settings if reason == "session start"}
            missing = [iid for iid in self.rt.instrument_ids() if iid not in have]
            late = [f"records: the session-start settings snapshot had not ended "
                    f"{START_WAIT_S:g} s after the run stopped; not recorded for "
                    f"{', '.join(missing) or 'none'}"]
        with self._lock:
            self._started = True  # (a snapshot never taken: the metadata is written)
            self.flush()
            self._finished = True
            return late + [f.report_line(flavor) for flavor, f in self.failures.items()
                           if f.unwritten]

    def _settings_table(self, meta: str) -> pa.Table:
        t, i, r, s = (list(c) for c in zip(*self.settings, strict=True)) if self.settings \
            else ([], [], [], [])
        return pa.table([pa.array(t, pa.int64()), i, r, s], schema=SETTINGS_SCHEMA.with_metadata(
            {META_SESSION: meta.encode()}))

    def _unchanged(self, place: Path, meta: str) -> set[str]:
        """The runs ``place`` holds that need no writing: those that had ended when it was
        last written, unless the session metadata (which every record carries) changed."""
        known = self._written.get(place)
        return known.ended if known is not None and known.meta == meta else set()

    def _wrote(self, place: Path, meta: str, size_whole: int = 0) -> None:
        self._written[place] = _Written(meta, {r.run_id for r in self.runs.values() if r.ended},
                                        size_whole)

    def _write_arrow(self, directory: Path, meta: str, unwritten: list[str]) -> None:
        """Write ``directory``'s Arrow records; ``unwritten`` holds, at any moment, what of
        them is not written yet (so a failure can name it)."""
        unchanged = self._unchanged(directory, meta)
        runs = [r for r in self.runs.values()
                if not (r.run_id in unchanged  # (unless removed meanwhile)
                        and (directory / f"points-{r.run_id}.arrow").exists())]
        unwritten[:] = [SETTINGS_FILE, *(f"points-{r.run_id}.arrow" for r in runs)]
        replace_whole(directory / SETTINGS_FILE,
                      lambda p: _write_ipc(p, self._settings_table(meta)))
        unwritten.remove(SETTINGS_FILE)
        for run in runs:
            table = run.table()
            table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                   META_SESSION: meta.encode()})
            name = f"points-{run.run_id}.arrow"
            replace_whole(directory / name, functools.partial(_write_ipc, table=table))
            unwritten.remove(name)
        self._wrote(directory, meta)

    def _write_hdf5(self, path: Path, meta: str, unwritten: list[str]) -> None:
        """Update ``records.h5``; ``unwritten`` names what it lacks until it is replaced."""
        import h5py

        unchanged = self._unchanged(path, meta)
        known = self._written.get(path)
        whole = (known is None or not unchanged or not path.exists()  # (removed meanwhile)
                 or path.stat().st_size > 2 * known.size_whole)
        if whole:
            unchanged = set()  # a new file: everything is written
        unwritten[:] = [f"{HDF5_FILE} (settings" + "".join(
            f", points {r.run_id}" for r in self.runs.values() if r.run_id not in unchanged)
            + ")"]

        def write(tmp: Path) -> None:
            if not whole:
                shutil.copyfile(path, tmp)
            with h5py.File(tmp, "w" if whole else "r+") as f:
                if whole:
                    g = f.create_group("meta")
                    g.attrs["json"] = meta
                    for k, v in self.meta.items():
                        if k and k != "json":  # (those are in "json" alone)
                            g.attrs[k] = _meta_attribute(v)
                    points = f.create_group("points")
                else:
                    del f["settings"]
                    points = f["points"]
                s = f.create_group("settings")
                table = self._settings_table(meta)
                s.create_dataset("time_ns", data=np.asarray(table["time_ns"].to_pylist(),
                                                            dtype=np.int64))
                for name in ("instrument", "reason", "settings"):
                    s.create_dataset(name, data=table[name].to_pylist(),
                                     dtype=h5py.string_dtype())
                for run in self.runs.values():
                    if run.run_id not in unchanged:
                        if run.run_id in points:
                            del points[run.run_id]
                        _hdf5_points(points.create_group(run.run_id), run.table())
        replace_whole(path, write)
        unwritten.clear()
        self._wrote(path, meta, path.stat().st_size if whole or known is None
                    else known.size_whole)


@dataclass
class WriteFailure:
    """A flavor's record files that could not be written (for the report)."""

    directory: Path
    count: int = 0
    why: str = ""  # the last failure's exception
    #: what the last attempt left unwritten; empty once a later flush wrote everything
    unwritten: list[str] = field(default_factory=list)

    def report_line(self, flavor: str) -> str:
        tries = f"{self.count} failed write{'s' if self.count != 1 else ''}"
        return (f"{flavor} records in {self.directory} left unwritten or out of date: "
                f"{', '.join(self.unwritten)} ({tries}; last: {self.why})")


@dataclass
class _Written:
    """What a flavor's records were last written with (see the module doc)."""

    meta: str         # the session metadata, as JSON
    ended: set[str]   # runs that had ended then: written for good
    size_whole: int   # records.h5: its size when last rewritten whole


def _meta_attribute(value: Any) -> Any:
    """A metadata value as an HDF5 attribute: a number as itself where HDF5 has its type,
    anything else as text (``2**70`` as a number made every write of the records fail)."""
    if isinstance(value, bool | float) or (isinstance(value, int)
                                          and -2**63 <= value < 2**63):
        return value
    return str(value)


def _hdf5_points(g: Any, table: pa.Table) -> None:
    import h5py

    meta = table.schema.metadata or {}
    g.attrs["complete"] = meta.get(b"daqhub.complete") == b"true"
    g.attrs["stop_reason"] = meta.get(b"daqhub.stop_reason", b"").decode()
    g.attrs["columns"] = json.dumps(table.column_names)
    for f in table.schema:
        column = table[f.name]
        missing = (np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
                   if column.null_count else None)
        if pa.types.is_string(f.type):
            ds = g.create_dataset(f.name, data=[v or "" for v in column.to_pylist()],
                                  dtype=h5py.string_dtype())
        elif pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type):
            # a row without a value is an empty array (h5py crashed the process writing the
            # 0-d array np.asarray(None) made into a variable-length dataset)
            arrays = [np.asarray(v if v is not None else (), dtype=np.float64).ravel()
                      for v in column.to_pylist()]
            if arrays and len({a.shape for a in arrays}) == 1:
                ds = g.create_dataset(f.name, data=np.stack(arrays))
            else:  # rows of several lengths, or none at all
                ds = g.create_dataset(f.name, (len(arrays),),
                                      dtype=h5py.vlen_dtype(np.float64))
                for k, a in enumerate(arrays):
                    ds[k] = a
        else:
            if missing is not None:  # rows without a value: NaN, or 0 in a non-float column
                fill = (float("nan") if pa.types.is_floating(f.type) else
                        False if pa.types.is_boolean(f.type) else 0)
                column = column.fill_null(pa.scalar(fill, f.type))
            ds = g.create_dataset(f.name, data=np.asarray(
                column.to_numpy(zero_copy_only=False), dtype=f.type.to_pandas_dtype()))
        if missing is not None:
            ds.attrs["missing_rows"] = missing.astype(np.int64)
        unit = (f.metadata or {}).get(b"unit")
        if unit is not None:
            ds.attrs["unit"] = unit.decode()


def _write_ipc(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
