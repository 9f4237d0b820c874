"""What a session's data files hold, read as far as they go: the readers behind
``daqhub inspect`` (:mod:`daqhub.cli.inspect`) and ``daqhub.read_session``.

Files left by a killed process are read as far as they go, and the report says what
happened to them:

- an HDF5 file written with ``swmr = true`` opens only with ``swmr=True``
  after its writer died (HDF5 leaves it marked "open for write"); a file still
  being written by a live process is opened without HDF5's file lock and shows
  its last flushed state;
- an Arrow stream cut in the middle of a batch gives its complete batches,
  and is reported as truncated; one without an end-of-stream marker was not
  closed cleanly;
- an HDF5 file whose ``closed`` attribute is 0 and that no live writer holds
  was not closed cleanly either: its writer stopped at a write error (a full
  disk: the storage plugins then stop writing the file) or was killed;
- a ``.lock`` file beside a data file names the process that wrote it, and
  tells a live writer (lock held) from a dead one (lock stale).

A session is one directory per flavor, ``<flavor's output_dir>/<session id>``; the flavors'
output directories need not be siblings (``[v2] output_dir``, ``[v4] output_dir``), so the
other flavor's directory is found from what the session stored (:func:`find_session`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import tomllib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .measurement import ChannelSpec
from .outdir import lab_path, resolved
from .records import is_record_file
from .resources.filelock import LOCK_SUFFIX, is_held, lock_path_for, read_holder, remove_stale
from .runtime.budget import HISTORY_FILE
from .schema import column_values, describe
from .specs import FLAVORS, Flavor
from .storage import is_session_id

DATA_SUFFIXES = (".h5", ".hdf5", ".arrows", ".arrow", ".feather", ".parquet")
DEFAULT_GAP_FACTOR = 10.0
MAX_GAPS_LISTED = 5
MAX_PLOT_POINTS = 200_000
MAX_MEAN_FRAMES = 64
MAX_PLOTTED_CHANNELS = 24
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
H5_META_GROUP = "_daqhub"


class SessionFileWarning(UserWarning):
    """A session file was not closed cleanly (it is read as far as it goes), or a flavor's
    directory of the session was not found (the other flavor is read alone)."""


@dataclass
class PlotData:
    """What the plot draws for one channel, already reduced to a drawable size."""

    t_ns: np.ndarray | None = None
    y: np.ndarray | None = None
    axis: np.ndarray | None = None
    spectrum: np.ndarray | None = None
    image: np.ndarray | None = None
    note: str = ""


@dataclass
class ChannelReport:
    instrument: str
    spec: ChannelSpec
    rows: int
    timestamps: np.ndarray
    load: Callable[[], PlotData]
    notes: list[str] = field(default_factory=list)

    def to_dict(self, gap_factor: float) -> dict[str, Any]:
        d: dict[str, Any] = {
            "instrument": self.instrument, "channel": self.spec.name, "kind": self.spec.kind,
            "dtype": self.spec.dtype, "shape": list(self.spec.shape), "unit": self.spec.unit,
            "axis_unit": self.spec.axis_unit, "rows": self.rows, "notes": self.notes,
        }
        d.update(time_stats(self.timestamps, gap_factor))
        return d


@dataclass
class FileReport:
    path: Path
    format: str
    flavor: str | None
    status: str = "ok"  # ok | recovered | damaged (some channels unreadable) | unreadable
    session_id: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    lab_config: str = ""
    instruments: dict[str, Any] = field(default_factory=dict)
    channels: list[ChannelReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self, gap_factor: float) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "flavor": self.flavor,
                "status": self.status, "session_id": self.session_id, "notes": self.notes,
                "channels": [c.to_dict(gap_factor) for c in self.channels]}


# --- statistics ---------------------------------------------------------------------


def time_stats(ts: np.ndarray, gap_factor: float = DEFAULT_GAP_FACTOR) -> dict[str, Any]:
    """Span, rate and gaps of one channel's timestamps (ns)."""
    out: dict[str, Any] = {"first": None, "last": None, "first_ns": None, "last_ns": None,
                           "span_s": 0.0, "median_interval_s": None, "rate_hz": None,
                           "gaps": [], "gap_count": 0, "out_of_order": 0}
    if len(ts) == 0:
        return out
    first, last = int(ts.min()), int(ts.max())
    out.update(first_ns=first, last_ns=last, first=iso_time(first), last=iso_time(last),
               span_s=(last - first) / 1e9)
    if len(ts) < 2:
        return out
    diffs = np.diff(ts)
    out["out_of_order"] = int((diffs < 0).sum())
    positive = diffs[diffs > 0]
    if len(positive) == 0:
        return out
    median = float(np.median(positive))
    out["median_interval_s"] = median / 1e9
    if last > first:
        out["rate_hz"] = (len(ts) - 1) / ((last - first) / 1e9)
    big = np.flatnonzero(diffs > gap_factor * median)
    out["gap_count"] = int(len(big))
    largest = big[np.argsort(diffs[big])[::-1][:MAX_GAPS_LISTED]]
    out["gaps"] = [{"after_row": int(i), "start": iso_time(int(ts[i])),
                    "end": iso_time(int(ts[i + 1])), "duration_s": float(diffs[i]) / 1e9}
                   for i in sorted(largest)]
    return out


