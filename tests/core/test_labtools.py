"""daqhub migrate and daqhub new, against in-process plugin types."""

from __future__ import annotations

import datetime
import tomllib
from pathlib import Path

import pytest
import tomlkit

from daqhub import tomlwrite
from daqhub.cli.migrate import migrate
from daqhub.cli.wizard import Aborted, Asker, build
from daqhub.config import ConfigError, parse

V2_LAB = """\
[daqhub]
output_dir = "out"

[v2]
storage = "hdf5"

[[v2.instruments]]
id = "power"
type = "acme.meter"
port = "sim://meter"
wavelength_nm = 800

[[v2.instruments]]
id = "stage"
type = "acme.stage"
port = "sim://stage"

[[routines]]
instrument = "stage"
steps = [["sleep", 1]]
"""


def test_migrate_moves_what_has_a_v4_flavor(host, tmp_path: Path) -> None:
    doc = tomlkit.parse(V2_LAB)
    moved, kept, notes = migrate(doc, host)
    assert moved == ["power"]
    assert len(kept) == 1 and kept[0].startswith("stage (acme.stage): no v4 flavor")
    assert notes and notes[0].startswith("storage: power now write(s) 'arrow'")
    text = tomlkit.dumps(doc)
    lab = parse(text, "migrated.toml", host, tmp_path)       # the output validates
    assert [(i.id, i.flavor) for i in lab.instruments()] == [("stage", "v2"), ("power", "v4")]
    assert lab.flavors["v4"].instruments[0].block["wavelength_nm"] == 800
    assert lab.routines == [{"instrument": "stage", "steps": [["sleep", 1]]}]


COMMENTED = """\
[v2]
storage = "hdf5"

# meter A, above the array's first header
[[v2.instruments]]
id = "a"
type = "acme.meter"
port = "sim://a"

# the stage, kept on v2
[[v2.instruments]]
id = "stage"
type = "acme.stage"
port = "sim://stage"

# meter B
[[v2.instruments]]
id = "b"
type = "acme.meter"
port = "sim://b"

# the routines
[[routines]]
instrument = "stage"
steps = [["sleep", 1]]
# the end of the file
"""

MIGRATED = """\
[v2]
storage = "hdf5"

# the stage, kept on v2
[[v2.instruments]]
id = "stage"
type = "acme.stage"
port = "sim://stage"

# the routines
[[routines]]
instrument = "stage"
steps = [["sleep", 1]]
# the end of the file

[v4]
enabled = true
storage = "arrow"

# meter A, above the array's first header
[[v4.instruments]]
id = "a"
type = "acme.meter"
port = "sim://a"

# meter B
[[v4.instruments]]
id = "b"
type = "acme.meter"
port = "sim://b"
"""


def test_migrate_moves_the_comments_above_each_header_with_its_table(host) -> None:
    """In the file a comment above a header belongs to that table; tomlkit files it under
    what comes before (the [v2] table for the array's first one), so it used to stay behind
    in [v2] or land inside the moved table."""
    doc = tomlkit.parse(COMMENTED)
    moved, kept, _ = migrate(doc, host)
    assert moved == ["a", "b"] and len(kept) == 1
    assert tomlkit.dumps(doc).rstrip("\n") == MIGRATED.rstrip("\n")


def test_migrate_keeps_the_comments_ending_the_file_at_its_end(host) -> None:
    doc = tomlkit.parse('[daqhub]\noutput_dir = "d"\n\n# meter A, no [v2] table\n'
                        '[[v2.instruments]]\nid = "a"\ntype = "acme.meter"\nport = "sim://a"\n'
                        '# the end of the file\n')
    assert migrate(doc, host)[0] == ["a"]
    text = tomlkit.dumps(doc)
    assert text.rstrip("\n").endswith('port = "sim://a"\n\n# the end of the file')
    assert '# meter A, no [v2] table\n[[v4.instruments]]\nid = "a"' in text


def test_migrate_cli_round_trip(host, tmp_path: Path, monkeypatch, capsys) -> None:
    import argparse

    from daqhub.cli.migrate import main
    src = tmp_path / "old.toml"
    src.write_text(V2_LAB)
    out = tmp_path / "new.toml"
    assert main(argparse.Namespace(lab=str(src), output=str(out), force=False), host) == 0
    err = capsys.readouterr().err
    assert "moved to v4: power" in err and "kept on v2: stage" in err
    assert parse(out.read_text(), str(out), host, tmp_path).flavors["v4"].instruments


