"""A toolkit poll's value that its channel cannot hold is refused alone, alike in both
flavors: that sample is not stored, the instrument counts it refused (so the run is not
ok) with a message naming the instrument, the channel and what was wrong, and the poll's
other values are stored.

Until 2026-12-07 one such value lost the whole poll (the good values of other channels
too) as a failed read, and the run said ok; the v4 flavor stored a value in another unit
than its channel's (5 mV as 5 V) without a word.
"""

from __future__ import annotations

import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import daqhub
from daqhub.driver import Sample, Session, instrument_types
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec, Image, Scalar, Spectrum

CHANNELS = [ChannelSpec("good", "scalar", "V"), ChannelSpec("n", "scalar", "", "int64"),
            ChannelSpec("v", "scalar", "V"),
            ChannelSpec("sp", "spectrum", "W", "float64", (None,), axis_unit="nm"),
            ChannelSpec("im", "image", "adu", "uint16", (2, 2))]
POLLS = 3  # the bad value comes in the second


def fine(k: int) -> dict[str, Any]:
    """Poll ``k``'s values, each as its channel declares it (a bare number, a Scalar in the
    declared unit, a Sample: the ways a driver may say it)."""
    return {"good": float(k) if k != 2 else Scalar(2.0, "V"), "n": Sample(k, {"k": k}),
            "v": Scalar(k / 10, "V"),
            "sp": Spectrum(np.array([float(k)]), np.array([500.0]), "W", "nm"),
            "im": Image(np.full((2, 2), k, np.uint16), "adu")}


def run_both_flavors(tmp_path: Path, bad: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A lab of one toolkit instrument per flavor (``a2``, ``a4``) whose poll 2 has ``bad``
    in place of those channels' values; the report and the stored tables once each
    instrument's driver has made all its polls."""
    done = {"a2": threading.Event(), "a4": threading.Event()}

    class Scripted(Session):
        type_name = "test.refusals"
        description = "a scripted poll"
        transport = "none"
        channels = CHANNELS

        def poll(self) -> dict[str, Any]:
            self.k = getattr(self, "k", 0) + 1
            if self.k > POLLS:  # the runtime took the last poll's values before this one
                done[self.id].set()
                return {}
            return {**fine(self.k), **bad} if self.k == 2 else fine(self.k)

    host = PluginHost()
    host.load_entry_points()
    assert host.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(
        lambda: instrument_types(Scripted))), "refusal-tests", "refusal-tests", "0")
    lab_text = f'[daqhub]\noutput_dir = "{tmp_path}"\n' + "".join(
        f'[[{flavor}.instruments]]\nid = "a{flavor[1]}"\ntype = "test.refusals"\n'
        f'poll_hz = 100\n' for flavor in ("v2", "v4"))
    with daqhub.open_lab(lab_text, host=host, report=None) as lab:
        for iid, event in done.items():
            assert event.wait(10), f"{iid} did not make its {POLLS} polls within 10 s"
        session = next(iter(lab.output_dirs().values()))
    return lab.report, daqhub.read_session(session)


def values(table: Any) -> list[Any]:
    return table.column("value").to_pylist()


@pytest.mark.parametrize("bad,why", [
    ({"n": 2 ** 63}, "channel {i}.n is declared int64, got int 9223372036854775808"),
    ({"n": 1.5}, "channel {i}.n is declared int64, got float 1.5"),
    ({"v": Scalar(5.0, "mV")}, "channel {i}.v is declared in 'V', got 'mV'"),
    ({"v": np.array([1.0, 2.0])}, "channel {i}.v is declared float64, got ndarray array([1., 2.])"),
    ({"sp": Spectrum(np.array([1.0]), np.array([500.0]), "mW", "nm")},
     "channel {i}.sp is declared in 'W', got 'mW'"),
    ({"sp": Spectrum(np.array([1.0]), np.array([0.5]), "W", "um")},
     "channel {i}.sp: axis declared in 'nm', got 'um'"),
    ({"im": Image(np.zeros((2, 2), np.uint16), "e-")},
     "channel {i}.im is declared in 'adu', got 'e-'"),
    ({"im": Image(np.zeros((3, 3), np.uint16), "adu")},
     "channel {i}.im is declared (2, 2), got an image of (3, 3)"),
], ids=["int beyond int64", "float for int", "scalar in mV", "array for a scalar",
        "spectrum in mW", "axis in um", "image in e-", "image of another shape"])
