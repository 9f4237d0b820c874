"""Commands to an instrument cut off from its hardware (its bus adapter pulled): refused at
once, saying since when and why, in both flavors.

Found by an audit: with the adapter out, ``lab["rot"].position()`` waited its whole limit
(60 s), then said ``no result within 60 s (busy in 'connect')``; a scan did the same on its
first move, and its halt then waited 5 s more for a stop the mover could not run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from lab_texts import optics_lab
from polling import wait_until

import daqhub
from daqhub.host import PluginHost
from daqhub.lab import CommandNotSent
from daqhub.runtime.dual import DualRuntimeManager

pytestmark = pytest.mark.timeout(120)

#: the message (pytest matches it with the scan's note after it, on a line of its own)
CUT_OFF = (r"^rotator is reconnecting since \d\d:\d\d:\d\d \(\d+ s ago; last error: "
           r"(read|connect) failed: rotator: .* disconnected.*\); {command} not sent(\n|$)")


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_command_to_a_reconnecting_instrument_is_not_sent_and_says_why(
        tmp_path: Path, host: PluginHost, sim_endpoint: Any, flavor: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = optics_lab(tmp_path, flavor)
    found = re.search(r'port = "(sim://elliptec\?[^"]+)"', text)
    assert found is not None
    bus = found.group(1)
    stops: list[str] = []
    submit = DualRuntimeManager.submit

    def spy(rt: DualRuntimeManager, iid: str, method: str, *args: Any, **kwargs: Any) -> Any:
        fut = submit(rt, iid, method, *args, **kwargs)
        if method == "stop":  # sent: it was not refused
            stops.append(iid)
        return fut
    monkeypatch.setattr(DualRuntimeManager, "submit", spy)
    with daqhub.open_lab(text, host=host, report=None) as lab:
        rotator = lab.rt.health_of("rotator")
        wait_until(lambda: rotator.measurements > 0, "a first position", timeout=30)
        sim_endpoint(bus).faults.disconnect()
        wait_until(lambda: rotator.state == "reconnecting", "the mount reconnecting", timeout=30)
        with pytest.raises(CommandNotSent, match=CUT_OFF.format(command="position")):
            lab["rotator"].position()
        with pytest.raises(CommandNotSent, match=CUT_OFF.format(command="move_absolute")) as info:
            lab.scan("rotator", [10.0, 20.0], read=["power"])
        assert "ended at step 0; the 0 row(s) taken are stored" in str(info.value.__notes__)
        assert stops == []  # the failed scan's halt waits for no stop that could not run
        sim_endpoint(bus).faults.reconnect()
        wait_until(lambda: rotator.state == "running", "the mount back", timeout=30)
        assert lab["rotator"].position() == pytest.approx(0.0, abs=0.01)
