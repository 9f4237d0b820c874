"""The points engine: move, wait until done, settle, take fresh readings, record a row.

Scripts (``Lab.scan``/``grid``/``measure``) and lab-file routines (a ``record``
step) write rows through the same code, so a row means the same everywhere.

A points table has these columns, in this order:

==============================  ===================================================
``run_id``                      the run's id (``<kind>-<n>`` within the session)
``step``                        int64, row index 0, 1, 2 ...
``repeat``                      int64, which of the ``repeat`` readings at one point
``<mover>``                     the setpoint sent to each mover (its position unit)
``<mover>.readback``            where the mover reported it ended (``wait_until_done``)
``<id>.<channel>``              the reading, in the channel's declared unit (an image's
                                pixels flat, row-major; its shape is the field's
                                metadata ``shape``, JSON ``[h, w]``)
``<id>.<channel>.requested_ns`` when the engine asked the instrument for the reading
``<id>.<channel>.answered_ns``  when the instrument answered: the sample's own
                                timestamp, which the driver takes as the reply arrives
==============================  ===================================================

Every reading is taken by sending the instrument's ``read`` command *after*
all movers reported their move done and the settle time passed, so it can
never be a sample from before or during the move (``requested_ns`` is always
later than the move's end). The ordinary polled streams keep flowing meanwhile.
Units are in each field's metadata (``unit``).

A run ends complete, or incomplete with its reason: ``stopped`` (``Lab.stop()``, which
stops every run going at that moment, whichever thread started it), ``interrupted``
(Ctrl-C) or the error of the instrument that failed. The rows taken so far are stored
either way; an instrument error is then raised again, as the driver raised it, with a
note saying how many rows were kept.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa

from .command_limits import NoResult, result_within
from .measurement import (
    ChannelSpec,
    Columns,
    Image,
    Measurement,
    RefusedValues,
    Scalar,
    Spectrum,
)
from .records import PointsRun, SessionRecords
from .resources.timeouts import MAX_TIMEOUT_S
from .routines import RoutineRunner
from .schema import column_values, describe, value_type

if TYPE_CHECKING:
    from .lab import Lab
    from .runtime.dual import DualRuntimeManager

#: How often ``read`` may come back without a requested channel before the step fails.
READ_ATTEMPTS = 3
#: The columns every points table starts with. An instrument named like one would put its
#: setpoints in a second column of that name, so lab files may not (``config.validate``).
POINTS_KEYS = {"run_id": pa.string(), "step": pa.int64(), "repeat": pa.int64()}
#: How long a failed or interrupted scan waits for its movers to take ``stop``.
HALT_S = 5.0
#: Field metadata of an image's points column: the image's shape, as JSON (``[h, w]``).
META_SHAPE = b"shape"


class ScanError(RuntimeError):
    """A scan could not be planned or an instrument answered without the asked-for channel."""


@dataclass(frozen=True)
class Plan:
    kind: str
    movers: tuple[str, ...]
    points: tuple[tuple[float, ...], ...]
    reads: tuple[tuple[str, ChannelSpec], ...]
    settle: float
    repeat: int
    move_timeout: float


def _reads(rt: DualRuntimeManager, read: Sequence[str]) -> tuple[tuple[str, ChannelSpec], ...]:
    if isinstance(read, str):
        read = [read]
    out: list[tuple[str, ChannelSpec]] = []
    for entry in read:
        iid, _, chan = entry.partition(".")
        specs = [c for (i, _), c in rt.channels.items() if i == iid]
        if not specs:
            raise ScanError(f"read {entry!r}: no running instrument {iid!r} "
                            f"(instruments: {', '.join(sorted({i for i, _ in rt.channels}))})")
        if chan:
            specs = [c for c in specs if c.name == chan]
            if not specs:
                names = ", ".join(c.name for (i, _), c in rt.channels.items() if i == iid)
                raise ScanError(f"read {entry!r}: {iid} has no channel {chan!r} ({names})")
        out += [(iid, c) for c in specs if (iid, c) not in out]
    return tuple(out)


def _check_movers(lab: Lab, movers: Sequence[str]) -> None:
    for m in movers:
        inst = lab[m]
        if "Motion" not in inst.capabilities:
            raise ScanError(f"{m} ({inst.type}) cannot be a mover: it has no Motion capability")
        for r in lab.rt.routines:
            if r.state.instrument == m and r.state.state in ("waiting", "running"):
                raise ScanError(f"{m} is being moved by a routine of the lab file; a scan "
                                "would fight it (leave the routine out of the lab to scan it)")


def plan_scan(lab: Lab, movers: str | Mapping[str, Sequence[float]], values: Sequence[float],
              read: Sequence[str], settle: float, repeat: int, kind: str,
              move_timeout: float) -> Plan:
    axes = {movers: list(values)} if isinstance(movers, str) else {
        k: list(v) for k, v in movers.items()}
    lengths = {len(v) for v in axes.values()}
    if len(lengths) > 1:
        raise ScanError("movers scanned together need as many values each, got "
                        + ", ".join(f"{k}: {len(v)}" for k, v in axes.items())
                        + " (use Lab.grid for every combination)")
    points = tuple(zip(*axes.values(), strict=True)) if axes else ((),) * 1
    return _plan(lab, kind, axes, points, read, settle, repeat, move_timeout)


def plan_grid(lab: Lab, axes: Mapping[str, Sequence[float]], read: Sequence[str], settle: float,
              repeat: int, move_timeout: float) -> Plan:
    values = {k: list(v) for k, v in axes.items()}
    return _plan(lab, "grid", values, tuple(itertools.product(*values.values())), read, settle,
                 repeat, move_timeout)


def _plan(lab: Lab, kind: str, axes: Mapping[str, list[float]],
          points: tuple[tuple[float, ...], ...], read: Sequence[str], settle: float,
          repeat: int, move_timeout: float) -> Plan:
    if repeat < 1:
        raise ScanError(f"repeat must be at least 1, got {repeat}")
    if not 0 <= settle <= MAX_TIMEOUT_S:  # NaN and inf too (a wait must end)
        wait = "interval" if kind == "measure" else "settle"  # what the caller named it
        raise ScanError(f"{wait} must be a number of seconds from 0 to {MAX_TIMEOUT_S:g}, "
                        f"got {settle}")
    if axes and not 0 < move_timeout <= MAX_TIMEOUT_S:
        raise ScanError(f"move_timeout must be a number of seconds above 0, at most "
                        f"{MAX_TIMEOUT_S:g}, got {move_timeout}")
    if axes and not points:
        raise ScanError("no values to scan")
    _check_movers(lab, list(axes))
    reads = _reads(lab.rt, read)
    if not reads and not axes:
        raise ScanError("nothing to do: give movers, channels to read, or both")
    return Plan(kind, tuple(axes), tuple(tuple(float(v) for v in p) for p in points), reads,
                float(settle), int(repeat), float(move_timeout))


def points_schema(rt: DualRuntimeManager, movers: Sequence[str],
                  reads: Sequence[tuple[str, ChannelSpec]], kind: str) -> pa.Schema:
    """The points table's columns (see the module's docstring), each name once."""

    def unit(u: str) -> dict[bytes, bytes]:
        return {b"unit": u.encode()}

    fields = [pa.field(k, t) for k, t in POINTS_KEYS.items()]
    for m in movers:
        u = next((c.unit for (i, n), c in rt.channels.items() if i == m and n == "position"), "")
        fields += [pa.field(m, pa.float64(), metadata=unit(u)),
                   pa.field(f"{m}.readback", pa.float64(), metadata=unit(u))]
    for iid, spec in reads:
        col = f"{iid}.{spec.name}"
        meta = unit(spec.unit)
        if spec.kind == "image":  # its pixels flat (as the streams hold them): say the shape
            meta[META_SHAPE] = json.dumps(list(spec.shape)).encode()
        fields += [pa.field(col, value_type(spec), metadata=meta),
                   pa.field(f"{col}.requested_ns", pa.int64(), metadata=unit("ns")),
                   pa.field(f"{col}.answered_ns", pa.int64(), metadata=unit("ns"))]
    names = [f.name for f in fields]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # a row is a dict: one column's values would land in the other, unnoticed
        raise ScanError(f"the points table would have two columns named {', '.join(twice)} "
                        f"(every table has {', '.join(POINTS_KEYS)} and <mover>.readback): "
                        "rename the instrument or channel that takes the name")
    return pa.schema(fields, metadata={b"daqhub.kind": kind.encode(),
                                       b"daqhub.movers": ",".join(movers).encode()})


def run_plan(lab: Lab, plan: Plan) -> pa.Table:
    """Run a planned scan in this thread; the points table (complete or not)."""
    rt, records, cmd = lab.rt, lab.records, LabCommands(lab)
    if lab.closing:
        raise ScanError(f"the lab (session {lab.session_id}) is closed: open a new one")
    with lab.run_stop() as stop, claimed(lab, plan):
        run = records.new_run(plan.kind, points_schema(rt, plan.movers, plan.reads, plan.kind))
        with lab.plan_lock:
            lab.movers_held.update(dict.fromkeys(plan.movers, run.run_id))
        return _run_points(lab, plan, run, cmd, stop)


@contextlib.contextmanager
def claimed(lab: Lab, plan: Plan) -> Iterator[None]:
    """The plan's movers, for this plan alone while it runs: two scans (in two threads)
    moving one mover both stored points at positions the other had set, marked complete."""
    with lab.plan_lock:
        held = {m: lab.movers_held[m] for m in plan.movers if m in lab.movers_held}
        if held:
            raise ScanError("; ".join(f"{m} is being moved by {run} (another thread's run)"
                                      for m, run in held.items())
                            + ": wait for it to end, or stop it (Lab.stop)")
        lab.movers_held.update(dict.fromkeys(plan.movers, f"a {plan.kind} starting"))
    try:
        yield
    finally:
        with lab.plan_lock:
            for m in plan.movers:
                lab.movers_held.pop(m, None)


def _run_points(lab: Lab, plan: Plan, run: PointsRun, cmd: LabCommands,
                stop: threading.Event) -> pa.Table:
    records = lab.records
    step = 0
    try:
        for point in plan.points:
            if stop.is_set():
                return records.end_run(run, False, "stopped")
            readback = move_all(cmd, dict(zip(plan.movers, point, strict=True)),
                                plan.move_timeout)
            for k in range(plan.repeat):
                # a scan settles once after each move; a measurement waits between its rows
                pause = plan.settle if (k == 0) != (plan.kind == "measure") or (
                    plan.kind == "measure" and step) else 0.0
                if stop.wait(pause):
                    return records.end_run(run, False, "stopped")
                row: dict[str, Any] = {"run_id": run.run_id, "step": step, "repeat": k}
                for m, v in zip(plan.movers, point, strict=True):
                    row[m], row[f"{m}.readback"] = v, readback[m]
                row.update(read_fresh(cmd, plan.reads))
                records.add_row(run, row)
                step += 1
    except KeyboardInterrupt:
        lab.rt.halt(plan.movers, HALT_S)
        records.end_run(run, False, "interrupted")
        raise
    except Exception as exc:
        lab.rt.halt(plan.movers, HALT_S)
        records.end_run(run, False, f"{type(exc).__name__}: {exc}")
        exc.add_note(f"daqhub: {run.run_id} ended at step {step}; the {len(run.rows)} row(s) "
                     "taken are stored, marked incomplete")
        raise
    return records.end_run(run, True, "complete")


class Commands(Protocol):
    """Sends commands and waits for their results: through Lab handles, or the bare runtime."""

    def send(self, iid: str, method: str, *args: Any) -> concurrent.futures.Future[Any]: ...
    def result(self, iid: str, fut: concurrent.futures.Future[Any], method: str,
               limit: float) -> Any: ...


class LabCommands:
    """Commands through the Lab's handles (their error vocabulary, settings snapshots)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def send(self, iid: str, method: str, *args: Any) -> concurrent.futures.Future[Any]:
        return self.lab[iid].send(method, *args)

    def result(self, iid: str, fut: concurrent.futures.Future[Any], method: str,
               limit: float) -> Any:
        return self.lab[iid].result(fut, method, limit)


