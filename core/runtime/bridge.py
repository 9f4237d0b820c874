"""MeasurementBridge: both flavors into one unified, time-ordered stream.

V2 workers publish lists of ``Measurement``s (and ``Columns`` blocks) to one lossless
subscription, read by the bridge's thread, which converts them into unified batches per
channel and publishes them ordered by timestamp within a bounded reordering window:
everything that arrived during one window (``window_s``, or less once ``ROWS_PER_WAKE`` rows
are queued) is sorted by each channel's first timestamp before it goes out. V4 actors make
unified batches themselves and publish them straight from the event loop through
:meth:`MeasurementBridge.apublish` (counted, no hop through the bridge's thread), so a v4
batch may pass v2 batches of the same moment. Within a channel the order is the producer's.

Every consumer (storage, live view, remote subscribers) reads only the unified
stream.

The v2 converter is a plugin's code (daqhub's own, unless no installed daqhub converts v2
to Arrow), so what it returns is checked before anything publishes it: one
``pa.RecordBatch`` of the channel it was given, with one row per sample. Anything else is
refused as those samples' loss, counted against their instrument and naming the converter
and its distribution (a converter that dropped rows used to leave a run "stopped cleanly",
and one that returned None cost the bridge whole windows, blamed on the bridge).
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
    value_for_error,
)
from ..schema import channel_schema, describe, undeclared
from .broadcast import Broadcast, Subscription, SubscriptionClosed
from .health import refused_text

RowsToBatch = Callable[[list[Measurement | Columns], ChannelSpec], pa.RecordBatch]
BatchToRows = Callable[[pa.RecordBatch], list[UnifiedMeasurement]]

#: The bridge ends a window early once about this many rows are queued. Rows left waiting out
#: a whole window went cold in the cache and aged in the collector: a fast v2 source of
#: 1,000-row reads lost 15-20 % of its rows/s (650,000-730,000 against 780,000-880,000 taken
#: as they came); ending the window at ~4,000 rows gave 1.0-1.08 M (1,000: 0.96-1.02 M; 16,000:
#: 0.80-0.99 M). One-row reads still wait the window out: at most ~100 wake-ups a second.
ROWS_PER_WAKE = 4000
#: Conversions the bridge spends per channel and window finding the rows a failed window's
#: conversion fails on (about two per halving per bad row: ~20 bad rows of 4,000 each found
#: exactly); past it, a failing part is refused whole, so bad data costs bounded time.
SIFT_CONVERSIONS = 256


class WrongConversion(Exception):
    """A converter returned something else than the channel's batch of the samples it got."""


