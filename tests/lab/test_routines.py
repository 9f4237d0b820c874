"""Routines on the points engine: closed-loop moves, record steps, mistakes found by validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pyarrow as pa
import pytest
from lab_texts import optics_lab

import daqhub
from daqhub.host import PluginHost

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
