"""The Lab API's public face: opening, handles in both flavors, sync and asyncio, live data."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path
from typing import Any

import h5py
import pyarrow as pa
import pytest
from lab_fakes import BOTH, GATED_TOML, GatedV2
from lab_texts import optics_lab
from polling import wait_until

import daqhub
from daqhub.config import ConfigError, load
from daqhub.host import PluginHost
from daqhub.instrument import DriverError, DriverTimeoutError

pytestmark = pytest.mark.timeout(120)



def test_public_names_are_curated() -> None:
    assert {"open_lab", "open_lab_async", "Lab", "Instrument", "DriverError",
            "ConfigError"} <= set(daqhub.__all__)
    for name in daqhub.__all__:
        assert getattr(daqhub, name) is not None


def test_open_lab_reports_problems_like_validate(tmp_path: Path, host: PluginHost) -> None:
    text = optics_lab(tmp_path, "v2").replace('type = "elliptec.ell14"', 'type = "elliptec.ell41"')
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "ell41" in t)
    path = tmp_path / "lab.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as validated:  # what `daqhub validate` runs
        load(path, host)
    expected = [(p.line, p.message, p.suggestion) for p in validated.value.problems]
    assert expected[0][:2] == (line, "unknown instrument type 'elliptec.ell41'")
    for source, file in ((text, "<string>"), (path, str(path))):
        with pytest.raises(ConfigError) as err:
            daqhub.open_lab(source, host=host)
        assert [(p.line, p.message, p.suggestion) for p in err.value.problems] == expected
        assert {p.file for p in err.value.problems} == {file}
    data = tomllib.loads(text)
    with pytest.raises(ConfigError) as err:
        daqhub.open_lab(data, host=host)
    assert err.value.problems[0].file == "<dict>"
    assert "unknown instrument type 'elliptec.ell41'" in err.value.problems[0].message


def test_a_file_is_read_as_a_file_whatever_its_name_holds(
        tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """A str naming an existing file is that file: ``a=1.toml`` used to be parsed as TOML
    text (``<string>:1: not valid TOML``). Text is still text, even too long for a name."""
    text = optics_lab(tmp_path, "v2").replace('type = "elliptec.ell14"',
                                              'type = "elliptec.ell41"')
    path = tmp_path / "scan=3 [rotator].toml"
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    for source in (str(path), path.name, path):
        with pytest.raises(ConfigError) as err:
            daqhub.open_lab(source, host=host)
        assert {p.file for p in err.value.problems} == {str(source)}
        assert "unknown instrument type 'elliptec.ell41'" in err.value.problems[0].message
    for source in (text, text + "\n# " + "x" * 5000):
        with pytest.raises(ConfigError) as err:
            daqhub.open_lab(source, host=host)
        assert {p.file for p in err.value.problems} == {"<string>"}


def test_a_dict_may_hold_numpy_numbers(tmp_path: Path, host: PluginHost) -> None:
    """np.linspace's values in a routine were written as ``np.float64(0.0)``: "not valid
    TOML" for TOML the user never wrote; np.int64 was refused outright."""
    import numpy as np

    from daqhub.lab import load_lab_config

    data = tomllib.loads(optics_lab(tmp_path, "v2"))
    data["v2"]["instruments"][0]["poll_hz"] = np.int64(5)
    data["routines"] = [{"instrument": "rotator",
                         "steps": [["move_absolute", a] for a in np.linspace(0, 90, 4)]}]
    cfg = load_lab_config(data, host, None)
    assert cfg.routines[0]["steps"] == [["move_absolute", a] for a in (0.0, 30.0, 60.0, 90.0)]
    assert cfg.instruments()[0].block["poll_hz"] == 5
    data["routines"][0]["steps"].append(["move_absolute", np.array([1.0])])
    with pytest.raises(ConfigError, match=r"^<dict>: routines\[0\]\.steps\[4\]\[1\]: TOML "
                                          r"has no value of type numpy\.ndarray"):
        load_lab_config(data, host, None)


