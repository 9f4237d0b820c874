"""Where the dashboard's data comes from: a small interface and the in-process source.

The dashboard reads a lab through :class:`DashboardSource` only, so the same page serves
a run in this process (:class:`RuntimeSource`) or a run on another machine (a source fed
by the live data service). Every method is called from the dashboard's own thread and
must return at once: the in-process source drains a *lossy* subscription of the unified
stream (it drops its oldest batches when the page falls behind, and counts them) and
copies the runtime's health snapshot, so nothing the page does can wait on an
instrument thread or the v4 event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from ..command_limits import wait_limit
from ..commands import driver_class
from ..measurement import ChannelSpec
from ..runtime.broadcast import Subscription, SubscriptionClosed
from ..runtime.dual import DualRuntimeManager


@dataclass(frozen=True)
class InstrumentInfo:
    """What the page shows of an instrument before its first sample."""

    id: str
    type: str
    flavor: str
    requested_hz: float
    channels: Sequence[ChannelSpec] = field(default_factory=tuple)


class DashboardSource(Protocol):
    """A running lab as the dashboard sees it."""

    def title(self) -> str:
        """The lab and session, for the page's heading."""

    def instruments(self) -> list[InstrumentInfo]:
        """Every instrument with its declared channels (fixed for the run)."""

    def take(self) -> list[pa.RecordBatch]:
        """Unified-stream batches that arrived since the last call; never waits."""

    def health(self) -> dict[str, Any]:
        """``instruments`` (health snapshots), ``alarms`` (the newest), ``alarms_total`` (how
        many the run raised in all; left out, every alarm is in ``alarms``), ``routines``
        (with ``steps`` per cycle, so the page can show progress), ``dropped``, and
        ``ended``: true once the run has ended (the page says so and stops refreshing)."""

    def files(self) -> list[dict[str, Any]]:
        """The session's files so far: ``path``, ``name`` (short, for the page), and ``bytes``
        (or ``rows``, where only the data service's row counts are known)."""

    def call(self, instrument: str, method: str, args: Sequence[Any]) -> Any:
        """Run a command on an instrument and wait for its result as long as the command
        allows (:func:`daqhub.command_limits.wait_limit`, as the Lab API waits); blocking,
        the server calls it off its loop. Arguments the instrument's driver refuses raise
        :class:`~daqhub.commands.ArgumentsRefused` (the runtime's check), nothing sent: the
        server answers them 400, the client's mistake, and any other error 502."""

    def close(self) -> None:
        """Stop receiving; the run goes on."""


class RuntimeSource:
    """The lab running in this process, read through a lossy unified-stream subscription."""

    def __init__(self, rt: DualRuntimeManager, capacity: int = 5000) -> None:
        self.rt = rt
        self.sub: Subscription[pa.RecordBatch] = rt.subscribe("web", lossless=False,
                                                              capacity=capacity)
        #: set by the run's owner once the runtime has shut down
        self.ended = False

    def title(self) -> str:
        return f"{Path(self.rt.lab.path).name} - session {self.rt.session_id or '(no storage)'}"

    def instruments(self) -> list[InstrumentInfo]:
        out = []
        for inst in self.rt.lab.instruments():
            if inst.id not in self.rt.types:
                continue  # disabled in the lab file
            channels = [c for (iid, _), c in self.rt.channels.items() if iid == inst.id]
            out.append(InstrumentInfo(inst.id, inst.type, inst.flavor, inst.poll_hz,
                                      tuple(channels)))
        return out

    def take(self) -> list[pa.RecordBatch]:
        try:
            return self.sub.get_many(0.0)
        except SubscriptionClosed:
            return []

    def health(self) -> dict[str, Any]:
        h = self.rt.health()
        routines = [{**state, "steps": len(r.spec.get("steps", [])),
                     "repeat": bool(r.spec.get("repeat", False))}
                    for r, state in zip(self.rt.routines, h["routines"], strict=True)]
        return {"instruments": h["instruments"], "alarms": h["alarms"],
                "alarms_total": h["alarms_total"], "routines": routines,
                "dropped": self.sub.dropped, "ended": self.ended}

    def files(self) -> list[dict[str, Any]]:
        out = []
        for flavor, d in sorted(self.rt.output_dirs().items()):
            for p in sorted(d.rglob("*")):
                if p.is_file() and not p.name.endswith(".lock"):
                    try:
                        out.append({"path": str(p), "name": f"{flavor}: {p.relative_to(d)}",
                                    "bytes": p.stat().st_size})
                    except OSError:  # removed between listing and stat
                        continue
        return out

    def call(self, instrument: str, method: str, args: Sequence[Any]) -> Any:
        itype = self.rt.types.get(instrument)
        limit = wait_limit(None if itype is None else driver_class(itype), method,
                           tuple(args), {})
        return self.rt.call(instrument, method, *args, timeout=limit)

    def close(self) -> None:
        self.sub.close()
        if self.rt.bridge is not None:
            self.rt.bridge.unified.detach(self.sub)
