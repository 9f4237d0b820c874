"""What the dashboard makes of odd data: numbers JSON cannot carry, alarms beyond the
runtime's list, a source whose data stop."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from web_fakes import ScriptedSource
from webtest import dashboard, wait_state

from daqhub.measurement import ChannelSpec
from daqhub.schema import build_batch
from daqhub.web.model import DashboardModel
from daqhub.web.server import DashboardServer
from daqhub.web.settings import WebSettings

TRACE = ChannelSpec("trace", "spectrum", "counts", shape=(16,), axis_unit="nm")
FRAME = ChannelSpec("frame", "image", "counts", "float64", shape=(4, 4))


@pytest.mark.timeout(30)
def test_a_nan_in_a_spectrum_s_axis_is_a_gap_and_the_page_goes_on() -> None:
    """One NaN in an axis (a calibration polynomial at its edge) made the state invalid JSON:
    the page stopped updating, for every instrument."""
    source = ScriptedSource(channels=(TRACE,))
    server = DashboardServer(source, WebSettings(port=0, rate_hz=20))
    server.start()
    try:
        x = np.linspace(400.0, 700.0, 16)
        x[0] = np.nan
        source.queued.append(build_batch("oven", TRACE, [time.time_ns()], [np.arange(16.0)],
                                         axes=[x], source="v4"))
        # wait_state reads the state as the page does: NaN is not JSON
        state = wait_state(server, lambda s: "oven/trace" in s["traces"], "the trace")
        trace = state["traces"]["oven/trace"]
        assert trace["x"][0] is None and trace["x"][1:] == pytest.approx(x[1:].tolist())
        assert trace["y"] == list(range(16))
        temp = state["instruments"][0]["values"]["temp"]
        wait_state(server, lambda s: s["instruments"][0]["values"]["temp"] != temp,
                   "the next temperature", since=state["tick"])
    finally:
        assert server.stop(10)


def test_an_infinite_or_nan_pixel_is_a_gap_and_the_others_keep_their_levels() -> None:
    """A flat-field corrected frame with a dead pixel (inf): the model sent -2**63 for it and
    the page drew the frame flat; a NaN pixel was drawn at the lowest level."""
    source = ScriptedSource(channels=(FRAME,))
    model = DashboardModel(source)
    img = np.arange(16.0).reshape(4, 4) * 100  # 0 .. 1500 counts
    img[0, 0], img[0, 1] = np.inf, np.nan
    source.queued.append(build_batch("oven", FRAME, [time.time_ns()], [img], source="v4"))
    model.update()
    state = model.state(0)
    frame = state["frames"]["oven/frame"]
    assert (frame["lo"], frame["hi"]) == (200.0, 1500.0)  # of the finite pixels
    z = frame["z"]
    assert z[0][:2] == [None, None]
    levels = [v for row in z for v in row][2:]
    assert levels[0] == 0 and levels[-1] == 255 and levels == sorted(levels)
    assert len(set(levels)) == 14  # the gradient, not a flat square
    assert state["instruments"][0]["values"]["frame"] == "4x4, 200 counts .. 1500 counts"


@pytest.mark.timeout(90)
def test_alarms_keep_coming_after_the_runtime_s_list_is_full(tmp_path: Path) -> None:
    """The runtime keeps its newest 500 alarms; the page counted the list's length, which
    stops growing at 500, and never showed another alarm."""
    from daqhub.runtime.dual import ALARMS_KEPT

    with dashboard(tmp_path, WebSettings(port=0)) as (rt, server):
        for i in range(ALARMS_KEPT):
            rt._alarm("test", f"alarm {i}")
        full = wait_state(server, lambda s: s["alarms"] and s["alarms"][-1]["message"]
                          == f"alarm {ALARMS_KEPT - 1}", "the runtime's list of alarms full")
        for i in (ALARMS_KEPT, ALARMS_KEPT + 1):
            rt._alarm("test", f"alarm {i}")
            full = wait_state(server, lambda s: s["alarms"], f"alarm {i} on the page",
                              since=full["tick"])
            assert [a["message"] for a in full["alarms"]] == [f"alarm {i}"]


def test_the_rows_follow_the_source_s_health_when_its_data_fail() -> None:
    """A remote run killed: taking its data raised before the health was read, and the rows
    kept saying "running" for good."""
    source = ScriptedSource()
    model = DashboardModel(source)
    model.update()
    assert model.state(0)["instruments"][0]["state"] == "running"
    source.fail, source.state = True, "link lost"
    with pytest.raises(OSError, match="link to the remote run lost"):
        model.update()
    assert model.state(0)["instruments"][0]["state"] == "link lost"