def test_handles_work_alike_in_both_flavors(tmp_path: Path, host: PluginHost) -> None:
    lab_text = optics_lab(tmp_path / "from-file", "v2", extra=BOTH)
    elsewhere = tmp_path / "elsewhere"
    with daqhub.open_lab(lab_text, host=host, report=None, meta={"notes": "api"},
                         output_dir=elsewhere) as lab:
        assert all(d.is_relative_to(elsewhere) for d in lab.output_dirs().values())
        assert set(lab.instruments) == {"power", "rotator", "stage2", "stage4"}
        for iid in ("stage2", "stage4"):
            h = lab[iid]
            h.move_absolute(12.5)
            assert h.wait_until_done(5) == 12.5
            with pytest.raises(DriverError, match="limit switch hit") as err:
                h.move_absolute(99)
            assert type(err.value) is DriverError
            with pytest.raises(AttributeError, match="no command 'move_absolut'.*move_absolute"):
                h.move_absolut(1)
        with pytest.raises(KeyError, match="no instrument 'stage'.*did you mean"):
            lab["stage"]
        assert lab["power"].settings()["model"] == "1830-C"
        assert "Motion" in lab["rotator"].capabilities
        with lab.subscribe(["stage4"]) as live:
            batches = live.get(5.0)
            assert batches and all(b.schema.metadata[b"daqhub.instrument_id"] == b"stage4"
                                   for b in batches)
        # latest() is fed by its own subscriber: it may be a batch behind this one, so wait
        latest = lab.latest("stage4", wait=5.0)
        assert latest["position"]["unit"] == "mm"
        lab.rt.channels[("stage4", "never")] = lab.rt.channels[("stage4", "position")]
        with pytest.raises(TimeoutError, match=r"stage4: no sample of never within 0.2 s "
                                               r"\(the instrument is running\)"):
            lab.latest("stage4", wait=0.2)
        del lab.rt.channels[("stage4", "never")]
        assert {i["id"] for i in lab.health()["instruments"]} == set(lab.instruments)
    assert lab.report is not None and lab.report.ok
    for iid in ("stage2", "stage4"):  # after closing, both flavors refuse the same way
        with pytest.raises(daqhub.CommandNotSent, match="shutting down"):
            lab[iid].position()


def test_a_drivers_own_timeout_reaches_the_script_as_the_driver_raised_it(
        tmp_path: Path, host: PluginHost) -> None:
    """A DriverTimeoutError is a TimeoutError, as the caller's own wait running out is (and
    concurrent.futures.TimeoutError is TimeoutError): the Lab API took the driver's "no
    reply from address 2 within 1.00 s" for its own wait and raised "no result within
    60 s", not a DriverError; a scan did the same with a mover's error."""
    own = r"^stage\d: 'OR': not home within 0.5 s$"

    async def awaited(lab: Any) -> None:
        with pytest.raises(DriverTimeoutError, match=own):
            await lab["stage4"].home(0.5)

    with daqhub.open_lab(optics_lab(tmp_path, "v2", extra=BOTH), host=host,
                         report=None) as lab:
        for iid in ("stage2", "stage4"):
            with pytest.raises(DriverTimeoutError, match=own) as info:
                lab[iid].home(0.5)
            assert isinstance(info.value, DriverError)
            with pytest.raises(DriverTimeoutError, match=own):
                lab[iid].result(lab[iid].send("home", 0.5), "home", 30)
    async_text = optics_lab(tmp_path / "async", "v4", extra=BOTH)

    async def main() -> None:
        async with daqhub.open_lab_async(async_text, host=host, report=None) as lab:
            await awaited(lab)
    asyncio.run(main())