class RuntimeCommands:
    """Commands straight through the runtime (routines run without a Lab)."""

    def __init__(self, rt: DualRuntimeManager) -> None:
        self.rt = rt

    def send(self, iid: str, method: str, *args: Any) -> concurrent.futures.Future[Any]:
        return self.rt.submit(iid, method, *args)

    def result(self, iid: str, fut: concurrent.futures.Future[Any], method: str,
               limit: float) -> Any:
        try:
            value = result_within(fut, limit)
        except NoResult:
            fut.cancel()
            raise TimeoutError(f"{iid}.{method}: no result within {limit:g} s") from None
        self.rt.command_done(iid, method)
        return value


def move_all(cmd: Commands, targets: Mapping[str, float], timeout: float) -> dict[str, float]:
    """Move every mover at once, then wait until each reports its move done; readbacks.

    Each ``wait_until_done`` is queued right behind its mover's ``move_absolute`` (an
    instrument runs its commands in order), so a step costs one round trip to the mover,
    not two; it is withdrawn if a move fails."""
    moves = {m: cmd.send(m, "move_absolute", v) for m, v in targets.items()}
    waits: dict[str, concurrent.futures.Future[Any]] = {}
    try:
        waits.update((m, cmd.send(m, "wait_until_done", timeout)) for m in targets)
        _wait_all(cmd, moves, "move_absolute", 30.0)
    except BaseException:
        for fut in (*moves.values(), *waits.values()):
            fut.cancel()
        raise
    done = _wait_all(cmd, waits, "wait_until_done", timeout + 10.0)
    out: dict[str, float] = {}
    for m, value in done.items():
        if not isinstance(value, int | float):
            value = cmd.result(m, cmd.send(m, "position"), "position", 30.0)
        out[m] = float(value)
    return out


