"""What the page shows, kept up to date from a :class:`~.source.DashboardSource`.

The model lives on the dashboard's thread. Every tick it takes the batches that arrived,
keeps a rolling, thinned history per scalar channel (at most ``MAX_POINTS`` over the
history window, so a 1 kHz channel costs the page no more than a 20 Hz one), the latest
trace of each spectrum and the latest frame of each image (reduced to at most
``MAX_FRAME`` pixels a side). A page asks for everything newer than the tick it last
saw, so a refresh moves only what changed; the ticks are this model's, named by its
``run`` id, so a page left open while another run took over the address starts over.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..measurement import ChannelSpec, DataError
from ..runtime.health import si_text
from ..schema import describe
from .source import DashboardSource

MAX_POINTS = 400
MAX_TRACE = 2048
MAX_FRAME = 128
MAX_ALARMS = 200
FILES_EVERY_S = 2.0


def _num(v: float) -> float | None:
    """JSON has no NaN or infinity: the page shows a gap there (the server refuses to send
    one, and a single one in the state stopped the page)."""
    return v if math.isfinite(v) else None


def _text(v: float, unit: str) -> str:
    return si_text(float(v), unit) if isinstance(v, float) else f"{v} {unit}".strip()


@dataclass
class ChannelView:
    instrument: str
    spec: ChannelSpec
    min_dt_ms: float
    points: deque[tuple[int, int, float | None]] = field(default_factory=deque)
    last_text: str = ""
    updated: int = 0          # tick of the last trace or frame
    trace: dict[str, Any] | None = None
    frame: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.instrument}/{self.spec.name}"

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "instrument": self.instrument, "channel": self.spec.name,
                "kind": self.spec.kind, "unit": self.spec.unit,
                "axis_unit": self.spec.axis_unit}


class DashboardModel:
    def __init__(self, source: DashboardSource, history_s: float = 60.0) -> None:
        self.source = source
        self.history_ms = history_s * 1000.0
        #: names the ticks below: another model (the next run on this address) has its own
        self.run = uuid.uuid4().hex[:12]
        self.tick = 0
        self.instruments = source.instruments()
        self.channels: dict[tuple[str, str], ChannelView] = {}
        for inst in self.instruments:
            for spec in inst.channels:
                self.channels[(inst.id, spec.name)] = ChannelView(
                    inst.id, spec, self.history_ms / MAX_POINTS)
        self.health: dict[str, Any] = {"instruments": [], "alarms": [], "routines": []}
        self.alarms: deque[tuple[int, dict[str, Any]]] = deque(maxlen=MAX_ALARMS)
        self._alarms_total = 0  # the source's count of alarms at the last update
        self.ended = False  # the source says its run has ended
        self.files: list[dict[str, Any]] = []
        self._files_at = 0.0
        self.errors = 0  # batches the model could not read (counted, shown)
        self.problem = ""  # why the last update failed, if it did (shown)

    # --- taking data in (the dashboard thread, every tick) -------------------------------

    def update(self) -> None:
        """Take the batches that arrived, then the health. The health is read even when
        taking fails (a remote run's link lost): the rows then say what the source makes of
        it, not the states they had when the data stopped."""
        self.tick += 1
        try:
            batches = self.source.take()
        finally:
            self._read_health()
        for batch in batches:
            try:
                self._ingest(batch)
            except (DataError, ValueError, KeyError, pa.ArrowException):
                self.errors += 1
        now = time.monotonic()
        if now - self._files_at >= FILES_EVERY_S:
            self._files_at = now
            self.files = self.source.files()

    def _read_health(self) -> None:
        self.health = self.source.health()
        self.ended = bool(self.health.get("ended", False))
        # new alarms by the source's count: its list keeps the newest only (the runtime's
        # 500), so once full its length stays and no alarm after the 500th was shown
        alarms = self.health.get("alarms", [])
        total = int(self.health.get("alarms_total", len(alarms)))
        new = min(total - self._alarms_total, len(alarms))
        for a in alarms[len(alarms) - new:] if new > 0 else ():
            self.alarms.append((self.tick, a))
        self._alarms_total = total

    def _ingest(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        iid, spec = describe(batch.schema)
        view = self.channels.get((iid, spec.name))
        if view is None:  # a channel not declared up front still gets a view
            view = self.channels[(iid, spec.name)] = ChannelView(
                iid, spec, self.history_ms / MAX_POINTS)
        ts = batch.column("timestamp_ns").to_numpy()
        t_ms = ts // 1_000_000
        values = batch.column("value")
        if spec.kind == "scalar":
            arr = values.to_numpy(zero_copy_only=False)
            pts = view.points
            last_t = pts[-1][1] if pts else -math.inf
            for t, v in zip(t_ms.tolist(), arr.tolist(), strict=True):
                if t - last_t >= view.min_dt_ms:
                    pts.append((self.tick, t, _num(float(v))))
                    last_t = t
            view.last_text = _text(arr[-1].item(), spec.unit)
            horizon = int(t_ms[-1]) - self.history_ms
            while pts and pts[0][1] < horizon:
                pts.popleft()
            return
        last = values[batch.num_rows - 1].values.to_numpy(zero_copy_only=False)
        view.updated = self.tick
        if spec.kind == "spectrum":
            axis = batch.column("axis")[batch.num_rows - 1].values.to_numpy(zero_copy_only=False)
            step = max(1, math.ceil(len(last) / MAX_TRACE))
            y = last[::step].astype(float)
            view.trace = {"t": int(t_ms[-1]),
                          "x": [_num(v) for v in axis[::step].astype(float).tolist()],
                          "y": [_num(v) for v in y.tolist()]}
            view.last_text = f"{len(last)} points, max {_text(float(np.nanmax(y)), spec.unit)}" \
                if len(y) and np.isfinite(y).any() else f"{len(last)} points"
        else:
            h, w = (int(s or 0) for s in spec.shape)
            img = last.reshape(h, w).astype(float)
            step = max(1, math.ceil(max(h, w) / MAX_FRAME))
            small = img[::step, ::step]
            ok = np.isfinite(small)
            lo, hi = (float(small[ok].min()), float(small[ok].max())) if ok.any() else (0.0, 0.0)
            # sent as 0-255 levels between lo and hi of the finite pixels (a quarter of the
            # text of raw numbers); a NaN or infinite pixel (a dead one divided by) is a gap,
            # null: as a level it overflowed, and the rest of the frame was drawn flat
            levels = np.round((np.clip(small, lo, hi) - lo) * (255 / (hi - lo) if hi > lo else 0))
            z = [[int(v) if k else None for v, k in zip(row, keep, strict=True)]
                 for row, keep in zip(levels.tolist(), ok.tolist(), strict=True)]
            view.frame = {"t": int(t_ms[-1]), "w": small.shape[1], "h": small.shape[0],
                          "lo": lo, "hi": hi, "z": z}
            view.last_text = f"{h}x{w}, {_text(lo, spec.unit)} .. {_text(hi, spec.unit)}"

    # --- giving it out (requests, same thread) ---------------------------------------

    def state(self, since: int) -> dict[str, Any]:
        """Everything a page needs that changed after tick ``since`` (0: everything)."""
        health = {h["id"]: h for h in self.health.get("instruments", [])}
        rows = []
        for inst in self.instruments:
            h = health.get(inst.id, {})
            rows.append({
                "id": inst.id, "type": inst.type, "flavor": inst.flavor,
                "requested_hz": inst.requested_hz, "state": h.get("state", "unknown"),
                "rate_hz": h.get("rate_hz", 0.0), "measurements": h.get("measurements", 0),
                "errors": h.get("errors", 0), "restarts": h.get("restarts", 0),
                "reconnects": h.get("reconnects", 0), "last_error": h.get("last_error", ""),
                "values": {c.spec.name: c.last_text for (iid, _), c in self.channels.items()
                           if iid == inst.id}})
        series: dict[str, Any] = {}
        traces: dict[str, Any] = {}
        frames: dict[str, Any] = {}
        for view in self.channels.values():
            if view.spec.kind == "scalar":
                new = []
                for seq, t, v in reversed(view.points):
                    if seq <= since:
                        break
                    new.append((t, v))
                if new:
                    new.reverse()
                    series[view.key] = {"t": [t for t, _ in new], "v": [v for _, v in new]}
            elif view.updated > since:
                if view.trace is not None:
                    traces[view.key] = view.trace
                if view.frame is not None:
                    frames[view.key] = view.frame
        out: dict[str, Any] = {
            "run": self.run, "tick": self.tick, "ended": self.ended, "instruments": rows,
            "series": series, "traces": traces, "frames": frames,
            "alarms": [a for seq, a in self.alarms if seq > since],
            "routines": self.health.get("routines", []), "files": self.files,
            "dropped": self.health.get("dropped", 0), "unreadable": self.errors,
            "problem": self.problem}
        if since == 0:
            out["channels"] = [c.describe() for c in self.channels.values()]
        return out