def answers(*lines: str) -> Asker:
    it = iter(f"{line}\n" for line in lines)   # as readline() gives them; "" = end of input
    return Asker(lambda: next(it, ""), lambda s: None)


def test_new_with_piped_answers_gives_a_valid_file(host, tmp_path: Path) -> None:
    a = answers(
        "labdata",                 # output directory
        "y",                       # add an instrument
        "acme.metre",              # typo: refused with a suggestion
        "acme.meter", "v2", "",    # type, flavor, default id
        "sim://meter",             # port
        "5000",                    # wavelength_nm: out of range, refused
        "633", "2",                # wavelength_nm, address
        "20",                      # poll rate
        "y",
        "acme.dmm", "", "dmm",     # only v4 exists: default flavor; id
        "GPIB0::5::INSTR", "@sim",
        "5",
        "n",                       # no more
        "", "",                    # storage defaults
    )
    doc = build(a, host)
    lab = parse(tomlwrite.dumps(doc), "new.toml", host, tmp_path)
    got = {i.id: (i.type, i.flavor, i.block.get("wavelength_nm")) for i in lab.instruments()}
    assert got == {"meter_1": ("acme.meter", "v2", 633), "dmm": ("acme.dmm", "v4", None)}


def test_new_aborts_cleanly_at_end_of_input(host) -> None:
    with pytest.raises(Aborted, match="end of input"):
        build(answers("data", "y", "acme.meter"), host)


def test_toml_writer_round_trips() -> None:
    doc = {"a": {"x": 1, "y": [1.5, "s"], "z": {"k": True}},
           "arr": [{"id": "p", "q": "a\"b"}, {"id": "r"}], "top": "v"}
    assert tomllib.loads(tomlwrite.dumps(doc)) == doc


def test_daqhub_new_from_piped_stdin(tmp_path: Path) -> None:
    """The real command, answers piped in as a script would: a lab file that validates."""
    import subprocess
    import sys

    answers = "\n".join([
        "data", "y", "elliptec.ell14", "v2", "mount",
        "sim://elliptec?devices=0:ELL14",     # port
        "0", "", "", "", "",                   # address, then the optional keys' defaults
        "5",                                   # poll rate
        "n", "",                               # no more; default storage
    ]) + "\n"
    out = tmp_path / "lab.toml"
    r = subprocess.run([sys.executable, "-m", "daqhub", "new", "-o", str(out)], input=answers,
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "daqhub", "validate", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "mount [elliptec.ell14, v2]" in r.stdout, r.stderr


def test_toml_writer_writes_numpy_numbers_as_numbers() -> None:
    """A script's dict for open_lab holds numpy's numbers: np.float64 was written as
    ``np.float64(0.0)`` (not TOML) and np.int64 refused with a TypeError."""
    import numpy as np

    doc = {"t": {"f": np.float64(0.1), "g": np.float32(0.5), "i": np.int64(3),
                 "u": np.uint8(7), "b": True, "steps": [["move", a] for a in np.linspace(0, 1, 3)],
                 "n": {"x": np.int16(-2)}},
           "arr": [{"v": np.float64(-1e-300)}]}
    back = tomllib.loads(tomlwrite.dumps(doc))
    assert back == {"t": {"f": 0.1, "g": 0.5, "i": 3, "u": 7, "b": True,
                          "steps": [["move", 0.0], ["move", 0.5], ["move", 1.0]],
                          "n": {"x": -2}}, "arr": [{"v": -1e-300}]}
    assert type(back["t"]["f"]) is float and type(back["t"]["i"]) is int


@pytest.mark.parametrize("doc, where", [
    ({"arr": [{"id": "a"}, {"id": "b", "when": datetime.time(1)}]}, "arr[1].when"),
    ({"routines": [{"steps": [["move", [None]]]}]}, "routines[0].steps[0][1][0]"),
    ({"t": {"inline": [{1: "x"}]}}, "t.inline[0]"),
])
def test_toml_writer_names_the_key_it_cannot_write(doc: dict, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        tomlwrite.dumps(doc)
    [problem] = info.value.problems
    assert problem.file == "<dict>" and problem.message.startswith(f"{where}: ")