def iso_time(ns: int) -> str:
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{(ns % 1_000_000_000) // 1_000_000:03d}Z"


# --- reading files ------------------------------------------------------------------


def session_dirs(path: Path) -> list[Path]:
    """Every flavor's directory of the session ``path`` names, or [] when it names none
    (see :func:`find_session`)."""
    return list(find_session(path, warn_at=1).values())


def find_session(path: Path, *, warn_at: int = 1) -> dict[Flavor, Path]:
    """Each flavor's directory of the session ``path`` names, or {} when it names none.

    ``path`` is either flavor's session directory (``<output_dir>/v2/<session>``, or
    ``<dir>/<session>`` under a flavor's own ``output_dir``), or a bare session id, looked
    up under ``./data`` (the default output_dir) and ``.``. The other flavor's directory
    is looked for where the lab file stored with the session puts it, where the session's
    ``budget.json`` says its files are, and beside the given one (``<output_dir>/<flavor>``);
    a flavor the stored lab file ran with whose directory is found in none of these is a
    :class:`SessionFileWarning` naming where it was looked for (at ``warn_at``, a
    ``stacklevel`` as the caller would give it), never a session returned half silently.
    """
    found, missing = _locate(path)
    for flavor, looked in missing.items():
        warnings.warn(f"session {path.name}: its {flavor} directory was not found (looked in "
                      f"{', '.join(map(str, looked))}); only {', '.join(found) or 'nothing'} "
                      f"is read", SessionFileWarning, stacklevel=warn_at + 1)
    return found


def _locate(path: Path) -> tuple[dict[Flavor, Path], dict[Flavor, list[Path]]]:
    """The session's directories by flavor, and where each flavor the stored lab file ran
    with was looked for when it is not found."""
    if path.is_dir() and (path.parent.name in FLAVORS or is_session_id(path.name)):
        given = [resolved(path)]
    elif not path.exists() and len(path.parts) == 1 and is_session_id(path.name):
        given = [resolved(root / f / path.name) for root in (Path("data"), Path("."))
                 for f in FLAVORS if (root / f / path.name).is_dir()]
    else:
        return {}, {}
    if not given:
        return {}, {}
    lab = _stored_lab(given)
    ran = _flavors_run(lab)
    looked = _candidates(given, lab)
    holding = functools.cache(lambda d: _flavor_holding(d, lab))  # its files, read once
    found = _place(given, looked, holding)
    if any(d not in found.values() for d in given) or set(ran) - set(found):
        for flavor, d in _budget_dirs([*given, *found.values()]).items():  # where it wrote
            looked[flavor].insert(0, d)
        found = _place(given, looked, holding)
    missing = {f: list(dict.fromkeys(looked[f])) for f in ran if f not in found}
    return found, missing


def _place(given: list[Path], looked: Mapping[Flavor, list[Path]],
           holding: Callable[[Path], Flavor | None]) -> dict[Flavor, Path]:
    """The given directories under their flavors (where they lie, else the instruments they
    hold), then the first existing directory looked for of each other flavor."""
    found: dict[Flavor, Path] = {}
    for d in given:
        flavor = next((f for f in FLAVORS if f not in found and d in looked[f]), None)
        if flavor is None:
            flavor = holding(d)
        if flavor is not None and flavor not in found:
            found[flavor] = d
    for flavor in FLAVORS:
        if flavor not in found:
            hit = next((d for d in looked[flavor] if d not in found.values() and d.is_dir()),
                       None)
            if hit is not None:
                found[flavor] = hit
    return {f: found[f] for f in FLAVORS if f in found}


def _stored_lab(dirs: list[Path]) -> dict[str, Any]:
    """The lab file stored with the session (in any data file of its directories), parsed;
    {} when none is stored or it does not parse."""
    for d in dirs:
        text = _stored_lab_text(d)
        try:
            if text:
                return tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue
    return {}


def _stored_lab_text(d: Path) -> str:
    """The lab file's text as a data file of the session directory ``d`` holds it, or ""."""
    for h5 in sorted(d.glob("*.h5")):
        if is_record_file(h5):
            continue
        try:
            kwargs, _ = hdf5_open_kwargs(h5)
            with h5py.File(h5, "r", **kwargs) as f:
                if text := _h5_lab_config(f):
                    return text
        except READ_ERRORS:
            continue
    for stream in [*sorted(d.glob("*/*.arrows")), *sorted(d.glob("*/*.parquet"))]:
        try:
            if stream.suffix == ".parquet":
                meta = pq.read_schema(stream).metadata or {}
            else:
                with pa.memory_map(str(stream)) as source:
                    meta = ipc.open_stream(source).schema.metadata or {}
        except (pa.ArrowInvalid, OSError):
            continue  # its schema not written yet
        text = meta.get(b"daqhub.lab_config", b"").decode(errors="replace")
        if text:
            return text
    return ""


def _flavors_run(lab: Mapping[str, Any]) -> list[Flavor]:
    """The flavors the lab file stored each gave a session directory (enabled, with an
    instrument that is); none when no lab file is stored."""
    out: list[Flavor] = []
    for flavor in FLAVORS:
        section = lab.get(flavor)
        if isinstance(section, dict) and section.get("enabled", True) is not False and any(
                isinstance(b, dict) and b.get("enabled", True) is not False
                for b in _list(section.get("instruments"))):
            out.append(flavor)
    return out


def _candidates(given: list[Path], lab: Mapping[str, Any]) -> dict[Flavor, list[Path]]:
    """Where each flavor's directory of the session may be: where the lab file puts it, and
    beside a given directory that lies in the default layout (``<output_dir>/<flavor>``).

    The lab file's relative paths are relative to its own directory, which is not stored
    (nor is an ``output_dir`` given beside the lab file): it is taken back from where a given
    directory lies, and the working directory (a lab given as text) is tried too."""
    sid = given[0].name
    daq = lab.get("daqhub")
    root = daq.get("output_dir", "data") if isinstance(daq, dict) else "data"
    root = root if isinstance(root, str) else "data"
    own = {f: sec["output_dir"] for f in FLAVORS
           if isinstance(sec := lab.get(f), dict) and isinstance(sec.get("output_dir"), str)}
    layouts = [d.parent.parent for d in given if d.parent.name in FLAVORS]
    bases = [b for d in given for f, rel in own.items() if (b := _base_of(d.parent, rel))]
    bases += [b for r in layouts if (b := _base_of(r, root))] + [Path.cwd()]
    roots = [*layouts, *(resolved(lab_path(b, root)) for b in bases)]
    out: dict[Flavor, list[Path]] = {}
    for flavor in FLAVORS:
        dirs = [resolved(lab_path(b, own[flavor])) for b in bases] if flavor in own else []
        dirs += [r / flavor for r in roots]
        out[flavor] = list(dict.fromkeys(d / sid for d in dirs))
    return out


def _base_of(d: Path, rel: str) -> Path | None:
    """The directory the relative path ``rel`` of a lab file started from, if it led to ``d``."""
    parts = Path(os.path.normpath(os.path.expanduser(rel))).parts
    if not parts or Path(*parts).is_absolute() or ".." in parts:
        return None
    if parts == (".",):
        return d
    return Path(*d.parts[:-len(parts)]) if d.parts[-len(parts):] == parts else None


def _flavor_holding(d: Path, lab: Mapping[str, Any]) -> Flavor | None:
    """The flavor whose instruments (per the stored lab file) the directory's data files
    hold: the directory itself does not say (a session moved or copied elsewhere)."""
    if not lab:
        return None
    held = {p.name for p in d.iterdir() if p.is_dir()}  # arrow: <instrument>/<channel>.arrows
    for h5 in sorted(d.glob("*.h5")):
        if not is_record_file(h5):
            try:
                kwargs, _ = hdf5_open_kwargs(h5)
                with h5py.File(h5, "r", **kwargs) as f:
                    held.update(k for k in f if k != H5_META_GROUP)
            except READ_ERRORS:
                continue
    owners = [f for f in FLAVORS if isinstance(sec := lab.get(f), dict) and held & {
        str(b.get("id")) for b in _list(sec.get("instruments")) if isinstance(b, dict)}]
    return owners[0] if len(owners) == 1 else None


def _budget_dirs(dirs: list[Path]) -> dict[Flavor, Path]:
    """Each flavor's session directory as the session's ``budget.json`` (written at the end
    of the run, in its first flavor's directory) lists the files storage closed."""
    out: dict[Flavor, Path] = {}
    for d in dict.fromkeys(dirs):
        try:
            stored = json.loads((d / HISTORY_FILE).read_text())["shutdown"]["sink_results"]
            files = stored["storage"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not isinstance(files, dict):
            continue
        for flavor, paths in files.items():
            for p in _list(paths):
                at = next((a for a in Path(str(p)).parents if a.name == d.name), None)
                if flavor in FLAVORS and at is not None:
                    out.setdefault(flavor, resolved(at))
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def find_data_files(path: Path, dirs: Sequence[Path] | None = None) -> list[Path]:
    """The data files ``path`` names; ``dirs``: its session's directories when the caller
    has them already (:func:`session_dirs`)."""
    if path.is_file():
        return [path]
    roots = list(session_dirs(path) if dirs is None else dirs) or [path]
    return sorted(p for root in roots for p in root.rglob("*")
                  if p.is_file() and p.suffix in DATA_SUFFIXES
                  and not p.name.endswith(LOCK_SUFFIX) and not is_record_file(p))


#: What reading a damaged file raises: h5py gives a RuntimeError for damaged metadata ("bad
#: local heap signature"), which escaped as a traceback and hid the session's other files.
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError)
#: The datasets each HDF5 channel layout cannot be read without (see the hdf5 plugin).
HDF5_DATASETS = {"scalar": ("timestamp_ns", "value"), "image": ("timestamp_ns", "value"),
                 "spectrum": ("timestamp_ns", "value", "axis"),
                 "flat": ("timestamp_ns", "extent", "value", "axis")}


def read_file(path: Path, located: dict[Path, dict[Flavor, Path]] | None = None
              ) -> FileReport:
    """Summarize one data file; never raises for a damaged file (status ``unreadable``).
    ``located``: the sessions placed so far (:func:`_flavor_of`), for a caller reading many
    files of one session."""
    suffix = path.suffix
    fmt = {".h5": "hdf5", ".hdf5": "hdf5", ".parquet": "parquet"}.get(suffix, "arrow")
    report = FileReport(path, fmt, _flavor_of(path, {} if located is None else located))
    _lock_notes(path, report)
    try:
        if fmt == "hdf5":
            _read_hdf5(path, report)
        elif fmt == "parquet":
            _read_parquet(path, report)
        else:
            _read_arrow(path, report)
    except (*READ_ERRORS, pa.ArrowException) as exc:
        report.status = "unreadable"
        report.notes.append(f"cannot read: {type(exc).__name__}: {exc}")
    return report


def _flavor_of(path: Path, located: dict[Path, dict[Flavor, Path]]) -> str | None:
    """The flavor of the session directory holding the file, as :func:`find_session` places
    it (each session once: ``located`` keeps them); else from the directory layout
    ``<output_dir>/<flavor>/...``."""
    for parent in path.parents:
        if is_session_id(parent.name):
            if parent not in located:
                located[parent] = _locate(parent)[0]
            found = located[parent]
            here = resolved(parent)
            flavor = next((f for f, d in found.items() if d == here), None)
            if flavor is not None:
                return flavor
        if parent.name in FLAVORS:
            return parent.name
    return None


def _lock_notes(path: Path, report: FileReport) -> None:
    lock = lock_path_for(path)
    if not lock.exists():
        return
    holder = read_holder(lock)
    who = str(holder) if holder else "an unknown process"
    if is_held(lock):
        report.notes.append(f"being written right now by {who}: showing what it has flushed")
    else:
        report.notes.append(f"not closed cleanly: its writer ({who}) stopped without closing "
                            "it, so up to one flush interval before that is missing"
                            + ("; its stale lock file is removed" if remove_stale(lock) else ""))
        report.status = "recovered"


def writer_alive(path: Path) -> bool:
    """A live process holds the data file's lock: it is being written right now."""
    lock = lock_path_for(path)
    return lock.exists() and is_held(lock)


def hdf5_not_closed(f: h5py.File, path: Path) -> str:
    """Why the HDF5 file is not known to hold everything its writer took, or "" when it
    is (``closed`` is 1, or absent: files written before it existed) or still written."""
    if int(f.attrs.get("closed", 1)) or writer_alive(path):
        return ""
    return ("not closed cleanly: its writer stopped at a write error or was killed, so "
            "what came after its last completed flush is missing; the rows that flush "
            "counted are read")


def hdf5_open_kwargs(path: Path) -> tuple[dict[str, Any], str]:
    """Open arguments that work for this file (plain h5py first), and why others were needed."""
    try:
        h5py.File(path, "r").close()
        return {}, ""
    except BlockingIOError:
        h5py.File(path, "r", locking=False).close()
        return {"locking": False}, "HDF5 file is locked by a live writer: opened without HDF5 " \
                                   "locking"
    except OSError as exc:
        if "already open for write" not in str(exc) and "swmr" not in str(exc).lower():
            raise
    kwargs: dict[str, Any] = {"swmr": True, "libver": "latest"}
    h5py.File(path, "r", **kwargs).close()
    return kwargs, ("written in SWMR mode and not closed (writer killed or still running): "
                    "plain h5py refuses it; opened with h5py.File(path, 'r', swmr=True)")


def _open_hdf5(path: Path, report: FileReport) -> dict[str, Any]:
    kwargs, note = hdf5_open_kwargs(path)
    if note:
        report.notes.append(note)
    if kwargs.get("swmr") and report.status == "ok":
        report.status = "recovered"
    return kwargs


def _read_hdf5(path: Path, report: FileReport) -> None:
    kwargs = _open_hdf5(path, report)
    with h5py.File(path, "r", **kwargs) as f:
        if "daqhub_format" not in f.attrs:
            raise ValueError("not a daqhub HDF5 file (no daqhub_format attribute)")
        why = hdf5_not_closed(f, path)
        if why and report.status == "ok":  # else a stale lock or SWMR note said so already
            report.notes.append(why)
            report.status = "recovered"
        report.session_id = _text(f.attrs.get("session_id", ""))
        report.versions = json.loads(_text(f.attrs.get("versions", "{}")))
        report.lab_config = _h5_lab_config(f)
        for iid in f:
            if iid == H5_META_GROUP:
                continue
            try:
                group = f[iid]
                if not isinstance(group, h5py.Group):
                    continue
                report.instruments[iid] = json.loads(_text(group.attrs.get("instrument",
                                                                           "{}")))
                names = list(group)
            except READ_ERRORS as exc:  # the other instruments may well read: go on
                _damaged(report, iid, exc)
                continue
            for name in names:
                try:
                    channel = _hdf5_channel(path, kwargs, group[name], iid)
                except READ_ERRORS as exc:
                    _damaged(report, f"{iid}.{name}", exc)
                    continue
                report.channels.append(channel)


def _hdf5_channel(path: Path, kwargs: dict[str, Any], g: h5py.Group, iid: str
                  ) -> ChannelReport:
    spec = ChannelSpec.from_dict(json.loads(_text(g.attrs["channel"])))
    layout = "flat" if g.attrs.get("layout", "rows") == "flat" else spec.kind
    absent = [d for d in HDF5_DATASETS.get(layout, ()) if d not in g]
    if absent:
        raise Damaged(f"its dataset(s) {', '.join(absent)} are missing")
    rows, notes = hdf5_rows(g)
    try:
        ts = g["timestamp_ns"][:rows]
    except OSError as exc:
        raise Damaged(f"its rows cannot be read ({exc}); its writer was probably killed while "
                      "HDF5 rewrote the channel's chunk index (see the hdf5 storage "
                      "plugin)") from exc
    return ChannelReport(iid, spec, rows, ts, _hdf5_loader(path, kwargs, iid, spec, rows), notes)


class Damaged(ValueError):
    """A part of a data file that cannot be read, and why in the reader's words."""


def _damaged(report: FileReport, what: str, exc: BaseException) -> None:
    """A part of an HDF5 file that cannot be read: named, and the rest is read."""
    report.status = "damaged"
    why = exc if isinstance(exc, Damaged) else f"cannot be read ({type(exc).__name__}: {exc})"
    report.notes.append(f"{what}: {why}; the rest of the file is read")


def hdf5_metadata(g: h5py.Group) -> tuple[np.ndarray, list[str]]:
    """A channel's per-sample metadata: the rows that carry some, and each one's JSON text.
    Bytes with end offsets (daqhub-hdf5/2), or variable-length strings (daqhub-hdf5/1);
    no more than the writer's last completed flush counted (``metadata_rows``)."""
    flushed = g.attrs.get("metadata_rows")
    rows = g["metadata_row"][:flushed]
    if "metadata_end" not in g:
        texts = list(g["metadata"].asstr()[:])
        return rows[:len(texts)], texts[:len(rows)]
    ends = g["metadata_end"][:flushed]
    data = g["metadata"][:int(ends[-1]) if len(ends) else 0].tobytes()
    n = min(len(rows), int(np.searchsorted(ends, len(data), side="right")))
    starts = np.concatenate(([0], ends[:-1])) if len(ends) else ends
    return rows[:n], [data[a:b].decode() for a, b in zip(starts[:n], ends[:n], strict=True)]


def hdf5_rows(g: h5py.Group) -> tuple[int, list[str]]:
    """Rows a reader can trust: those the writer's last completed flush counted
    (``rows``: see the hdf5 plugin for why the datasets' lengths do not say it), and
    in files without that count those present in every dataset of the channel."""
    flat = g.attrs.get("layout", "rows") == "flat"
    parts = ("timestamp_ns", "extent") if flat else ("timestamp_ns", "value", "axis")
    lengths = [len(g[name]) for name in parts if name in g]
    flushed = g.attrs.get("rows")
    if flushed is not None:
        rows = min(int(flushed), *lengths)
        past = max(lengths) - rows
        return rows, [f"{past} row(s) past the writer's last completed flush; ignored"
                      ] if past else []
    if flat:  # a row counts once all its points are there
        extent = g["extent"][:]
        points = min(len(g["value"]), len(g["axis"]))
        ends = extent[:, 0] + extent[:, 1] if len(extent) else np.empty(0, np.int64)
        lengths.append(int(np.searchsorted(np.maximum.accumulate(ends), points, side="right")))
    rows = min(lengths)
    if max(lengths) == rows:
        return rows, []
    return rows, [f"{max(lengths) - rows} row(s) only partly written (writer stopped while "
                  "appending); ignored"]


def _hdf5_loader(path: Path, kwargs: dict[str, Any], iid: str, spec: ChannelSpec,
                 rows: int) -> Callable[[], PlotData]:
    def load() -> PlotData:
        with h5py.File(path, "r", **kwargs) as f:
            g = f[iid][spec.name]
            ts = g["timestamp_ns"][:rows]
            if spec.kind == "scalar":
                step = max(1, math.ceil(rows / MAX_PLOT_POINTS))
                return PlotData(t_ns=ts[::step], y=g["value"][:rows:step])
            if spec.kind == "image":
                k = min(rows, MAX_MEAN_FRAMES)
                frames = g["value"][rows - k:rows].astype(np.float64)
                return PlotData(image=frames.mean(axis=0), note=f"mean of the last {k} frames")
            if g.attrs.get("layout") == "flat":
                start, length = g["extent"][rows - 1]
                return PlotData(axis=g["axis"][start:start + length],
                                spectrum=g["value"][start:start + length].astype(np.float64),
                                note=f"last of {rows} spectra")
            return PlotData(axis=g["axis"][rows - 1],
                            spectrum=_mean_rows(g["value"], rows),
                            note=f"mean of {rows} spectra")
    return load


def _mean_rows(ds: h5py.Dataset, rows: int) -> np.ndarray:
    """Mean over the first axis, read in blocks so a long run does not fill memory."""
    total = np.zeros(ds.shape[1:], dtype=np.float64)
    block = 4096
    for i in range(0, rows, block):
        total += ds[i:min(rows, i + block)].astype(np.float64).sum(axis=0)
    return total / rows


def _h5_lab_config(f: h5py.File) -> str:
    """The lab file stored with the session in a daqhub HDF5 file, or ""."""
    meta = f.get(H5_META_GROUP)
    return _text(meta["lab_config"][()]) if meta is not None and "lab_config" in meta else ""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return _text(value.item())
    return str(value)


def arrow_batches(path: Path, report: FileReport) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    source = pa.memory_map(str(path))
    head = source.read(8)
    source.seek(0)
    if head.startswith(b"ARROW1"):
        try:
            reader = ipc.open_file(source)
            return reader.schema, [reader.get_batch(i) for i in range(reader.num_record_batches)]
        except pa.ArrowInvalid:
            report.notes.append("IPC file without its footer (writer killed): read as a stream")
            report.status = "recovered"
            source.seek(8)
    try:
        stream = ipc.open_stream(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"no complete Arrow schema: the writer stopped before writing one "
                         f"({exc})") from exc
    batches: list[pa.RecordBatch] = []
    while True:
        try:
            batches.append(stream.read_next_batch())
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError) as exc:
            report.notes.append(f"truncated: read {len(batches)} complete batch(es); the rest is "
                                f"an incomplete batch from a writer that was killed or failed "
                                f"({exc})")
            report.status = "recovered"
            break
    if (report.status == "ok" and path.suffix == ".arrows" and _tail(path) != _EOS
            and not writer_alive(path)):  # a live writer ends the stream when it closes
        report.notes.append("not closed cleanly (no end-of-stream marker): its writer stopped "
                            "at a write error or was killed; every batch it holds is intact")
        report.status = "recovered"
    return stream.schema, batches


