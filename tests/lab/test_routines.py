"""Routines on the points engine: closed-loop moves, record steps, mistakes found by validate."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import pyarrow as pa
import pytest
from lab_texts import optics_lab
from polling import wait_until

import daqhub
from daqhub.config import ConfigError, Problem, parse
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.runtime.report import print_report
from daqhub.scan import ScanError, points_schema

pytestmark = pytest.mark.timeout(120)

ROUTINE = '''
[[routines]]
instrument = "rotator"
steps = [
    ["move_absolute", 0.0],
    ["sleep", 0.3],
    ["record", "power"],
    ["move_absolute", 90.0],
    ["sleep", 0.3],
    ["record", "power"],
]
'''


def run_routine(tmp_path: Path, host: PluginHost, routine: str
                ) -> tuple[pa.Table, dict[str, Path]]:
    """The routine's points table, once it is complete, and the session directories."""
    with daqhub.open_lab(optics_lab(tmp_path, "v4", routines=routine), host=host,
                         report=None) as lab:
        records = lab.records
        with records.row_added:
            assert records.row_added.wait_for(
                lambda: any(r.complete for r in records.runs.values()), timeout=60)
        [table] = [r.table() for r in records.runs.values()]
        return table, lab.output_dirs()


def test_routine_moves_closed_loop_and_records_points_rows(tmp_path: Path,
                                                            host: PluginHost) -> None:
    _, dirs = run_routine(tmp_path, host, ROUTINE)
    with h5py.File(dirs["v2"] / "records.h5", "r") as f:
        g = f["points/routine-rotator-1"]
        assert bool(g.attrs["complete"]) is True
        assert list(g["step"][:]) == [0, 1]
        assert list(g["rotator"][:]) == [0.0, 90.0]
        assert abs(g["rotator.readback"][1] - 90.0) < 0.05  # the move was done before reading
        power = g["power.power"][:]
        assert power[0] > 20 * power[1]  # Malus: crossed at 90 deg


def test_a_later_record_step_that_reads_more_adds_its_columns(tmp_path: Path,
                                                              host: PluginHost) -> None:
    """Each record step's readings land in the points table, even those the first record
    step did not read (those rows have no value there, not a made-up one)."""
    routine = ROUTINE.replace('["record", "power"],\n]', '["record", "power", "rotator"],\n]')
    assert routine != ROUTINE
    table, dirs = run_routine(tmp_path, host, routine)
    position = table.column("rotator.position").to_pylist()
    assert position[0] is None and abs(position[1] - 90.0) < 0.05
    assert table.column("power.power").null_count == 0
    with h5py.File(dirs["v2"] / "records.h5", "r") as f:
        g = f["points/routine-rotator-1"]
        assert list(g["rotator.position.requested_ns"].attrs["missing_rows"]) == [0]
        assert g["rotator.position.requested_ns"][1] > 0
        assert list(g["rotator.position"].attrs["missing_rows"]) == [0]
        assert abs(g["rotator.position"][1] - 90.0) < 0.05
        assert "missing_rows" not in g["power.power"].attrs


MISTAKES = [
    (["move_absolut", 5.0], "unknown command 'move_absolut'", "did you mean 'move_absolute'?"),
    (["set_wavelength", 633], "elliptec.ell14 has no command 'set_wavelength'", ""),
    (["move_absolute", 1.0, 2.0], "move_absolute takes 1 argument (position), got 2",
     "fix the number of arguments"),
    (["sleep"], "sleep needs one duration in seconds", 'write ["sleep", 0.5]'),
    (["move_absolute", "abc"], "move_absolute's position is a float, got 'abc'",
     "daqhub plugins elliptec.ell14 lists its commands and arguments"),
    (["record", "powr"], "record names unknown instrument 'powr'", "did you mean 'power'?"),
    # the driver refuses these only when the step runs, after the move before it was sent
    (["wait_until_done", 7200], "wait_until_done's timeout must be a number of seconds from "
     "0 to 3600, got 7200", "every wait is bounded"),
    (["wait_until_done", -1], "wait_until_done's timeout must be a number of seconds from "
     "0 to 3600, got -1", "every wait is bounded"),
]


@pytest.mark.parametrize("step,message,hint", MISTAKES, ids=[m[0][0] for m in MISTAKES])
def test_validate_reports_each_routine_mistake_on_its_line(
        tmp_path: Path, step: list[object], message: str, hint: str) -> None:
    steps = [["move_absolute", 10.0], ["wait_until_done", 10], step, ["sleep", 0.5]]
    body = ",\n".join(f"    {_toml(s)}" for s in steps)
    text = optics_lab(tmp_path, "v2", routines=f'''
[[routines]]
instrument = "rotator"
steps = [
{body},
]
''')
    path = tmp_path / "lab.toml"
    path.write_text(text)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.strip().startswith(
        _toml(step)))
    r = subprocess.run([sys.executable, "-m", "daqhub", "validate", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout
    problems = [ln.strip() for ln in r.stderr.splitlines()[1:]]
    assert len(problems) == 1, r.stderr
    assert problems[0].startswith(f"{path}:{line}: routine of rotator, step 3 ")
    assert message in problems[0]
    assert hint in problems[0]


def _toml(step: list[object]) -> str:
    return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else repr(v) for v in step) + "]"


def test_validate_lists_every_routine_problem_at_once(tmp_path: Path, host: PluginHost) -> None:
    """A typo, a sleep too short, a record of an instrument that will not run and a routine
    of one: all four in one pass (each used to hide the next), none left for the run."""
    from daqhub.config import ConfigError, parse

    text = optics_lab(tmp_path, "v2", routines='''
[[routines]]
instrument = "rotator"
steps = [
    ["move_absolut", 10.0],
    ["sleep", 0.0001],
    ["record", "power"],
]

[[routines]]
instrument = "power"
steps = [["sleep", 0.5]]
''')
    text = text.replace('id = "power"', 'id = "power"\nenabled = false', 1)
    assert 'enabled = false' in text
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host, tmp_path)
    problems = [p.message for p in info.value.problems]
    assert len(problems) == 4, problems
    assert any("unknown command 'move_absolut'" in p for p in problems)
    assert any("sleep needs one duration from 0.001" in p for p in problems)
    assert any("record reads 'power', which will not run: it has enabled = false" in p
               for p in problems)
    assert any("routine of 'power', which will not run" in p for p in problems)


