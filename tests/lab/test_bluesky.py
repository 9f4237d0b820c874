"""daqhub instruments as ophyd-async devices under bluesky's RunEngine (the [bluesky] extra)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lab_fakes import DETECTORS_TOML, FRAME_SHAPE, LIMITED_TOML, frame
from lab_texts import optics_lab

import daqhub
from daqhub.host import PluginHost
from daqhub.instrument import DriverError

bluesky = pytest.importorskip("bluesky", reason="the [bluesky] extra is not installed")
from bluesky import RunEngine  # noqa: E402
from bluesky.plans import count, scan  # noqa: E402
from bluesky.utils import FailedStatus  # noqa: E402

from daqhub.bluesky import LabMotor, devices  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def run_scan(RE: RunEngine, det: Any, motor: Any, start: float, stop: float, n: int
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    RE(scan([det], motor, start, stop, n), lambda name, doc: docs.append((name, doc)))
    events = [d for name, d in docs if name == "event"]
    (descriptor,) = [d for name, d in docs if name == "descriptor"]
    return events, descriptor


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_runengine_scan_gives_the_readings_of_lab_scan(tmp_path: Path, host: PluginHost,
                                                       flavor: str) -> None:
    with daqhub.open_lab(optics_lab(tmp_path, flavor), host=host, report=None) as lab:
        devs = devices(lab, settle_time=0.2)  # the 1830-C's reading lags, as for Lab.scan
        motor, det = devs["rotator"], devs["power"]
        assert isinstance(motor, LabMotor) and not isinstance(det, LabMotor)
        RE = RunEngine({})
        RE.md["daqhub_session"] = lab.session_id
        events, descriptor = run_scan(RE, det, motor, 0, 90, 10)
        angles = [e["data"]["rotator"] for e in events]
        powers = np.array([e["data"]["power-power"] for e in events])
        table = lab.scan("rotator", np.linspace(0, 90, 10), read=["power"], settle=0.2)
        counts = lab.rt.counts()
    assert len(events) == 10
    assert np.allclose(angles, np.linspace(0, 90, 10), atol=0.05)
    keys = descriptor["data_keys"]
    assert keys["power-power"]["units"] == "W" and keys["power-power"]["shape"] == []
    assert keys["rotator"]["units"] == "deg"
    config = descriptor["configuration"]["power"]["data"]
    assert config["power-model"] == "1830-C"
    expected = np.array(table["power.power"])
    assert np.allclose(powers, expected, rtol=0.03, atol=3e-6)
    assert counts["power"]["power"] > 0 and counts["rotator"]["position"] > 0  # streams went on


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_failing_move_fails_the_status_with_the_driver_error(
        tmp_path: Path, host: PluginHost, flavor: str) -> None:
    lab_text = optics_lab(tmp_path, "v2", extra=LIMITED_TOML.format(flavor=flavor))
    with daqhub.open_lab(lab_text, host=host, report=None, storage=False) as lab:
        devs = devices(lab)
        RE = RunEngine({})
        with pytest.raises(FailedStatus) as err:
            run_scan(RE, devs["power"], devs["stage"], 0, 40, 5)
    cause = err.value.__cause__
    assert type(cause) is DriverError
    assert str(cause) == "stage: 'PA30.0' [code 7]: limit switch hit"


def run_count(RE: RunEngine, det: Any, n: int) -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    RE(count([det], n), lambda name, doc: docs.append((name, doc)))
    return docs


def test_a_read_that_answers_some_channels_is_read_again(tmp_path: Path,
                                                         host: PluginHost) -> None:
    """A v4 read has the channels with new samples; an event without every described channel
    aborted the plan (EventModelValidationError), where Lab.measure asked again."""
    text = optics_lab(tmp_path, "v2", extra=DETECTORS_TOML)
    with daqhub.open_lab(text, host=host, report=None, storage=False) as lab:
        docs = run_count(RunEngine({}), devices(lab)["alternating"], 3)
    events = [d for name, d in docs if name == "event"]
    assert len(events) == 3
    for e in events:
        assert set(e["data"]) == {"alternating-a", "alternating-b"}
        assert all(isinstance(v, float) for v in e["data"].values())


def test_event_data_have_the_described_shape_and_are_json(tmp_path: Path,
                                                          host: PluginHost) -> None:
    """An image was a flat list of its pixels against the [h, w] described, and an integer
    numpy's int64: json.dumps of the event failed."""
    text = optics_lab(tmp_path, "v2", extra=DETECTORS_TOML)
    with daqhub.open_lab(text, host=host, report=None, storage=False) as lab:
        docs = run_count(RunEngine({}), devices(lab)["camera"], 2)
    json.dumps(docs)
    (descriptor,) = [d for name, d in docs if name == "descriptor"]
    keys = descriptor["data_keys"]
    assert tuple(keys["camera-frame"]["shape"]) == FRAME_SHAPE
    assert keys["camera-frames"]["dtype"] == "integer"
    for e in (d for name, d in docs if name == "event"):
        n = e["data"]["camera-frames"]
        assert type(n) is int
        assert np.shape(e["data"]["camera-frame"]) == FRAME_SHAPE
        assert np.array_equal(e["data"]["camera-frame"], frame(n))


def test_settings_that_cannot_be_read_fail_the_configuration(tmp_path: Path,
                                                             host: PluginHost) -> None:
    """They came as a configuration key ``<name>-error``, the error its value."""
    text = optics_lab(tmp_path, "v2", extra=DETECTORS_TOML)
    with daqhub.open_lab(text, host=host, report=None, storage=False) as lab:
        mute = devices(lab)["mute"]
        with pytest.raises(DriverError, match=r"^mute: 'CONF\?' \[code 5\]: no reply$"):
            asyncio.run(mute.read_configuration())

