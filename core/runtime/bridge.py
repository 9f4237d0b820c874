"""MeasurementBridge: both flavors into one unified, time-ordered stream.

V2 workers publish lists of ``Measurement``s (and ``Columns`` blocks) to one lossless
subscription, read by the bridge's thread, which converts them into unified batches per
channel and publishes them ordered by timestamp within a bounded reordering window:
everything that arrived during one window (``window_s``, or less once ``ROWS_PER_WAKE`` rows
are queued) is sorted by its first timestamp before it goes out. V4 actors make unified
batches themselves and publish them straight from the event loop through
:meth:`MeasurementBridge.apublish` (counted, no hop through the bridge's thread), so a v4
batch may pass v2 batches of the same moment. Within a channel the order is the producer's.

Every consumer (storage, live view, remote subscribers) reads only the unified
stream.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pyarrow as pa

from ..measurement import (
    ChannelSpec,
    Columns,
    DataError,
    Flavor,
    Measurement,
    UnifiedMeasurement,
    V2Read,
    as_flavor,
    group_by_channel,
    sample_count,
)
from .broadcast import Broadcast, Subscription, SubscriptionClosed

RowsToBatch = Callable[[list[Measurement | Columns], ChannelSpec], pa.RecordBatch]
BatchToRows = Callable[[pa.RecordBatch], list[UnifiedMeasurement]]

#: The bridge ends a window early once about this many rows are queued. Rows left waiting out
#: a whole window went cold in the cache and aged in the collector: a fast v2 source of
#: 1,000-row reads lost 15-20 % of its rows/s (650,000-730,000 against 780,000-880,000 taken
#: as they came); ending the window at ~4,000 rows gave 1.0-1.08 M (1,000: 0.96-1.02 M; 16,000:
#: 0.80-0.99 M). One-row reads still wait the window out: at most ~100 wake-ups a second.
ROWS_PER_WAKE = 4000


class MeasurementBridge:
    def __init__(self, channels: Mapping[tuple[str, str], ChannelSpec],
                 v2_in: Broadcast[V2Read],
                 rows_to_batch: RowsToBatch, *, window_s: float = 0.05,
                 capacity: int = 10_000, on_error: Callable[[str, str], None] | None = None,
                 on_alarm: Callable[[str, str], None] | None = None) -> None:
        self.channels = dict(channels)
        self.rows_to_batch = rows_to_batch
        self.window_s = window_s
        self.unified: Broadcast[pa.RecordBatch] = Broadcast("unified", on_alarm=on_alarm)
        self.inbound: Subscription[Any] = Subscription("bridge", lossless=True,
                                                       capacity=capacity, on_alarm=on_alarm)
        v2_in.attach(self.inbound)
        self.on_error = on_error or (lambda iid, msg: None)
        self.counts: dict[str, dict[tuple[str, str], int]] = {"v2": defaultdict(int),
                                                              "v4": defaultdict(int)}
        self.rejected = 0
        self.batches_out = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._main, name="daqhub-bridge", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        enough = 0  # items that make ROWS_PER_WAKE rows, as the last window's items did
        while True:
            try:
                items = self.inbound.get_window(self.window_s, self.window_s, self._stop, enough)
            except SubscriptionClosed:
                return
            if items:
                rows = self._emit(items)
                enough = max(1, ROWS_PER_WAKE * len(items) // max(rows, 1))
            if self._stop.is_set() and self.inbound.depth() == 0:
                return

    def apublish(self, batch: pa.RecordBatch, channel: tuple[str, str]) -> Awaitable[None]:
        """A v4 actor's unified batch of ``channel`` (``(instrument id, channel)``, as its
        schema declares), published from the event loop (counted here, as it is handed over:
        the stream's own coroutine is returned to be awaited, not wrapped in another)."""
        self.counts["v4"][channel] += batch.num_rows
        return self.unified.apublish(batch)

    def _emit(self, items: list[Any]) -> int:
        """Convert and publish one window's items; the rows published."""
        rows: dict[tuple[str, str], list[Measurement | Columns]] = defaultdict(list)
        out: list[pa.RecordBatch] = []
        emitted = 0
        for item in items:
            foreign = group_by_channel(item, rows)
            if foreign:
                n = sample_count(foreign)
                self.rejected += n
                names = ", ".join(sorted({repr(m.instrument_id) for m in foreign}))
                self.on_error(item[0], f"rejected {n} sample(s) named for "
                              f"instrument {names}: a driver's read() returns its own "
                              "instrument's samples only")
        for key, ms in rows.items():
            declared = self.channels.get(key)
            if declared is None:
                self.rejected += sample_count(ms)
                self.on_error(key[0], f"measurement for undeclared channel {key[1]!r}")
                continue
            try:
                batch = self.rows_to_batch(ms, declared)
                out.append(batch)
                n = batch.num_rows
                self.counts["v2"][key] += n
                emitted += n
            except DataError as exc:
                self.rejected += sample_count(ms)
                self.on_error(key[0], f"rejected {sample_count(ms)} sample(s): {exc}")
            except Exception as exc:  # a converter's bug: these samples, not the bridge
                self.rejected += sample_count(ms)
                self.on_error(key[0], f"rejected {sample_count(ms)} sample(s) of channel "
                              f"{key[1]!r}: the converter raised {type(exc).__name__}: {exc}")
        out.sort(key=lambda b: b.column("timestamp_ns")[0].as_py() if b.num_rows else 0)
        for b in out:
            self.unified.publish(b)
            self.batches_out += 1
        return emitted

    def stop(self, timeout: float) -> bool:
        """Deliver what is queued, then stop; False when it did not finish in time."""
        self._stop.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def close(self) -> None:
        self.inbound.close()

    def stats(self) -> dict[str, Any]:
        return {
            "v2_rows": sum(self.counts["v2"].values()),
            "v4_rows": sum(self.counts["v4"].values()),
            "rejected": self.rejected,
            "batches_out": self.batches_out,
            "inbound_depth": self.inbound.depth(),
        }

    def count(self, source: Flavor | str, instrument_id: str, channel: str) -> int:
        return self.counts[as_flavor(source)][(instrument_id, channel)]