class MeasurementBridge:
    def __init__(self, channels: Mapping[tuple[str, str], ChannelSpec],
                 v2_in: Broadcast[V2Read],
                 rows_to_batch: RowsToBatch, *, window_s: float = 0.05,
                 capacity: int = 10_000,
                 on_refused: Callable[[str, int, str], None] | None = None,
                 on_alarm: Callable[[str, str], None] | None = None,
                 converter: str = "the converter") -> None:
        self.channels = dict(channels)
        self.rows_to_batch = rows_to_batch
        #: ``rows_to_batch`` as a refusal names it: ``converter 'v2-to-arrow' (daqhub 0.1)``
        self.converter = converter
        #: each channel's unified schema, as its converted batches must carry it
        self.schemas = {key: channel_schema(key[0], spec, unified=True)
                        for key, spec in self.channels.items()}
        self.window_s = window_s
        self.unified: Broadcast[pa.RecordBatch] = Broadcast("unified", on_alarm=on_alarm)
        self.inbound: Subscription[Any] = Subscription("bridge", lossless=True,
                                                       capacity=capacity, on_alarm=on_alarm)
        v2_in.attach(self.inbound)
        #: (instrument, samples, why): samples of an instrument refused, never stored
        self.on_refused = on_refused or (lambda iid, n, msg: None)
        self.on_alarm = on_alarm or (lambda what, msg: None)
        self.counts: dict[str, dict[tuple[str, str], int]] = {"v2": defaultdict(int),
                                                              "v4": defaultdict(int)}
        self.rejected = 0
        #: v2 reads the bridge itself failed on (a bug of its own): the run is not ok
        self.lost = 0
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
                try:
                    rows = self._emit(items)
                except SubscriptionClosed:
                    return
                except Exception as exc:  # a bug of the bridge's own: the window, not the thread
                    self.lost += len(items)
                    self.on_alarm("bridge", f"the bridge lost a window of {len(items)} v2 "
                                  f"read(s): {type(exc).__name__}: {exc}")
                    continue
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
        """Convert and publish one window's items; the rows published.

        One instrument's data costs only its own samples, never the others' nor the thread
        every v2 instrument needs: a read that is not a list of its samples is refused whole,
        and a channel's window that does not convert is sifted (:meth:`_convert`) so only the
        rows it fails on are refused, each named with its instrument, channel and cause.
        """
        rows: dict[tuple[str, str], list[Measurement | Columns]] = defaultdict(list)
        out: list[tuple[int, pa.RecordBatch]] = []  # (its channel's first timestamp, batch)
        emitted = 0
        for item in items:
            try:
                foreign = group_by_channel(item, rows)
            except Exception as exc:  # not a list of samples (a None in it): that read only
                self._refuse_read(item, exc)
                continue
            if foreign:
                n = sample_count(foreign)
                self.rejected += n
                names = ", ".join(sorted({repr(m.instrument_id) for m in foreign}))
                self.on_refused(item[0], n, f"rejected {n} sample(s) named for "
                              f"instrument {names}: a driver's read() returns its own "
                              "instrument's samples only")
        for key, ms in rows.items():
            declared = self.channels.get(key)
            if declared is None:
                n = sample_count(ms)
                self.rejected += n
                self.on_refused(key[0], n, refused_text(n, key[1], undeclared(
                    *key, [k for k in self.channels if k[0] == key[0]])))
                continue
            batches = self._convert(key, ms, declared)
            at = next((b.column("timestamp_ns")[0].as_py() for b in batches if b.num_rows), 0)
            for batch in batches:
                out.append((at, batch))
                n = batch.num_rows
                self.counts["v2"][key] += n
                emitted += n
        # across channels only: a stable sort on the channel's first timestamp keeps the pieces
        # of a channel that a refused row split (:meth:`_sift`) in the producer's order
        out.sort(key=lambda item: item[0])
        for _, b in out:
            self.unified.publish(b)
            self.batches_out += 1
        return emitted

    def _convert(self, key: tuple[str, str], ms: list[Measurement | Columns],
                 declared: ChannelSpec) -> list[pa.RecordBatch]:
        """A channel's window as batches: all of it at once (the hot path: no check per row
        here), or, when that fails, what is left once the items it fails on are refused.

        The converter names only the first bad row, and one bad timestamp used to cost the
        whole window (a NaN among 20 good rows lost all 21), so a failed window is halved
        until each failing part is one item (a row, or a driver's :class:`Columns` block):
        a bad row costs about two conversions per halving, only on the failure path.
        """
        try:
            return [self._converted(key, ms, declared)]
        except Exception as exc:  # a converter's bug too: these samples, not the bridge
            good: list[pa.RecordBatch] = []
            self._sift(key, ms, declared, exc, good, SIFT_CONVERSIONS)
            return good

    def _converted(self, key: tuple[str, str], ms: list[Measurement | Columns],
                   declared: ChannelSpec) -> pa.RecordBatch:
        """``ms`` converted, or :class:`WrongConversion` saying what the converter returned
        instead of their batch: storage takes a batch as the samples it was made of, so one
        of another channel, or with samples missing or added, must not pass for them."""
        batch = self.rows_to_batch(ms, declared)
        if not isinstance(batch, pa.RecordBatch):
            raise WrongConversion(f"returned {value_for_error(batch)}, not a pyarrow "
                                  "RecordBatch")
        if not batch.schema.equals(self.schemas[key], check_metadata=True):
            self._check_channel(key, batch, declared)  # the same, spelled otherwise?
        n = sample_count(ms)
        if batch.num_rows != n:
            raise WrongConversion(f"returned {batch.num_rows} row(s) for {n} sample(s)")
        return batch

    def _check_channel(self, key: tuple[str, str], batch: pa.RecordBatch,
                       declared: ChannelSpec) -> None:
        """Raise :class:`WrongConversion` unless ``batch`` is a unified batch of ``key`` as
        declared (its schema's metadata may be written otherwise than daqhub writes it)."""
        where = f"{key[0]}.{key[1]}"
        try:
            iid, spec = describe(batch.schema)
        except DataError as exc:
            raise WrongConversion(f"returned a batch that is no channel's ({exc}) for "
                                  f"{where}") from None
        if (iid, spec.name) != key:
            raise WrongConversion(f"returned a batch of {iid}.{spec.name} for {where}")
        if spec != declared or not batch.schema.equals(self.schemas[key]):
            raise WrongConversion(f"returned a batch of {where} with columns "
                                  f"{batch.schema.names} ({spec.to_dict()}); the unified "
                                  f"schema of its declaration has {self.schemas[key].names} "
                                  f"({declared.to_dict()})")

    def _sift(self, key: tuple[str, str], ms: list[Measurement | Columns],
              declared: ChannelSpec, exc: Exception, good: list[pa.RecordBatch],
              budget: int) -> int:
        """``ms`` failed to convert with ``exc``: append what converts of it to ``good``, in
        order, and refuse the rest; the conversions of ``budget`` left unspent.

        Once the budget is spent (a window whose rows are nearly all bad), what still fails
        is refused in parts as large as it has reached, so a driver that sends nothing but
        bad rows costs the bridge a bounded effort per window.
        """
        if len(ms) == 1 or budget < 2:
            self._refuse(key, ms, exc)
            return budget
        half = len(ms) // 2
        for part in (ms[:half], ms[half:]):
            budget -= 1
            try:
                good.append(self._converted(key, part, declared))
            except Exception as part_exc:
                budget = self._sift(key, part, declared, part_exc, good, budget)
        return budget

    def _refuse(self, key: tuple[str, str], ms: list[Measurement | Columns],
                exc: Exception) -> None:
        """Count samples of a channel that did not convert as its instrument's error: the
        data's fault (a :class:`DataError`, which names the channel), else the converter's."""
        n = sample_count(ms)
        self.rejected += n
        if isinstance(exc, DataError):
            why = str(exc)
        elif isinstance(exc, WrongConversion):
            why = f"{self.converter} {exc}"
        else:
            why = f"{self.converter} raised {type(exc).__name__}: {exc}"
        self.on_refused(key[0], n, refused_text(n, key[1], why))

    def _refuse_read(self, item: Any, exc: Exception) -> None:
        """A v2 read that is not its instrument's list of samples: refused whole, named."""
        try:
            owner, read = item
            n = sample_count(read)
        except Exception:  # not even (instrument id, items): nobody to name but the bridge
            owner, n = "?", 0
        self.rejected += n
        self.on_refused(str(owner), n, f"rejected a read of {n} item(s): {type(exc).__name__}: "
                      f"{exc} (a v2 read() returns a list of Measurement and Columns)")

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
            "lost_reads": self.lost,
            "batches_out": self.batches_out,
            "inbound_depth": self.inbound.depth(),
        }

    def count(self, source: Flavor | str, instrument_id: str, channel: str) -> int:
        return self.counts[as_flavor(source)][(instrument_id, channel)]