def stage_lab(tmp_path: Path, flavor: str, port: str) -> str:
    """A lab of one ESP300 axis on ``port``."""
    return (f'[daqhub]\noutput_dir = "{tmp_path.as_posix()}/data"\n'
            f'[[{flavor}.instruments]]\nid = "stage"\ntype = "newport.esp300"\n'
            f'port = "{port}"\naxis = 1\npoll_hz = 5\n')


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_scripts_stop_halts_the_axis_while_its_home_is_in_flight(
        tmp_path: Path, host: PluginHost, sim_url: Any, sim_endpoint: Any, flavor: str) -> None:
    """``stage.stop()`` while a ``stage.home()`` sent before is in flight: the stop was
    queued behind the home, so it came when the homing had ended (here after ~100 s), and
    the script's stop button did nothing when it mattered."""
    sim = sim_url("esp300", speed_scale=0.1, home=20)  # a home of ~100 s
    axis = sim_endpoint(sim).device.axis(1)
    text = stage_lab(tmp_path, flavor, sim)
    with daqhub.open_lab(text, host=host, report=None) as lab:
        stage = lab["stage"]
        homing = stage.send("home", 600)
        wait_until(lambda: axis.state == "homing", "the home under way", timeout=30)
        stage.stop()
        assert axis.state != "homing"
        with pytest.raises(DriverError, match="HOMING ABORTED"):
            stage.result(homing, "home", 30)


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_an_urgent_command_and_the_pages_stop_run_while_a_home_is_in_flight(
        tmp_path: Path, host: PluginHost, sim_url: Any, sim_endpoint: Any, flavor: str) -> None:
    """Only a script's ``stop`` ran at once: the ESP300's ``abort`` (urgent in its protocol
    table) was queued behind a ~100 s home, and so was a ``stop`` sent the way the dashboard
    and routines send it (``rt.call``): each came when the homing had ended."""
    sim = sim_url("esp300", speed_scale=0.1, home=20)  # a home of ~100 s
    axis = sim_endpoint(sim).device.axis(1)
    with daqhub.open_lab(stage_lab(tmp_path, flavor, sim), host=host, report=None) as lab:
        stage = lab["stage"]
        for halt in (lambda: stage.abort(), lambda: lab.rt.call("stage", "stop", timeout=10)):
            homing = stage.send("home", 600)
            wait_until(lambda: axis.state == "homing", "the home under way", timeout=30)
            halt()
            assert axis.state != "homing"
            with pytest.raises(DriverError, match="HOMING ABORTED"):
                stage.result(homing, "home", 30)


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_closing_the_lab_during_a_scripts_move_stops_the_axis_and_ends_clean(
        tmp_path: Path, host: PluginHost, sim_url: Any, sim_endpoint: Any, flavor: str) -> None:
    """Ctrl-C (or any error) while a script waits on a long move leaves the ``with`` block:
    nothing stopped the axis, the shutdown waited its budget, forced the instrument (NOT OK)
    and the stage went on to the end of its move."""
    sim = sim_url("esp300", speed_scale=0.01)  # 0.1 mm/s: a move of 20 mm takes ~200 s
    axis = sim_endpoint(sim).device.axis(1)
    text = stage_lab(tmp_path, flavor, sim)
    with pytest.raises(KeyboardInterrupt):
        with daqhub.open_lab(text, host=host, report=None) as lab:
            wait_until(lambda: lab.rt.health_of("stage").measurements > 0, "a first sample",
                       timeout=30)
            lab["stage"].move_absolute(20.0)
            lab["stage"].send("wait_until_done", 600)
            wait_until(lambda: axis.state != "idle", "the move under way", timeout=30)
            raise KeyboardInterrupt
    report = lab.report
    assert report is not None and report.ok, report.failed
    assert report.clean == ["stage"] and report.duration_s < 5
    assert axis.state == "idle" and axis.position < 10_000  # counts: stopped well short


