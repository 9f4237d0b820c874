"""What a run achieved, per instrument and per routine: the basis of the exit code.

A lab reads the exit code and the report the morning after, so neither may
call a run clean that was not: an instrument is *ok* only when it connected,
had samples stored, had none refused (samples of channels it did not declare, or that
would not convert: data it produced and no file holds), every sample it produced reached
the unified stream (produced = in the stream + refused; checked for instruments in this
process), a sink stored every one of them
(a storage backend that failed or hung in ``write()`` left them in no file) and it ended
``stopped`` without being forced by the shutdown (a thread that ended only once its port
was closed under it did not stop cleanly) and with its driver's ``close()`` at shutdown
done (one that raised may have left the device as it should not be: an output on, an axis
moving); a routine only when it completed or was stopped
by the shutdown. Everything else is named with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .health import InstrumentHealth


def instrument_outcome(h: InstrumentHealth, stored: Mapping[str, int], forced: str = "",
                       unstored: Mapping[str, int] | None = None, *,
                       in_process: bool = True) -> dict[str, Any]:
    """One instrument's final record; ``stored`` is its samples per channel in the stream,
    ``forced`` how the shutdown found it when it had to force it ("" when it did not),
    ``unstored`` its samples in the stream that a sink did not store, per sink (named as
    its errors name it: ``v2 storage backend hdf5 (daqhub 0.1)``); ``in_process`` False
    for an instrument in a worker process, whose samples produced are not compared with
    the stream's (below)."""
    samples = sum(stored.values())
    not_stored = dict(unstored or {})
    # a sample is counted produced before it is handed on, and in the stream as it goes in,
    # so only a shortfall says something: samples counted in neither the stream nor the
    # refused were lost on the way (a bridge window lost, a queue given up at shutdown);
    # the stream may count more (a v4 poll cancelled after it published). Not for a worker
    # process's instrument: its count is the worker's, mirrored, and a worker that dies
    # (killed as hung) loses what it produced since its last batch, a death the runtime
    # recovers from and reports as the instrument's event, not as a failed run
    missing = h.measurements - h.refused_samples - samples if in_process else 0
    snap = h.snapshot()
    if not h.connected:
        problem = "never connected"
    elif h.state == "failed":
        problem = "failed"
    elif forced:  # what it was busy in says more than the state it was left in
        problem = f"forced at shutdown ({forced})"
    elif h.state != "stopped":
        problem = f"did not stop (left {h.state})"
    elif h.close_failure:
        problem = f"its close() at shutdown failed: {h.close_failure}"
    elif samples == 0 and h.measurements:
        problem = f"none of its {h.measurements} samples was accepted"
    elif samples == 0:
        problem = "produced no data"
    elif h.refused_samples:
        problem = (f"{h.refused_samples} of its samples refused, not stored (its errors say "
                   "why)")
    elif not_stored:
        problem = "; ".join(f"{n} of its samples not stored by {sink} (the errors say why)"
                            for sink, n in not_stored.items())
    elif missing > 0:
        problem = (f"{missing} of its {h.measurements} samples never reached the stream "
                   "(neither stored nor refused)")
    else:
        problem = ""
    return {"id": h.id, "flavor": h.flavor, "type": h.type, "state": h.state,
            "samples": samples, "produced": h.measurements, "errors": h.errors,
            "refused_samples": h.refused_samples, "not_stored": sum(not_stored.values()),
            "restarts": h.restarts, "reconnects": h.reconnects,
            "disconnected_s": snap["disconnected_s"], "last_error": h.last_error_seen,
            "ok": not problem, "problem": problem, "events_total": h.events_total,
            "event_counts": dict(h.event_counts),
            "events": list(h.events)}


def routine_outcome(state: Mapping[str, Any]) -> dict[str, Any]:
    """A routine is fine when it completed or was stopped; anything else is named."""
    st = state["state"]
    problem = "" if st in ("done", "stopped") else \
        (f"failed: {state['error']}" if st == "failed" else f"did not finish (left {st})")
    return {**state, "ok": not problem, "problem": problem}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def report_line(o: Mapping[str, Any]) -> str:
    """``stage (v2): stopped, 120 samples, 0 errors, ... - last error: ...``"""
    plural = _plural
    text = (f"{o['id']} ({o['flavor']}): {o['state']}, {plural(o['samples'], 'sample')}, "
            f"{plural(o['errors'], 'error')}, {plural(o['restarts'], 'restart')}, "
            f"{plural(o['reconnects'], 'reconnect')}, {o['disconnected_s']:.1f} s disconnected")
    if o["last_error"]:
        text += f"; last error: {o['last_error']}"
    if o["problem"]:
        text += f"  <- NOT OK: {o['problem']}"
    return text
