"""Commands to an instrument cut off from its hardware (its bus adapter pulled), in both
flavors: one that runs out of time says the instrument is reconnecting, since when and why;
one still waiting when the port is back runs then.

Found by an audit: with the adapter out, ``lab["rot"].position()`` waited its limit, then said
``no result within 60 s (busy in 'connect')`` (v2) or ``(busy in 'its poll loop')``.
(Refusing such commands at once was tried and dropped: a repeating routine then failed for
good at a one-second blip, and so did a script's first command when the first connect
failed once.)
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

pytestmark = pytest.mark.timeout(120)

#: what the command's TimeoutError says it waited behind
CUT_OFF = (r"^rotator\.position: no result within 1 s \(rotator is reconnecting since "
           r"\d\d:\d\d:\d\d \(\d+ s ago; last error: (read|connect) failed: rotator: .*"
           r"disconnected.*\)\)$")


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_command_waiting_behind_a_reconnect_says_so_and_runs_when_the_port_is_back(
        tmp_path: Path, host: PluginHost, sim_endpoint: Any, flavor: str) -> None:
    text = optics_lab(tmp_path, flavor)
    found = re.search(r'port = "(sim://elliptec\?[^"]+)"', text)
    assert found is not None
    bus = found.group(1)
    with daqhub.open_lab(text, host=host, report=None) as lab:
        rotator = lab.rt.health_of("rotator")
        wait_until(lambda: rotator.measurements > 0, "a first position", timeout=30)
        sim_endpoint(bus).faults.disconnect()
        wait_until(lambda: rotator.state == "reconnecting", "the mount reconnecting", timeout=30)
        handle = lab["rotator"]
        with pytest.raises(TimeoutError, match=CUT_OFF):
            handle.result(handle.send("position"), "position", 1.0)
        waiting = handle.send("position")  # still queued when the port comes back
        sim_endpoint(bus).faults.reconnect()
        assert handle.result(waiting, "position", 30.0) == pytest.approx(0.0, abs=0.01)
        wait_until(lambda: rotator.state == "running", "the mount back", timeout=30)
        assert handle.position() == pytest.approx(0.0, abs=0.01)