def test_the_shutdown_halts_no_axis_that_is_disconnected(
        tmp_path: Path, host: PluginHost, sim_url: Any, sim_endpoint: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A disconnected axis's stop is queued behind its reconnect, where it cannot run: the
    shutdown's halt waited its whole second for it, in an otherwise healthy close."""
    from daqhub.runtime.dual import DualRuntimeManager

    stopped: list[str] = []  # the instruments a stop was sent to
    submit = DualRuntimeManager.submit

    def spy(rt: DualRuntimeManager, iid: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "stop":
            stopped.append(iid)
        return submit(rt, iid, method, *args, **kwargs)

    monkeypatch.setattr(DualRuntimeManager, "submit", spy)
    gone = sim_url("esp300")
    text = stage_lab(tmp_path, "v2", sim_url("esp300")) + stage_lab(
        tmp_path, "v4", gone).split("\n", 2)[2].replace('id = "stage"', 'id = "gone"')
    with daqhub.open_lab(text, host=host, report=None) as lab:
        wait_until(lambda: all(h["measurements"] > 0 for h in lab.health()["instruments"]),
                   "a first sample of both", timeout=30)
        sim_endpoint(gone).faults.disconnect()
        wait_until(lambda: lab.rt.health_of("gone").state == "reconnecting",
                   "the axis reconnecting", timeout=30)
    assert stopped == ["stage"]


def test_the_scripts_own_wait_running_out_is_its_own_timeout_error(
        tmp_path: Path, host: PluginHost) -> None:
    """The other side of the test above: no answer within the wait is the Lab API's own
    TimeoutError, naming what the instrument is busy with, and not a DriverError."""
    GatedV2.moving.clear()
    GatedV2.gate.clear()
    text = optics_lab(tmp_path, "v2", extra=GATED_TOML)
    try:
        with daqhub.open_lab(text, host=host, report=None) as lab:
            sent = lab["gated"].send("move_absolute", 1.0)
            assert GatedV2.moving.wait(30)
            with pytest.raises(TimeoutError, match=r"^gated\.move_absolute: no result within "
                                                   r"0\.2 s \(busy in 'move_absolute'\)$") as info:
                lab["gated"].result(sent, "move_absolute", 0.2)
            assert not isinstance(info.value, DriverError)
            GatedV2.gate.set()
    finally:
        GatedV2.gate.set()


def test_a_lab_whose_opener_gave_up_is_closed_once_open(tmp_path: Path,
                                                        host: PluginHost) -> None:
    """A task cancelled while ``open_lab_async`` was opening (a timeout, Ctrl-C, a failing
    sibling task) left the lab running with nobody to close it: instruments polling, ports
    held, session files never closed."""
    out = tmp_path / "data"
    text = optics_lab(out, "v2", extra=BOTH)

    async def experiment() -> None:
        async with daqhub.open_lab_async(text, host=host, report=None) as lab:
            await asyncio.sleep(60)  # (only if it opened before the timeout)
            raise AssertionError(lab)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(experiment(), 0.05)
    asyncio.run(main())

    def closed() -> bool:
        files = list(out.glob("v2/*/session.h5"))
        if not files or list(out.glob("**/*.lock")):
            return False
        with h5py.File(files[0], "r") as f:
            return int(f.attrs["closed"]) == 1
    wait_until(closed, "the abandoned lab's session closed", timeout=60)


def test_live_data_waits_for_the_chosen_instruments(tmp_path: Path, host: PluginHost) -> None:
    """get(timeout) on a subscription to one instrument waits for that instrument's batches:
    the other instruments' batches, which arrive more often, do not end the wait empty."""
    slow = BOTH.replace('id = "stage4"\ntype = "test.limited"\npoll_hz = 20',
                        'id = "stage4"\ntype = "test.limited"\npoll_hz = 2')
    assert slow != BOTH
    with daqhub.open_lab(optics_lab(tmp_path, "v2", extra=slow), host=host, report=None) as lab:
        with lab.subscribe(["stage4"]) as live:
            for _ in range(4):
                batches = live.get(5.0)
                assert batches, "get(5.0) came back empty: another instrument's batch ended it"
                assert {b.schema.metadata[b"daqhub.instrument_id"] for b in batches} == {
                    b"stage4"}


def test_async_twin_and_awaitable_handles(tmp_path: Path, host: PluginHost) -> None:
    lab_text = optics_lab(tmp_path, "v4", extra=BOTH)

    async def main() -> tuple[float, float, float]:
        async with daqhub.open_lab_async(lab_text, host=host, report=None) as lab:
            await asyncio.gather(lab["stage2"].move_absolute(3.0),
                                 lab["stage4"].move_absolute(4.0))
            with pytest.raises(DriverError, match="limit switch hit"):
                await lab["stage4"].move_absolute(30)
            await lab["rotator"].move_absolute(20.0)
            rot = await lab["rotator"].wait_until_done(10)
            return await lab["stage2"].position(), await lab["stage4"].position(), rot

    s2, s4, rot = asyncio.run(main())
    assert (s2, s4) == (3.0, 4.0)
    assert rot == pytest.approx(20.0, abs=0.05)


SCRIPT = '''
import sys
import daqhub
with daqhub.open_lab(sys.argv[1]) as lab:
    print("dirs", lab.output_dirs()["v2"], lab.output_dirs()["v4"], flush=True)
    lab.scan("rotator", [i * 2.0 for i in range(91)], read=["power"], settle=0.2)
print("scan finished", flush=True)
'''


def test_sigint_mid_scan_stores_the_rows_marked_incomplete(tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.toml"
    lab_file.write_text(optics_lab(tmp_path / "data", "v4"))
    script = tmp_path / "scan.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen([sys.executable, str(script), str(lab_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("dirs "), proc.stderr.read() if proc.stderr else line
        v2_dir, v4_dir = (Path(p) for p in line.split()[1:])
        points = v4_dir / "points-scan-1.arrow"
        deadline = time.monotonic() + 60
        while not (points.exists() and pa.ipc.open_file(points).read_all().num_rows >= 3):
            assert time.monotonic() < deadline, "no points row written within 60 s"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)  # polling another process's file: there is no event to wait on
        os.kill(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=10 + 10)  # the lab's shutdown_timeout + margin
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert took < 20
    assert "scan finished" not in out
    assert "KeyboardInterrupt" in err and "shutdown report" in err
    table = pa.ipc.open_file(points).read_all()
    assert 3 <= table.num_rows < 91
    assert table.schema.metadata[b"daqhub.complete"] == b"false"
    assert table.schema.metadata[b"daqhub.stop_reason"] == b"interrupted"
    with h5py.File(v2_dir / "records.h5", "r") as f:
        assert bool(f["points/scan-1"].attrs["complete"]) is False
        assert len(f["points/scan-1/step"]) == table.num_rows
    with h5py.File(v2_dir / "session.h5", "r") as f:
        assert len(f["power/power/value"]) > 0
    for stream in v4_dir.rglob("*.arrows"):
        with pa.ipc.open_stream(stream) as reader:
            assert reader.read_all().num_rows > 0
