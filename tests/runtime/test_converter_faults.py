"""A v2 converter is a plugin's code: what it returns is checked before it is published, and
what it gets wrong costs the samples it was given, counted against their instrument and
named with the converter and its distribution, never a run "stopped cleanly"."""

from __future__ import annotations

import itertools
import re
import types
from typing import Any

import pyarrow as pa
import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, fake_instrument_types, make_lab

import daqhub.plugins.arrow as arrow_plugin
import daqhub.plugins.hdf5 as hdf5_plugin
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.plugins.converters import rows_to_batch
from daqhub.runtime.bridge import MeasurementBridge
from daqhub.runtime.broadcast import Broadcast
from daqhub.runtime.dual import DualRuntimeManager
from daqhub.specs import Converter

X, Y = ChannelSpec("x", "scalar", "V"), ChannelSpec("y", "scalar", "V")


def lossy_host(convert: Any) -> PluginHost:
    """A host whose only v2 -> arrow converter is ``convert``, from distribution lossy-conv
    0.3 (with daqhub's own, daqhub's would be used: see test_converter_choice.py)."""
    host = PluginHost()
    host.register(hdf5_plugin, "daqhub:hdf5", "daqhub", "test")
    host.register(arrow_plugin, "daqhub:arrow", "daqhub", "test")
    host.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(
        fake_instrument_types)), "runtime-tests", "runtime-tests", "0")
    host.register(types.SimpleNamespace(daqhub_converters=hookimpl(lambda: [
        Converter("lossy", "v2", "arrow", convert, "a converter with a bug")])),
        "lossy:conv", "lossy-conv", "0.3")
    return host


def every_other_empty() -> Any:
    calls = itertools.count()

    def convert(rows: Any, spec: ChannelSpec) -> pa.RecordBatch:
        batch = rows_to_batch(rows, spec)
        return batch if next(calls) % 2 else batch.slice(0, 0)
    return convert


def returns_none(rows: Any, spec: ChannelSpec) -> None:
    return None


def raises(rows: Any, spec: ChannelSpec) -> None:
    raise RuntimeError("lossy exploded")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("convert,says", [
    (every_other_empty(), r"returned 0 row\(s\) for 1 sample\(s\)"),
    (returns_none, "returned NoneType None, not a pyarrow RecordBatch"),
    (raises, "raised RuntimeError: lossy exploded")])
def test_a_converter_that_loses_samples_makes_their_instrument_not_ok_and_is_named(
        tmp_path, convert, says) -> None:
    """Dropping rows gave exit 0 and "stopped cleanly" (produced 41, stored 21); None cost the
    bridge whole windows, blamed on the bridge, every instrument with 0 errors."""
    host = lossy_host(convert)
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[])
    rt = DualRuntimeManager(lab, host)
    rt.start()
    try:
        wait_until(lambda: PRODUCED.get("a", 0) >= 10, what="10 polls")
    finally:
        report = rt.shutdown()
    [a] = report.instruments
    assert not a["ok"] and not report.ok
    assert a["refused_samples"] > 0 and a["samples"] + a["refused_samples"] == a["produced"]
    assert a["errors"] > 0
    assert "converter 'lossy' (lossy-conv 0.3) " in a["last_error"]
    assert re.search(says, a["last_error"]), a["last_error"]
    assert not [al for al in rt.alarms if al["what"] == "bridge"]  # not the bridge's fault
    assert rt.bridge is not None and rt.bridge.lost == 0


def bridge_with(convert: Any) -> tuple[MeasurementBridge, Broadcast[Any], Any,
                                       list[tuple[str, int, str]]]:
    refused: list[tuple[str, int, str]] = []
    v2_in: Broadcast[Any] = Broadcast("v2")
    bridge = MeasurementBridge({("a", "x"): X, ("a", "y"): Y}, v2_in, convert, window_s=0.01,
                               on_refused=lambda iid, n, msg: refused.append((iid, n, msg)),
                               converter="converter 'odd' (odd-conv 2.0)")
    return bridge, v2_in, bridge.unified.subscribe("out", lossless=True, capacity=100), refused


def misrouted(rows: Any, spec: ChannelSpec) -> pa.RecordBatch:
    """Every channel's samples come out labelled as a's x."""
    return rows_to_batch([Measurement("a", "x", r.timestamp_ns, r.data) for r in rows], X)


def doubled(rows: Any, spec: ChannelSpec) -> pa.RecordBatch:
    return rows_to_batch([*rows, *rows], spec)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("convert,says", [
    (misrouted, "returned a batch of a.x for a.y"),
    (doubled, r"returned 2 row\(s\) for 1 sample\(s\)")])
def test_a_converters_batch_of_another_channel_or_size_is_refused(convert, says) -> None:
    """Stored as it came, a's y samples were stored as x, and doubled rows twice."""
    bridge, v2_in, out, refused = bridge_with(convert)
    bridge.start()
    try:
        for t in range(1, 4):
            v2_in.publish(("a", [Measurement("a", "y", t, Scalar(2.0, "V"))]))
        wait_until(lambda: sum(n for _, n, _ in refused) == 3, what="3 samples refused")
    finally:
        assert bridge.stop(5)
    assert out.get_many(0.0) == []  # nothing of it published
    assert all(iid == "a" for iid, _, _ in refused)
    assert re.search(r"rejected 1 sample\(s\) of channel 'y': converter 'odd' \(odd-conv "
                     r"2.0\) " + says, refused[0][2]), refused[0][2]
    assert bridge.rejected == 3 and bridge.lost == 0