def _wait_all(cmd: Commands, sent: Mapping[str, concurrent.futures.Future[Any]], method: str,
              limit: float, asked: Mapping[str, Sequence[ChannelSpec]] | None = None
              ) -> dict[str, Any]:
    """Results of commands sent to several instruments; the first failure is raised.

    ``asked``: the channels each ``read`` was sent for. A read that refused some of its
    values (:class:`RefusedValues`: one its channel cannot hold) then gives the values it
    kept when none of the refused is of an asked channel: a measurement of ``power`` failed
    on a refused ``temperature`` it never asked for. The refusal is counted in the
    instrument's health by the runtime, as a poll's are (refused samples: the run's report is
    not ok, naming the value), and one of an asked channel is raised, naming it."""
    out: dict[str, Any] = {}
    try:
        for iid, fut in sent.items():
            try:
                out[iid] = cmd.result(iid, fut, method, limit)
            except RefusedValues as exc:
                if asked is None:
                    raise
                names = {spec.name for spec in asked[iid]}
                if any(channel in names for channel, _ in exc.refused):
                    raise
                out[iid] = exc.kept
    finally:
        for fut in sent.values():
            fut.cancel()
    return out


class Fresh(NamedTuple):
    """One fresh sample: its value as :func:`samples_of` gives it, when it was asked for and
    when the instrument answered (the sample's own timestamp)."""

    value: Any
    requested_ns: int
    answered_ns: int


