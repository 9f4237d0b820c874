"""What a script gets from an instrument: its settings, and readings that are not one float.

Each test here failed on the code before it: ``settings()`` gave a failure back as the
settings ``{"error": ...}`` (a timeout as ``{"error": "TimeoutError: "}``) where the same
command through ``call("settings")`` raised, and a points table kept an image as a flat
row of pixels that said nothing of its shape.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from lab_fakes import DETECTORS_TOML, FRAME_SHAPE, GATED_TOML, GatedV2, frame
from lab_texts import optics_lab

import daqhub
from daqhub import command_limits
from daqhub.host import PluginHost
from daqhub.instrument import DriverError

pytestmark = pytest.mark.timeout(120)

MUTE_ERROR = "mute: 'CONF?' [code 5]: no reply"


def stored_settings(lab: daqhub.Lab, iid: str, reason: str) -> list[dict[str, object]]:
    return [json.loads(text) for _, i, r, text in lab.records.settings if (i, r) == (iid, reason)]


def test_settings_raise_what_the_settings_command_raises(tmp_path: Path,
                                                         host: PluginHost) -> None:
    text = optics_lab(tmp_path, "v2", extra=DETECTORS_TOML)
    with daqhub.open_lab(text, host=host, report=None) as lab:
        with pytest.raises(DriverError) as called:
            lab["mute"].call("settings")
        with pytest.raises(DriverError) as asked:
            lab["mute"].settings()
        assert type(asked.value) is type(called.value) and str(asked.value) == MUTE_ERROR

        async def awaited() -> None:
            with pytest.raises(DriverError, match=r"^mute: 'CONF\?' \[code 5\]: no reply$"):
                await lab["mute"].settings()
        asyncio.run(awaited())
        assert lab["power"].settings()["model"] == "1830-C"
        # the records keep the snapshot that could not be taken, as they always did
        assert stored_settings(lab, "mute", "requested") == [
            {"error": f"DriverError: {MUTE_ERROR}"}] * 2
        assert stored_settings(lab, "power", "requested")[-1]["model"] == "1830-C"


def test_settings_wait_as_long_as_any_command(tmp_path: Path, host: PluginHost,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An instrument busy past the wait: the Lab API's own TimeoutError, saying with what."""
    monkeypatch.setattr(command_limits, "COMMAND_TIMEOUT_S", 0.5)
    GatedV2.moving.clear()
    GatedV2.gate.clear()
    try:
        with daqhub.open_lab(optics_lab(tmp_path, "v2", extra=GATED_TOML), host=host,
                             report=None) as lab:
            lab["gated"].send("move_absolute", 1.0)
            assert GatedV2.moving.wait(30)
            with pytest.raises(TimeoutError, match=r"^gated\.settings: no result within 0\.5 s "
                                                   r"\(busy in 'move_absolute'\)$"):
                lab["gated"].settings()
            GatedV2.gate.set()
    finally:
        GatedV2.gate.set()


def test_an_image_in_a_points_table_keeps_its_shape(tmp_path: Path, host: PluginHost) -> None:
    text = optics_lab(tmp_path, "v2", extra=DETECTORS_TOML)
    with daqhub.open_lab(text, host=host, report=None) as lab:
        table = lab.measure(["camera"], repeat=2)
        v4_dir = lab.output_dirs()["v4"]
    stored = pa.ipc.open_file(v4_dir / "points-measure-1.arrow").read_all()
    for t in (table, stored):
        field = t.schema.field("camera.frame")
        assert field.metadata[b"unit"] == b"counts"
        shape = tuple(json.loads(field.metadata[b"shape"]))
        assert shape == FRAME_SHAPE
        frames = t["camera.frames"].to_pylist()
        for pixels, n in zip(t["camera.frame"].to_pylist(), frames, strict=True):
            assert np.array_equal(np.reshape(pixels, shape), frame(n))
        assert frames[1] > frames[0] > 0