def test_a_value_its_channel_cannot_hold_is_refused_alone_and_named_in_both_flavors(
        tmp_path: Path, bad: dict[str, Any], why: str) -> None:
    [channel] = bad
    report, stored = run_both_flavors(tmp_path, bad)
    assert not report.ok
    outcomes = {i["id"]: i for i in report.as_dict()["instruments"]}
    for iid in ("a2", "a4"):
        outcome = outcomes[iid]
        assert (outcome["refused_samples"], outcome["errors"], outcome["ok"]) == (1, 1, False)
        assert outcome["problem"].startswith("1 of its samples refused")
        expected = f"rejected 1 sample(s) of channel '{channel}': {why.format(i=iid)}"
        assert outcome["last_error"].startswith(expected), outcome["last_error"]
        assert outcome["samples"] == POLLS * len(CHANNELS) - 1
        # the poll's other values are stored; of the refused channel, the other polls'
        assert values(stored[f"{iid}.good"]) == [1.0, 2.0, 3.0]
        assert values(stored[f"{iid}.n"]) == ([1, 3] if channel == "n" else [1, 2, 3])
        assert values(stored[f"{iid}.v"]) == ([0.1, 0.3] if channel == "v" else [0.1, 0.2, 0.3])
        assert stored[f"{iid}.sp"].num_rows == (2 if channel == "sp" else 3)
        assert stored[f"{iid}.im"].num_rows == (2 if channel == "im" else 3)
    # one rule, one text: the flavors' messages differ in the instrument's id alone
    assert outcomes["a2"]["last_error"] == outcomes["a4"]["last_error"].replace("a4.", "a2.")


def test_a_channel_the_poll_does_not_declare_is_refused_alone_in_both_flavors(
        tmp_path: Path) -> None:
    """A poll returning a channel it does not declare (a typo) raised a KeyError: a crash,
    5 restarts, the instrument failed and every poll's good values lost."""
    report, stored = run_both_flavors(tmp_path, {"tpyo": 1.0})
    assert not report.ok
    outcomes = {i["id"]: i for i in report.as_dict()["instruments"]}
    for iid in ("a2", "a4"):
        outcome = outcomes[iid]
        assert (outcome["state"], outcome["restarts"], outcome["refused_samples"]) == \
            ("stopped", 0, 1), outcome
        assert outcome["last_error"] == (
            f"rejected 1 sample(s) of channel 'tpyo': {iid}: its poll returned channel "
            "'tpyo', which it does not declare (declared: good, n, v, sp, im)")
        assert values(stored[f"{iid}.good"]) == [1.0, 2.0, 3.0]


def test_values_as_declared_are_all_stored_and_the_run_is_ok(tmp_path: Path) -> None:
    """The check costs nothing it should not: a bare number, a Scalar in the declared unit, a
    Sample with metadata, a spectrum and an image as declared all pass, in both flavors."""
    report, stored = run_both_flavors(tmp_path, {})
    assert report.ok, report.failed
    for iid in ("a2", "a4"):
        assert values(stored[f"{iid}.good"]) == [1.0, 2.0, 3.0]
        assert values(stored[f"{iid}.n"]) == [1, 2, 3]
        assert values(stored[f"{iid}.v"]) == [0.1, 0.2, 0.3]
        assert values(stored[f"{iid}.sp"]) == [[1.0], [2.0], [3.0]]
        assert stored[f"{iid}.im"].num_rows == 3
