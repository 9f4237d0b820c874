"""acme.tc1 in a running lab, and daqhub-sims' conformance kit on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daqhub.capabilities import missing_methods
from daqhub.config import ConfigError
from daqhub.plugins.converters import batch_to_rows
from daqhub_sims.checks import case

from daqhub_acme.plugin import conformance

LAB = """
[daqhub]
output_dir = "data"

[[v2.instruments]]
id = "tc_old"
type = "acme.tc1"
port = "{port}"
poll_hz = 20

[[v4.instruments]]
id = "tc_new"
type = "acme.tc1"
port = "{port}"
setpoint_k = 250.0
poll_hz = 20
"""


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


def test_registered_in_both_flavors_with_what_they_declare(daqhub_host: Any) -> None:
    assert not [p for p in daqhub_host.problems if p.distribution == "daqhub-acme"]
    for flavor in ("v2", "v4"):
        itype = daqhub_host.instrument_type("acme.tc1", flavor)
        assert itype is not None and itype.problems() == []
        assert itype.capabilities == ("Readable",)
        assert missing_methods(itype.factory, "Readable") == []
        assert [(c.name, c.unit) for c in itype.channels_for({})] == [
            ("temperature", "K"), ("heater", "%")]


def test_lab_file_checks_the_setpoint(daqhub_lab: Callable[[str], Any]) -> None:
    with pytest.raises(ConfigError) as info:
        daqhub_lab(LAB.format(port="sim://acmetemp").replace("250.0", "900.0"))
    assert "setpoint_k" in str(info.value) and "900" in str(info.value)


def test_validate_refuses_a_routine_setpoint_the_tc1_cannot_take(
        daqhub_lab: Callable[[str], Any]) -> None:
    """``["set_setpoint", 900]`` (the lab guide's example) passed validate; the routine
    failed when the TC-1 answered ERR 3, after the steps before it had run."""
    routine = '\n[[routines]]\ninstrument = "tc_new"\nsteps = [["sleep", 0.5], STEP]\n'
    lab = LAB.format(port="sim://acmetemp") + routine
    with pytest.raises(ConfigError) as info:
        daqhub_lab(lab.replace("STEP", '["set_setpoint", 900]'))
    [problem] = info.value.problems
    assert problem.line == lab.splitlines().index(routine.splitlines()[-1]) + 1
    assert "set_setpoint: setpoint must be a number from 3 to 500 K, got 900" in problem.message
    daqhub_lab(lab.replace("STEP", '["set_setpoint", 300]'))  # in range: fine


@pytest.mark.timeout(20)
def test_a_v2_and_a_v4_tc1_share_one_port_in_a_run(
        daqhub_lab: Callable[[str], Any], daqhub_run: Callable[..., Any],
        sim_url: Callable[..., str], tmp_path: Path) -> None:
    lab = daqhub_lab(LAB.format(port=sim_url("acmetemp", tau=0)))
    rt = daqhub_run(lab)  # storage off: nothing is written
    live = rt.subscribe("test", lossless=True)

    def counts() -> dict[str, dict[str, int]]:
        return rt.counts()  # type: ignore[no-any-return]

    wait_for(lambda: all(counts().get(i, {}).get(ch, 0) >= 3 for i in ("tc_old", "tc_new")
                         for ch in ("temperature", "heater")), 10.0, "3 samples of each channel")
    # One device behind both: the v2 instrument sees the setpoint the v4 one set on start,
    # and a command through either flavor reaches it.
    assert rt.call("tc_old", "setpoint", timeout=5.0) == 250.0
    rt.call("tc_new", "set_setpoint", 300.0, timeout=5.0)
    assert rt.call("tc_old", "setpoint", timeout=5.0) == 300.0

    rows = [r for b in live.get_many(1.0) for r in batch_to_rows(b)]
    assert {(r.instrument_id, r.channel, r.data.unit) for r in rows} == {
        ("tc_old", "temperature", "K"), ("tc_old", "heater", "%"),
        ("tc_new", "temperature", "K"), ("tc_new", "heater", "%")}
    assert {r.source for r in rows} == {"v2", "v4"}

    report = rt.shutdown()
    assert report.ok, report.as_dict()
    assert not [h for h in rt.health()["instruments"] if h["errors"] or h["state"] == "failed"]
    assert lab.output_dir.is_relative_to(tmp_path)
    assert not lab.output_dir.exists()  # storage off: not even a session directory


@pytest.mark.timeout(60)
def test_conformance(daqhub_conformance: Any, sim_url: Callable[..., str],
                     sim_endpoint: Callable[[str], Any]) -> None:
    daqhub_conformance.check("daqhub-acme", [case(spec, sim_url, sim_endpoint)
                                             for spec in conformance()])