def fresh_samples(cmd: Commands, reads: Sequence[tuple[str, ChannelSpec]]
                  ) -> dict[tuple[str, str], Fresh]:
    """One fresh sample of each channel (keyed ``(id, channel)``), asked now from every
    instrument at once.

    A ``read`` may come back without some of the channels (a v4 actor returns the channels
    that have new samples): those instruments are asked again, up to :data:`READ_ATTEMPTS`
    times, then it is a :class:`ScanError` naming the channels still missing."""
    wanted: dict[str, list[ChannelSpec]] = {}
    for iid, spec in reads:
        wanted.setdefault(iid, []).append(spec)
    out: dict[tuple[str, str], Fresh] = {}
    missing = dict(wanted)
    for _ in range(READ_ATTEMPTS):
        requested = time.time_ns()
        results = _wait_all(cmd, {iid: cmd.send(iid, "read") for iid in missing}, "read", 30.0,
                            missing)
        still: dict[str, list[ChannelSpec]] = {}
        for iid, specs in missing.items():
            samples = samples_of(results[iid])
            for spec in specs:
                got = samples.get(spec.name)
                if got is None:
                    still.setdefault(iid, []).append(spec)
                    continue
                out[iid, spec.name] = Fresh(got[0], requested, got[1])
        missing = still
        if not missing:
            return out
    names = ", ".join(f"{i}.{c.name}" for i, cs in missing.items() for c in cs)
    raise ScanError(f"read returned no sample of {names} in {READ_ATTEMPTS} attempts")


