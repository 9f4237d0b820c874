"""Reading a session back when each flavor has its own ``output_dir``: either flavor's
directory gives the whole session, a flavor whose directory is gone is said so, and every
row's ``source`` is the flavor that took it, whichever backend stored it."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pyarrow as pa
import pytest
from lab_fakes import BOTH

import daqhub
from daqhub.cli.inspect import summarize
from daqhub.host import PluginHost
from daqhub.readback import SessionFileWarning

pytestmark = pytest.mark.timeout(120)

LAB = '''
[daqhub]
shutdown_timeout = 10

[v2]
{v2}

[v4]
{v4}
''' + BOTH
CHANNELS = ["stage2.position", "stage4.position"]


def run_lab(source: str | Path, host: PluginHost, output_dir: Path | None = None
            ) -> dict[str, Path]:
    """Run the lab until both stages have a stored sample; each flavor's session directory."""
    with daqhub.open_lab(source, host=host, report=None, output_dir=output_dir) as lab:
        lab.latest("stage2", wait=30)
        lab.latest("stage4", wait=30)
        return lab.output_dirs()


def read_quietly(path: Path) -> dict[str, pa.Table]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SessionFileWarning)
        tables = daqhub.read_session(path)
    assert isinstance(tables, dict)
    return tables


@pytest.mark.parametrize("v2,v4", [
    ('output_dir = "a/v2"', 'output_dir = "b/v4"'),
    ('output_dir = "fast"\nstorage = "arrow"', 'output_dir = "slow"\nstorage = "hdf5"'),
], ids=["apart", "own-names-swapped-backends"])
def test_either_flavors_directory_reads_the_whole_session(
        tmp_path: Path, host: PluginHost, v2: str, v4: str) -> None:
    lab_file = tmp_path / "lab" / "lab.toml"
    lab_file.parent.mkdir()
    lab_file.write_text(LAB.format(v2=v2, v4=v4))
    dirs = run_lab(lab_file, host)
    sid = dirs["v2"].name
    assert dirs["v4"] != dirs["v2"].parent.parent / "v4" / sid  # not <output_dir>/<flavor>
    for flavor, d in dirs.items():
        tables = read_quietly(d)
        assert sorted(tables) == CHANNELS, flavor
        for name, table in tables.items():
            assert table.num_rows > 0
            # the rows' source is the flavor that took them, not the file format's usual one
            assert set(table.column("source").to_pylist()) == {"v" + name[len("stage")]}
        # daqhub inspect finds the same files, each under its flavor
        reports = summarize(d)
        assert {(r.flavor, r.channels[0].instrument) for r in reports} == {
            ("v2", "stage2"), ("v4", "stage4")}


def test_a_flavor_whose_directory_is_gone_is_named_with_where_it_was_looked_for(
        tmp_path: Path, host: PluginHost) -> None:
    lab_file = tmp_path / "lab.toml"
    lab_file.write_text(LAB.format(v2='output_dir = "fast"', v4='output_dir = "slow"'))
    dirs = run_lab(lab_file, host)
    shutil.move(dirs["v4"], tmp_path / "moved")
    with pytest.warns(SessionFileWarning) as caught:
        tables = daqhub.read_session(dirs["v2"])
    assert isinstance(tables, dict) and sorted(tables) == ["stage2.position"]
    message = str(caught[0].message)
    assert "v4 directory was not found" in message and str(dirs["v4"]) in message
    assert caught[0].filename == __file__  # said where read_session was called


def test_the_other_directory_is_found_from_the_session_when_the_lab_does_not_say(
        tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative ``[v4] output_dir`` of a lab given as text, and v2's session moved away
    after the run: the lab file stored does not say where v2's directory is now, nor where
    v4's is relative to; budget.json (in v2's directory) lists the files each flavor wrote.
    (An ``output_dir`` given to ``open_lab`` now places both flavors.)"""
    (tmp_path / "lab").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "lab")
    dirs = run_lab(LAB.format(v2="", v4='output_dir = "slow"'), host)
    assert dirs["v4"].parent == tmp_path / "lab" / "slow"
    moved = tmp_path / "given" / "v2" / dirs["v2"].name
    moved.parent.mkdir(parents=True)
    dirs["v2"].rename(moved)
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert sorted(read_quietly(moved)) == CHANNELS
    with pytest.warns(SessionFileWarning, match="its v2 directory was not found"):
        tables = daqhub.read_session(dirs["v4"])
    assert isinstance(tables, dict) and sorted(tables) == ["stage4.position"]