def _tail(path: Path) -> bytes:
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - len(_EOS)))
        return fh.read()


def _read_arrow(path: Path, report: FileReport) -> None:
    schema, batches = arrow_batches(path, report)
    table = pa.Table.from_batches(batches, schema=schema)
    _table_report(table, schema, report)


def _read_parquet(path: Path, report: FileReport) -> None:
    table = pq.read_table(path, memory_map=True)
    _table_report(table, table.schema, report)


def _table_report(table: pa.Table, schema: pa.Schema, report: FileReport) -> None:
    iid, spec = describe(schema)
    meta = schema.metadata or {}
    report.session_id = meta.get(b"daqhub.session_id", b"").decode()
    report.lab_config = meta.get(b"daqhub.lab_config", b"").decode(errors="replace")
    report.versions = json.loads(meta.get(b"daqhub.versions", b"{}"))
    report.instruments[iid] = json.loads(meta.get(b"daqhub.instrument", b"{}"))
    ts = table.column("timestamp_ns").to_numpy()
    report.channels.append(ChannelReport(iid, spec, table.num_rows, ts,
                                         _table_loader(table, spec)))


def _table_loader(table: pa.Table, spec: ChannelSpec) -> Callable[[], PlotData]:
    def load() -> PlotData:
        rows = table.num_rows
        if spec.kind == "scalar":
            step = max(1, math.ceil(rows / MAX_PLOT_POINTS))
            return PlotData(t_ns=table.column("timestamp_ns").to_numpy()[::step],
                            y=table.column("value").to_numpy()[::step])
        if spec.kind == "image":
            k = min(rows, MAX_MEAN_FRAMES)
            frames = column_values(table.slice(rows - k), spec)
            assert isinstance(frames, np.ndarray)
            return PlotData(image=frames.astype(np.float64).mean(axis=0),
                            note=f"mean of the last {k} frames")
        last = table.slice(rows - 1)
        axis = column_values(last, spec, "axis")[0]
        if spec.fixed_size is None:
            values = column_values(last, spec)[0]
            return PlotData(axis=np.asarray(axis), spectrum=np.asarray(values, np.float64),
                            note=f"last of {rows} spectra")
        all_values = column_values(table, spec)
        assert isinstance(all_values, np.ndarray)
        return PlotData(axis=np.asarray(axis), spectrum=all_values.astype(np.float64).mean(axis=0),
                        note=f"mean of {rows} spectra")
    return load
