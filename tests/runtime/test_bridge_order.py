"""The bridge orders a window's batches across channels only: within a channel the producer's
order is kept, also when a refused row split the channel's window into pieces."""

from __future__ import annotations

from typing import Any

import pytest

from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.plugins.converters import rows_to_batch
from daqhub.runtime.bridge import MeasurementBridge
from daqhub.runtime.broadcast import Broadcast
from daqhub.schema import describe

X, Y = ChannelSpec("x", "scalar", "V"), ChannelSpec("y", "scalar", "V")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad_row", [False, True], ids=["all-good", "a-refused-row-between"])
def test_a_channel_keeps_its_producers_order_around_a_refused_row(bad_row: bool) -> None:
    """A v2 read of y at 10, a bad row at 11, then y at 5 was stored 5 then 10 (without the bad
    row: 10 then 5): the window's pieces of y were sorted by their own first timestamps."""
    refused: list[tuple[str, int, str]] = []
    v2_in: Broadcast[Any] = Broadcast("v2")
    bridge = MeasurementBridge({("a", "x"): X, ("a", "y"): Y}, v2_in, rows_to_batch,
                               window_s=0.01,
                               on_refused=lambda iid, n, msg: refused.append((iid, n, msg)))
    out = bridge.unified.subscribe("out", lossless=True, capacity=100)
    read = [Measurement("a", "y", 10, Scalar(10.0, "V")),
            *([Measurement("a", "y", 11, Scalar("bad", "V"))] if bad_row else []),
            Measurement("a", "y", 5, Scalar(5.0, "V")),
            Measurement("a", "x", 7, Scalar(7.0, "V"))]
    bridge.start()
    v2_in.publish(("a", read))  # one item: one window
    assert bridge.stop(5)  # delivers what is queued first
    stream = [(describe(b.schema)[1].name, t, v) for b in out.get_many(0.0)
              for t, v in zip(b.column("timestamp_ns").to_pylist(),
                              b.column("value").to_pylist(), strict=True)]
    # x (first at 7) still goes before y (first at 10): across channels the window is sorted
    assert stream == [("x", 7, 7.0), ("y", 10, 10.0), ("y", 5, 5.0)]
    assert [(iid, n) for iid, n, _ in refused] == ([("a", 1)] if bad_row else [])
