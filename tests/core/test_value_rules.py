"""What a sample's value, metadata and channel name may be: refused with a name, never changed.

- a number a channel's dtype cannot hold (1e308 in float32 becomes inf, 16777217 in float32
  and 2**53 + 1 in float64 become their neighbours) is refused in both flavors, naming the
  channel and the value; rounding a float to float32 stays what a float32 channel means;
- per-sample metadata holding numpy numbers is stored as their values in both flavors, and
  metadata JSON has no value for is refused naming the instrument, channel and key;
- a channel name storage cannot use fails the ChannelSpec (so the plugin that declares it,
  when it loads), by the one rule storage checks ids with.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daqhub.driver import Sample, Session, flavor_class
from daqhub.host import PluginError, PluginHost
from daqhub.measurement import (
    ChannelSpec,
    DataError,
    Measurement,
    Scalar,
    Spectrum,
    scalar_fits,
)
from daqhub.plugins.converters import rows_to_batch
from daqhub.schema import build_batch, scalar_rows
from daqhub.specs import InstrumentContext
from daqhub.storage import check_id

CHANNELS = [ChannelSpec("f64", "scalar", "V"), ChannelSpec("f32", "scalar", "V", "float32"),
            ChannelSpec("x", "spectrum", "V", "float64", (2,), axis_unit="s")]


def polled(flavor: str, values: dict[str, Any]) -> list[Any]:
    """What one poll returning ``values`` stores in ``flavor``: each channel's batch as rows of
    (value, metadata JSON), through what the runtime runs (v2: the session's ``read()``,
    then the bridge's converter; v4: the actor's ``read()``). A DataError of either goes out.
    """
    class Meter(Session):
        type_name = "test.meter"
        description = "test meter"
        transport = "none"
        channels = CHANNELS

        def poll(self) -> dict[str, Any]:
            return values

    ctx = InstrumentContext("m", "test.meter", {}, CHANNELS)
    inst = flavor_class(Meter, flavor)(ctx)  # type: ignore[arg-type]
    if flavor == "v2":
        specs = {c.name: c for c in CHANNELS}
        batches = [rows_to_batch([m], specs[m.channel]) for m in inst.read()]
    else:
        batches = asyncio.run(inst.read())
    return [(b.column("value").to_pylist()[0], b.column("metadata").to_pylist()[0])
            for b in batches]


# --- numbers a channel cannot hold ------------------------------------------------------

@pytest.mark.parametrize("channel,value,stored", [
    ("f32", 1e308, "inf"), ("f32", np.float64(-1e39), "-inf"),
    ("f32", 16777217, "16777216.0"), ("f32", np.int32(2**31 - 1), "2147483648.0"),
    ("f64", 2**53 + 1, "9007199254740992.0"), ("f64", np.int64(2**53 + 1), "9007199254740992.0"),
    ("f64", np.uint64(2**64 - 1), "1.8446744073709552e+19")])
def test_a_number_the_channel_would_change_is_refused_by_both_flavors(
        channel: str, value: Any, stored: str) -> None:
    """Both flavors stored these changed (inf, a neighbouring count), numpy's overflow
    warning the only sign. Refused, the error names the channel, the value and what the
    dtype would have made of it."""
    dtype = "float32" if channel == "f32" else "float64"
    errors = []
    for flavor in ("v2", "v4"):
        with pytest.raises(DataError) as info:
            polled(flavor, {channel: value})
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert errors[0].startswith(f"channel m.{channel} is declared {dtype}, got "
                                f"{type(value).__name__} ")
    assert errors[0].endswith(f", which {dtype} would store as {stored}")


@pytest.mark.filterwarnings("error")  # numpy's overflow warning was the only sign
@pytest.mark.parametrize("channel,value,stored", [
    ("f32", 0.1, float(np.float32(0.1))), ("f32", 16777216, 16777216.0),
    ("f32", 3.4028235e38, 3.4028234663852886e38), ("f32", float("inf"), float("inf")),
    ("f32", 1e-50, 0.0), ("f32", np.int16(-32768), -32768.0),
    ("f64", 2**53, 2.0**53), ("f64", -(2**62), -(2.0**62)), ("f64", np.int32(7), 7.0)])
def test_a_number_the_channel_holds_at_its_precision_is_stored(
        channel: str, value: Any, stored: float) -> None:
    """A float rounded to float32 (0.1, the largest float32, a value below its smallest) is
    what a float32 channel means; an integer the float holds exactly is stored as itself."""
    assert polled("v2", {channel: value}) == polled("v4", {channel: value}) == [(stored, None)]


def test_the_v4_fast_path_and_a_handwritten_v2_row_refuse_alike() -> None:
    """``ScalarRows`` packs with ``struct``, which rounds an int into a float and let a v4
    row through that ``build_batch`` would refuse; a v2 driver's own Measurement goes
    through the converter, which asks the same rule."""
    spec = ChannelSpec("f32", "scalar", "V", "float32")
    rows = scalar_rows("m", spec, "v4")
    assert rows(1, 16777216).column("value").to_pylist() == [16777216.0]  # the fast path
    for value in (16777217, 2**100 + 1, 1e308):
        assert not scalar_fits(value, "float32")
        with pytest.raises(DataError, match=r"^channel m\.f32 is declared float32, got "):
            rows(2, value)
        with pytest.raises(DataError, match=r"^channel m\.f32 is declared float32, got "):
            rows_to_batch([Measurement("m", "f32", 2, Scalar(value, "V"))], spec)
    assert rows(3, 5).column("value").to_pylist() == [5.0]  # the block goes on


# --- metadata -----------------------------------------------------------------------------

def test_numpy_numbers_in_metadata_are_stored_as_their_values_by_both_flavors() -> None:
    """``{"gain": np.int64(3)}`` (what numpy arithmetic gives) made v2 refuse the sample,
    blaming daqhub's converter, and crashed the v4 actor over and over."""
    meta = {"gain": np.int64(3), "ratio": np.float32(0.5), "on": np.bool_(True),
            "nested": {"n": [np.uint8(7)]}, "plain": 2.5}
    want = json.dumps({"gain": 3, "ratio": 0.5, "on": True, "nested": {"n": [7]}, "plain": 2.5})
    for flavor in ("v2", "v4"):
        assert polled(flavor, {"f64": Sample(1.5, meta)}) == [(1.5, want)], flavor
        spectrum = Spectrum(np.array([1.0, 2.0]), np.array([0.0, 1.0]), "V", "s")
        assert polled(flavor, {"x": Sample(spectrum, meta)})[0][1] == want, flavor


