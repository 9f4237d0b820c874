"""``daqhub sim models`` (and the docs table generated from it) and ``sim serve``'s fault knobs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from daqhub_sims import model_reference, registry
from daqhub_sims.cli import main
from daqhub_sims.device import ManualClock
from daqhub_sims.elliptec import MODELS, ElliptecBus
from daqhub_sims.endpoint import Endpoint, EndpointDisconnected
from daqhub_sims.esp300 import ESP300
from daqhub_sims.fault_schedule import FaultPlan, FaultSchedule
from daqhub_sims.newport1830c import Newport1830C

pytestmark = pytest.mark.timeout(30)

DOC = Path(__file__).resolve().parents[2] / "docs" / "simulators.md"


# -- reference tables -------------------------------------------------------------------------
def test_docs_carry_the_generated_model_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    begin = text.find(model_reference.BEGIN)
    end = text.find(model_reference.END)
    assert 0 <= begin < end, f"{DOC} lacks the generated-section markers"
    assert text[begin:end + len(model_reference.END)] == model_reference.markdown(), (
        f"{DOC} is stale: replace its generated section with the output of "
        "`daqhub sim models --markdown`"
    )


def test_models_lists_every_option_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for cls, name in ((ElliptecBus, "elliptec"), (ESP300, "esp300"),
                      (Newport1830C, "newport1830c")):
        assert any(line.split()[:1] == [name] for line in lines), name
        for option in cls.OPTIONS:
            shown = "(none)" if option.default is None else option.default or '""'
            assert f"{option.name}={shown}" in out
    for name in MODELS:  # every Elliptec model with its capabilities
        assert f"\n    {name} " in out
    assert "latency=0" in out and "baud=0" in out


def test_models_of_one_model_and_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "esp300"]) == 0
    out = capsys.readouterr().out
    assert "travel=50" in out and "elliptec" not in out
    assert main(["models", "nosuch"]) == 2
    assert "unknown simulated device 'nosuch'" in capsys.readouterr().err


@pytest.mark.parametrize("cls", [ElliptecBus, ESP300, Newport1830C])
def test_declared_defaults_are_the_ones_the_device_runs_with(cls: type) -> None:
    """A device given every declared default explicitly behaves as one given none."""
    explicit = {o.name: o.default for o in cls.OPTIONS if o.default is not None}
    probe = {ElliptecBus: b"0in0gj0gv", ESP300: b"1VA?;1SL?;1SR?;1SN?;ZU\r",
             Newport1830C: b"D?\nW?\nE?\n"}[cls]
    replies = []
    for options in ({}, explicit):
        device = cls(options, ManualClock())
        device.feed(probe)
        replies.append(device.read())
    assert replies[0] == replies[1] != b""


def test_sim_url_rejects_nothing_it_documents() -> None:
    for name in registry.BUILT_IN_MODELS:
        made_by = registry.model_factory(name)
        explicit = {o.name: o.default for o in made_by.OPTIONS if o.default is not None}
        # every documented default, given explicitly, is accepted (create raises otherwise)
        assert type(registry.create(name, explicit, ManualClock())) is made_by, name


# -- fault schedule ---------------------------------------------------------------------------
def line() -> tuple[Endpoint, object]:
    endpoint = Endpoint(ElliptecBus({}, ManualClock()))
    return endpoint, endpoint.open_session()


def ask(session: object, timeout: float = 0.5) -> bytes:
    session.write(b"0gp")  # type: ignore[attr-defined]
    return session.read_until(b"\n", None, timeout)  # type: ignore[attr-defined, no-any-return]


def test_garbage_is_armed_each_period_before_the_next_reply() -> None:
    endpoint, session = line()
    schedule = FaultSchedule(endpoint.faults, FaultPlan(garbage_every=5, garbage=b"#!"), 100.0)
    assert schedule.due_in(100.0) == 5
    assert schedule.run_due(104.9) == []
    assert ask(session) == b"0PO00000000\r\n"
    assert schedule.run_due(105.0) == ["garbage: b'#!' armed before the next reply"]
    assert ask(session) == b"#!0PO00000000\r\n"
    assert ask(session) == b"0PO00000000\r\n"  # once per period
    assert schedule.due_in(105.0) == 5
    assert len(schedule.run_due(126.0)) == 1  # periods missed by a late loop are skipped
    assert schedule.due_in(126.0) == 4


def test_truncation_cuts_the_next_reply_so_its_terminator_never_comes() -> None:
    endpoint, session = line()
    schedule = FaultSchedule(endpoint.faults, FaultPlan(truncate_every=1, truncate_to=3), 0.0)
    schedule.run_due(1.0)
    assert ask(session, timeout=0.2) == b"0PO"
    assert ask(session) == b"0PO00000000\r\n"


def test_disconnect_pulls_the_adapter_for_its_time_then_plugs_it_back() -> None:
    endpoint, session = line()
    plan = FaultPlan(disconnect_every=10, disconnect_for=2)
    schedule = FaultSchedule(endpoint.faults, plan, 0.0)
    assert schedule.run_due(10.0) == ["disconnected for 2 s"]
    assert not endpoint.connected
    with pytest.raises(EndpointDisconnected):
        ask(session)
    assert schedule.due_in(10.0) == 2
    assert schedule.run_due(12.0) == ["reconnected"]
    assert ask(endpoint.open_session()) == b"0PO00000000\r\n"
    assert schedule.due_in(12.0) == 8


@pytest.mark.parametrize(
    ("plan", "message"),
    [({"garbage_every": 0}, "garbage-every must be a number of seconds > 0"),
     ({"truncate_every": -1}, "truncate-every"),
     ({"truncate_every": 1, "truncate_to": -1}, "truncate-to must be >= 0"),
     ({"disconnect_every": 2, "disconnect_for": 2}, "must be shorter than disconnect-every"),
     ({"garbage_every": 1, "garbage": b""}, "at least one byte")],
)
def test_bad_fault_plans_are_explained(plan: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan(**plan)  # type: ignore[arg-type]


# -- the serve command with faults ------------------------------------------------------------
def serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "daqhub_sims", "serve", "elliptec", "--tcp", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    """End the server; its stderr."""
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return err


def test_serve_injects_garbage_and_disconnects_on_schedule() -> None:
    proc = serve("--garbage-every", "0.2", "--garbage", r"\xfeJUNK",
                 "--disconnect-every", "1.5", "--disconnect-for", "0.5")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("socket://"), stop(proc)
        deadline = time.monotonic() + 20
        garbage_seen = dropped = recovered = False
        while not (garbage_seen and recovered):
            assert time.monotonic() < deadline, f"garbage {garbage_seen}, dropped {dropped}"
            try:
                with serial.serial_for_url(url, timeout=1) as port:
                    while not (garbage_seen and recovered):
                        port.write(b"0gp")
                        reply = port.read_until(b"\n")
                        garbage_seen |= reply == b"\xfeJUNK0PO00000000\r\n"
                        recovered |= dropped and reply.endswith(b"0PO00000000\r\n")
                        assert time.monotonic() < deadline
            except serial.SerialException:  # the server dropped us: the adapter is pulled
                dropped = True
    finally:
        err = stop(proc)
    assert "fault: disconnected for 0.5 s" in err
    assert "fault: reconnected" in err
    assert "fault: garbage" in err


def test_serve_refuses_a_bad_fault_plan() -> None:
    proc = serve("--disconnect-every", "1", "--disconnect-for", "2")
    err = proc.communicate(timeout=20)[1]
    assert proc.returncode == 2
    assert "must be shorter than disconnect-every" in err