def _problems(tmp_path: Path, host: PluginHost, routine: str) -> tuple[str, list[Problem]]:
    """The optics lab with ``routine``, and what validation says of it."""
    text = optics_lab(tmp_path, "v2", routines=routine)
    try:
        parse(text, "lab.toml", host, tmp_path)
    except ConfigError as exc:
        return text, list(exc.problems)
    return text, []


def test_a_step_timeout_no_wait_may_take_is_refused_at_its_line(tmp_path: Path,
                                                               host: PluginHost) -> None:
    """Every move step failed at run time ("timeout must be ... between 0 and 3600"), after
    the move was sent: the routine's wait for the move is given the step's timeout."""
    routine = '''
[[routines]]
instrument = "rotator"
step_timeout_s = 7200
steps = [["move_absolute", 10.0], ["sleep", 0.5]]
'''
    text, problems = _problems(tmp_path, host, routine)
    [problem] = problems
    assert problem.line == text.splitlines().index("step_timeout_s = 7200") + 1
    assert "step_timeout_s = 7200 is not allowed" in problem.message
    assert "at most 3600" in problem.message
    assert _problems(tmp_path, host, routine.replace("7200", "3600"))[1] == []


def test_a_repeating_routine_without_a_sleep_is_refused_at_its_repeat_line(
        tmp_path: Path, host: PluginHost) -> None:
    """``wait_until_done`` counted as pacing: on an axis already in place it returns at once,
    and this routine looped ~700 times a second, rewriting its points file as it grew."""
    routine = '''
[[routines]]
instrument = "rotator"
repeat = true
steps = [["wait_until_done", 1.0], ["record", "power"]]
'''
    text, problems = _problems(tmp_path, host, routine)
    [problem] = problems
    assert problem.line == text.splitlines().index("repeat = true") + 1
    assert problem.message.startswith("a repeating routine needs a sleep step")
    assert problem.suggestion == 'add e.g. ["sleep", 0.1]'
    paced = routine.replace('"power"]]', '"power"], ["sleep", 0.1]]')
    assert _problems(tmp_path, host, paced)[1] == []


def test_points_columns_of_one_name_are_refused_not_mixed() -> None:
    """A mover named ``repeat`` gave the table two ``repeat`` columns; its setpoints landed in
    the int one. Lab files cannot name an instrument so (validate), and a table that would
    hold a name twice by any other way is refused before anything moves."""
    rt = SimpleNamespace(channels={})
    names = points_schema(rt, ["stage"], [], "scan").names  # type: ignore[arg-type]
    assert names == ["run_id", "step", "repeat", "stage", "stage.readback"]
    with pytest.raises(ScanError, match="two columns named repeat"):
        points_schema(rt, ["repeat"], [], "routine")  # type: ignore[arg-type]
    readback = ChannelSpec("readback", "scalar", "mm")
    with pytest.raises(ScanError, match=r"two columns named stage\.readback"):
        points_schema(rt, ["stage"], [("stage", readback)], "scan")  # type: ignore[arg-type]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("flavor", "workers"), [("v2", 1), ("v4", 1), ("v2", 2), ("v4", 2)])
def test_a_shutdown_during_a_routine_home_stops_the_axis_and_ends_cleanly(
        tmp_path: Path, host: PluginHost, sim_url: Callable[..., str],
        sim_tcp: Callable[[str], str], sim_endpoint: Callable[[str], Any], flavor: str,
        workers: int) -> None:
    """Ctrl-C while a routine homed a slow stage: the home held the instrument, so the stop
    the shutdown relied on never got through; the budget ran out, the instrument was forced
    (the v2 one still listed as stopped cleanly) and the axis went on homing. In a worker
    process (``workers = 2``) the stop was queued behind the home all the same."""
    sim = sim_url("esp300", speed_scale=0.1, home=20)  # a home of ~100 s
    url = sim_tcp(sim)  # served from here, so a worker process reaches this very device
    axis = sim_endpoint(sim).device.axis(1)
    text = f'''
[daqhub]
output_dir = "{tmp_path.as_posix()}/data"
workers = {workers}
[[{flavor}.instruments]]
id = "stage"
type = "newport.esp300"
port = "{url}"
axis = 1
poll_hz = 5
[[routines]]
instrument = "stage"
start_delay_s = 1  # after the first poll: an instrument without samples is not ok either
steps = [["home", 600]]
'''
    lab = daqhub.open_lab(text, host=host, report=None)
    assert (lab.rt.pool is not None) is (workers > 1)
    wait_until(lambda: axis.state == "homing", "the routine's home under way", timeout=30)
    assert lab.rt.health_of("stage").measurements > 0
    report = lab.close()
    out = io.StringIO()
    print_report(lab.rt, report, out)
    assert report.ok and not report.forced, out.getvalue()
    assert "stopped cleanly: stage" in out.getvalue()
    assert "routine stage: stopped, 0 cycle(s)" in out.getvalue()
    [outcome] = report.instruments
    assert "HOMING ABORTED" in outcome["last_error"]  # the stop reached the controller mid-home
    assert axis.state != "homing"