class Foo:
    pass


@pytest.mark.parametrize("meta,why", [
    ({"gain": np.arange(3)}, "metadata 'gain' is a numpy array, not a JSON value"),
    ({"who": Foo()}, "metadata 'who' is a Foo, not a JSON value"),
    ({"ok": 1, "raw": {"a": [Foo()]}}, "metadata 'raw' holds a Foo, not a JSON value"),
    ({"t": b"\x00"}, "metadata 't' is a bytes, not a JSON value")])
def test_metadata_json_has_no_value_for_is_refused_naming_the_key(meta: dict[str, Any],
                                                                  why: str) -> None:
    for flavor in ("v2", "v4"):
        with pytest.raises(DataError, match=rf"^channel m\.f64: {why}$"):
            polled(flavor, {"f64": Sample(1.5, meta)})
    spec = ChannelSpec("c", "scalar", "V")  # a block of rows, as a v2 Columns becomes
    with pytest.raises(DataError, match=rf"^channel i\.c: {why}$"):
        build_batch("i", spec, [1, 2], np.array([1.0, 2.0]), metadata=[None, meta])


# --- channel names ------------------------------------------------------------------------

NAMES = ["température", "温度", "con", "NUL", "x" * 65, "-x", "_daqhub", "a b", "a.b",
         "ok", "x" * 64, "Stage-2", "_raw"]


@pytest.mark.parametrize("name", NAMES)
def test_a_channel_name_is_what_storage_can_name_a_file(name: str) -> None:
    """ChannelSpec took unicode letters, Windows device names and long names, which storage
    refused at every run's start; now both ask one rule, and say the same."""
    why = check_id(name, "name")
    if why is None:
        assert ChannelSpec(name, "scalar", "V").name == name
        return
    with pytest.raises(ValueError) as info:
        ChannelSpec(name, "scalar", "V")
    assert str(info.value) == f"channel {name!r}: {why}"


def test_a_suggested_name_is_the_name_without_its_accents_or_none() -> None:
    assert check_id("température", "name").endswith("; try 'temperature'")  # type: ignore[union-attr]
    assert "try" not in check_id("温度", "name")  # type: ignore[operator]  # not 'instrument'


GROUP = "daqhub_test_value_rules"
PLUGIN = """
from daqhub.driver import Session, instrument_types
from daqhub.hookspecs import hookimpl
from daqhub.measurement import ChannelSpec

class Meter(Session):
    type_name = "names.meter"
    description = "a meter with a channel storage cannot name"
    transport = "none"
    channels = [ChannelSpec("température", "scalar", "degC")]

@hookimpl
def daqhub_instrument_types():
    return instrument_types(Meter)
"""


@pytest.fixture
def names_plugin(tmp_path: Path) -> Any:
    """A distribution, as pip leaves one, whose plugin declares the channel 'température'."""
    (tmp_path / "dq_names_plugin.py").write_text(PLUGIN)
    info = tmp_path / "dq_names-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dq-names\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nnames = dq_names_plugin\n")
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))
    sys.modules.pop("dq_names_plugin", None)


def test_the_plugin_host_names_the_plugin_and_the_channel(names_plugin: None) -> None:
    host = PluginHost()
    host.load_entry_points(GROUP)
    assert ("names.meter", "v2") not in host.instrument_types()
    (problem,) = [p for p in host.problems if p.distribution == "dq-names"]
    assert "channel 'température': name 'température' contains 'é'" in problem.error
    with pytest.raises(PluginError, match="dq-names.*température"):
        PluginHost(strict=True).load_entry_points(GROUP)