def read_fresh(cmd: Commands, reads: Sequence[tuple[str, ChannelSpec]]) -> dict[str, Any]:
    """:func:`fresh_samples` as a points row's columns (see the module doc)."""
    taken = fresh_samples(cmd, reads)
    out: dict[str, Any] = {}
    for iid, spec in reads:
        col, fresh = f"{iid}.{spec.name}", taken[iid, spec.name]
        # an image's column holds its pixels flat (its shape is in the field, points_schema)
        out[col] = np.ravel(fresh.value).tolist() if spec.kind == "image" else fresh.value
        out[f"{col}.requested_ns"] = fresh.requested_ns
        out[f"{col}.answered_ns"] = fresh.answered_ns
    return out


def samples_of(result: Any) -> dict[str, tuple[Any, int]]:
    """Last value and timestamp per channel from what ``read`` returned (either flavor)."""
    out: dict[str, tuple[Any, int]] = {}
    for item in result or []:
        if isinstance(item, Columns) and len(item):
            item = item.row(len(item) - 1)
        if isinstance(item, Measurement):
            out[item.channel] = (_value(item.data), item.timestamp_ns)
        elif isinstance(item, pa.RecordBatch) and item.num_rows:
            _, spec = describe(item.schema)
            last = item.slice(item.num_rows - 1)
            value = column_values(last, spec)[0]
            out[spec.name] = (_value(value), last.column("timestamp_ns")[0].as_py())
    return out


def _value(data: Any) -> Any:
    """A sample's value as plain Python, in its channel's shape: a Python number (numpy's
    are not JSON, nor what bluesky's documents may hold), a list for a spectrum, nested
    lists for an image (a flat list contradicted the ``[h, w]`` that describe() gives)."""
    if isinstance(data, Spectrum):
        return np.asarray(data.values).tolist()
    if isinstance(data, Image):
        return np.asarray(data.pixels).tolist()
    if isinstance(data, Scalar):
        data = data.value
    return data.tolist() if isinstance(data, np.ndarray | np.generic) else data


class RoutinePoints:
    """Where a lab-file routine's ``record`` steps write: one points run per routine run."""

    def __init__(self, records: SessionRecords, runner: RoutineRunner) -> None:
        self.records = records
        self.runner = runner
        self.run: PointsRun | None = None

    def row(self, read: Sequence[str]) -> None:
        rt, runner = self.records.rt, self.runner
        iid = runner.state.instrument
        reads = _reads(rt, read)
        mover = [iid] if "Motion" in rt.types[iid].capabilities else []
        schema = points_schema(rt, mover, reads, "routine")
        if self.run is None:
            self.run = self.records.new_run(f"routine-{iid}", schema)
        else:  # a later record step may read more: its columns join (empty in earlier rows)
            self.records.widen_run(self.run, schema)
        row: dict[str, Any] = {"run_id": self.run.run_id, "step": len(self.run.rows),
                               "repeat": 0}
        for m in mover:
            row[m], row[f"{m}.readback"] = runner.setpoint, runner.readback
        row.update(read_fresh(RuntimeCommands(rt), reads))
        self.records.add_row(self.run, row)

    def end(self, state: str, error: str) -> None:
        if self.run is not None:
            self.records.end_run(self.run, state == "done", error or state)
