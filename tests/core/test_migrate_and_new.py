"""``daqhub migrate`` and ``daqhub new`` as a user runs them: the file on disk, the exit code
and what is said, for the labs and answers the CLI audit found them failing on."""

from __future__ import annotations

import io
import os
import resource
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from daqhub.cli import main as daqhub_main
from daqhub.config import load
from daqhub.host import PluginHost

STAGE = '[[v2.instruments]]\nid = "stage"\ntype = "newport.esp300"\nport = "sim://esp300"\n' \
        'axis = 1\n'
POWER = '[[v2.instruments]]\nid = "power"\ntype = "newport.1830c"\n' \
        'port = "sim://newport1830c"\n'


def daqhub(*args: str, stdin: str = "", fsize: int) -> subprocess.CompletedProcess[str]:
    """``daqhub`` in a subprocess where no file may grow past ``fsize`` bytes, as on a disk
    that fills: a write past it fails part way (EFBIG; Python ignores SIGXFSZ). It writes
    no bytecode: the interpreter's own cache files would be cut short, and kept."""
    def limit() -> None:
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, hard))

    return subprocess.run([sys.executable, "-m", "daqhub", *args], input=stdin, text=True,
                          capture_output=True, timeout=90, preexec_fn=limit,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def migrate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = daqhub_main(["migrate", *args])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def installed() -> PluginHost:
    """The installed plugins, as the command loads them."""
    host = PluginHost()
    host.load_entry_points()
    return host


def on_v4(path: Path, host: PluginHost) -> dict[str, dict[str, object]]:
    """The lab at ``path`` as ``run`` reads it (it must validate): the blocks of its enabled
    instruments by id, each on v4."""
    lab = load(path, host)
    assert {i.flavor for i in lab.instruments()} == {"v4"}, lab.instruments()
    return {i.id: dict(i.block) for i in lab.instruments()}


# --- 1. a write that fails part way leaves the file as it was -----------------------------

def test_migrate_onto_its_own_lab_on_a_full_disk_keeps_the_lab(tmp_path: Path) -> None:
    """It used to truncate the lab it had read (4 KiB of 5) and say "(nothing written)"."""
    text = "[daqhub]\noutput_dir = \"data\"\n\n[v2]\nstorage = \"hdf5\"\n" + "".join(
        f'\n# meter {i}\n[[v2.instruments]]\nid = "pm{i}"\ntype = "newport.1830c"\n'
        f'port = "sim://newport1830c?name=pm{i}"\n' for i in range(40))
    lab = tmp_path / "lab.toml"
    lab.write_text(text)
    assert len(text) > 4096
    r = daqhub("migrate", str(lab), "-o", str(lab), "--force", fsize=4096)
    assert r.returncode == 1, r.stderr
    assert "cannot write" in r.stderr and "(nothing written)" in r.stderr
    assert lab.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["lab.toml"]  # no temporary file left


def test_new_over_an_existing_file_on_a_full_disk_keeps_it(tmp_path: Path) -> None:
    """``new -o keep.toml --force`` left 0 bytes when the write failed."""
    keep = tmp_path / "keep.toml"
    keep.write_text("# my lab, before\n")
    answers = "data\ny\nnewport.1830c\nv4\npm1\nsim://newport1830c\n" + "\n" * 6 + "5\nn\n\n"
    r = daqhub("new", "-o", str(keep), "--force", stdin=answers, fsize=20)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"cannot write {keep}" in r.stderr and "(nothing written)" in r.stderr
    assert 'id = "pm1"' in r.stderr  # the lab, to save by hand
    assert keep.read_text() == "# my lab, before\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.toml"]


# --- 2. what migrate writes runs, read from where it is written ----------------------------

def test_migrate_into_a_disabled_v4_enables_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], installed: PluginHost) -> None:
    """The instruments went to a disabled [v4]: "no enabled instruments", and exit 0."""
    lab = tmp_path / "lab.toml"
    lab.write_text(f'[daqhub]\noutput_dir = "data"\n\n[v2]\nstorage = "hdf5"\n\n{STAGE}\n'
                   '[v4]\nenabled = false   # not using v4 yet\nstorage = "arrow"\n')
    code, err = migrate(capsys, str(lab), "-o", str(tmp_path / "new.toml"))
    assert code == 0, err
    assert list(on_v4(tmp_path / "new.toml", installed)) == ["stage"]
    assert "[v4] enabled = true (it was false)" in err


def test_migrate_to_another_directory_keeps_what_relative_paths_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], installed: PluginHost) -> None:
    """Validated against the lab's directory, the result was written elsewhere with a
    simulation file it could not find there, and sessions going somewhere else."""
    (tmp_path / "lab").mkdir()
    (tmp_path / "out").mkdir()
    sim = tmp_path / "lab" / "dmm.yaml"
    sim.write_text(
        "spec: '1.1'\ndevices: {dmm: {}}\nresources: {'GPIB0::5::INSTR': {device: dmm}}\n")
    lab = tmp_path / "lab" / "lab.toml"
    lab.write_text('[v2]\nstorage = "hdf5"\n\n[[v2.instruments]]\nid = "dmm"\n'
                   'type = "scpi.dmm"\nresource = "GPIB0::5::INSTR"\n'
                   'visa_backend = "dmm.yaml@sim"\n')
    new = tmp_path / "out" / "new.toml"
    code, err = migrate(capsys, str(lab), "-o", str(new))
    assert code == 0, err
    assert on_v4(new, installed)["dmm"]["visa_backend"] == f"{sim.resolve()}@sim"
    assert load(new, installed).output_dir == (tmp_path / "lab" / "data").resolve()
    assert "'dmm.yaml@sim' -> '../lab/dmm.yaml@sim'" in err


def test_migrate_refuses_instruments_written_as_an_inline_array(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It said "moved to v4: none" and exit 0."""
    lab = tmp_path / "lab.toml"
    lab.write_text('[v2]\nstorage = "hdf5"\ninstruments = [\n'
                   '  {id = "stage", type = "newport.esp300", port = "sim://esp300", '
                   'axis = 1},\n]\n')
    code, err = migrate(capsys, str(lab), "-o", str(tmp_path / "new.toml"))
    assert code == 2
    assert "[v2] instruments is an inline array" in err
    assert "write each instrument as a [[v2.instruments]] table" in err
    assert not (tmp_path / "new.toml").exists()


# --- 3. layouts tomlkit keeps apart, and a lab with problems of its own ----------------------

@pytest.mark.parametrize("text, moved", [
    # [v2], [v4], then the instruments: tomlkit keeps two "v2" tables (a traceback)
    (f'[v2]\nstorage = "hdf5"\n\n[v4]\nstorage = "arrow"\n\n{STAGE}', "stage"),
    # dotted keys at the top (a traceback)
    (f'daqhub.output_dir = "data"\nv2.storage = "hdf5"\n\n{STAGE}', "stage"),
    # dotted keys for v4: the keys below them must not land in the moved tables
    (f'v4.storage = "arrow"\nv2.storage = "hdf5"\n\n{STAGE}', "stage"),
    # the array split by another table
    (f'{STAGE}\n[v4]\nstorage = "arrow"\n\n{POWER}', "stage, power"),
], ids=["out-of-order", "dotted", "dotted-v4", "split-array"])
def test_migrate_edits_every_layout_of_a_valid_lab(
        text: str, moved: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        installed: PluginHost) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text(text)
    code, err = migrate(capsys, str(lab), "-o", str(tmp_path / "new.toml"))
    assert code == 0, err
    assert f"moved to v4: {moved}\n" in err
    assert list(on_v4(tmp_path / "new.toml", installed)) == moved.split(", ")


def test_migrate_moves_an_instrument_with_its_sub_tables(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], installed: PluginHost) -> None:
    """``[v2.instruments.restart]`` stayed behind as a stray header: an invalid result."""
    lab = tmp_path / "lab.toml"
    lab.write_text(f'[v2]\nstorage = "hdf5"\n\n{STAGE}\n# restart policy of stage\n'
                   '[v2.instruments.restart]\nmax_restarts = 3\n\n'
                   f'# the power meter\n{POWER}')
    code, err = migrate(capsys, str(lab), "-o", str(tmp_path / "new.toml"))
    assert code == 0, err
    blocks = on_v4(tmp_path / "new.toml", installed)
    assert blocks["stage"]["restart"] == {"max_restarts": 3} and "restart" not in blocks["power"]
    new = (tmp_path / "new.toml").read_text()
    assert "# restart policy of stage\n[v4.instruments.restart]" in new
    assert '# the power meter\n[[v4.instruments]]\nid = "power"' in new


def test_migrate_says_the_labs_own_problems_and_offline_leaves_out_the_lab_pc(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A port that exists only on the lab PC: "the migrated lab does not validate", blamed
    on the migration, and no --offline to migrate away from the lab PC."""
    lab = tmp_path / "lab.toml"
    lab.write_text(STAGE.replace("sim://esp300", "/dev/daqhub-no-such-tty"))
    code, err = migrate(capsys, str(lab), "-o", str(tmp_path / "new.toml"))
    assert code == 2
    assert f"{lab}: the lab to migrate has 1 problem(s); nothing written" in err
    assert "serial device '/dev/daqhub-no-such-tty' does not exist" in err
    assert "migrated lab" not in err and not (tmp_path / "new.toml").exists()
    code, err = migrate(capsys, str(lab), "-o", str(tmp_path / "new.toml"), "--offline")
    assert code == 0, err
    new = tomllib.loads((tmp_path / "new.toml").read_text())
    assert new["v4"]["instruments"][0]["port"] == "/dev/daqhub-no-such-tty"


# --- 4-6. daqhub new: each answer checked when given; defaults that pass; escapes -----------

class Answers(io.StringIO):
    """Standard input and output of ``daqhub new``: answers each question by the start of
    its prompt (in order; any other question: its default, Enter)."""

    def __init__(self, *rules: tuple[str, str]) -> None:
        super().__init__()
        self.rules = list(rules)
        self.asked = 0
        self.read_at = 0  # where the output stood at the last answer

    def readline(self, size: int | None = -1) -> str:
        self.asked += 1
        if self.asked > 200:
            return ""  # end of input
        said = self.getvalue()
        prompt = said[self.read_at:].rsplit("\n", 1)[-1].strip()  # after the answer to the last
        self.read_at = len(said)
        for i, (start, answer) in enumerate(self.rules):
            if prompt.startswith(start):
                del self.rules[i]
                return answer + "\n"
        return "\n"


def new(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], out: Path,
        *rules: tuple[str, str]) -> tuple[int, str, str]:
    """(exit code, what was asked and said to the answers, stderr)."""
    answers = Answers(*rules)
    monkeypatch.setattr("sys.stdin", answers)
    monkeypatch.setattr("sys.stdout", answers)
    code = daqhub_main(["new", "-o", str(out)])
    monkeypatch.undo()
    return code, answers.getvalue(), capsys.readouterr().err


def test_new_checks_backend_output_directory_and_numbers_when_answered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        installed: PluginHost) -> None:
    """All three were accepted, then refused by the final check: every answer lost."""
    (tmp_path / "afile").write_text("")
    out = tmp_path / "lab.toml"
    code, asked, err = new(
        monkeypatch, capsys, out,
        ("output directory", "afile/data"), ("output directory", "data"),
        ("add an instrument", "y"), ("type", "scpi.dmm"), ("flavor", "v4"), ("id", "dmm"),
        ("VISA resource", "GPIB0::5::INSTR"),
        ("VISA backend", "nosuch.yaml@sim"), ("VISA backend", "@py"),
        ("add an instrument", "y"), ("type", "newport.1830c"), ("flavor", "v4"),
        ("id", "pm"), ("serial port", "sim://newport1830c"),
        ("reply_timeout", "nan"), ("reply_timeout", "0.5"),
        ("add an instrument", "n"))
    assert code == 0, asked + err
    assert f"output directory {tmp_path / 'afile' / 'data'} cannot be created" in asked
    assert f"simulation file {tmp_path / 'nosuch.yaml'} does not exist" in asked
    assert "reply_timeout: nan is not a finite number" in asked
    lab = load(out, installed)
    blocks = {i.id: i.block for i in lab.instruments()}
    assert blocks["dmm"]["visa_backend"] == "@py"
    assert blocks["pm"]["reply_timeout"] == 0.5


def test_new_shows_the_lab_when_it_refuses_it_at_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lab.toml"
    code, _, err = new(monkeypatch, capsys, out, ("output directory", "far/away"),
                       ("add an instrument", "n"))
    assert code == 1
    assert "the lab has no enabled instruments" in err
    assert 'the lab was:\n[daqhub]\noutput_dir = "far/away"\n' in err
    assert not out.exists()


def test_new_offers_an_id_its_own_check_accepts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        installed: PluginHost) -> None:
    """For newport.1830c it offered "1830c_1", refused it five times, then gave up."""
    out = tmp_path / "lab.toml"
    code, asked, err = new(monkeypatch, capsys, out, ("add an instrument", "y"),
                           ("type", "newport.1830c"), ("serial port", "sim://newport1830c"),
                           ("add an instrument", "n"))
    assert code == 0, asked + err
    assert "id [newport_1830c_1]: " in asked and "starting with a letter" not in asked
    assert [i.id for i in load(out, installed).instruments()] == ["newport_1830c_1"]


def test_new_refuses_a_reserved_id_when_it_is_answered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        installed: PluginHost) -> None:
    """``con`` (a Windows device name) and ``run_id`` (a points-table column) were taken as
    ids, every later answer given, then the whole lab refused by the final check."""
    out = tmp_path / "lab.toml"
    code, asked, err = new(monkeypatch, capsys, out, ("add an instrument", "y"),
                           ("type", "newport.1830c"), ("id", "con"), ("id", "run_id"),
                           ("id", "meter"), ("serial port", "sim://newport1830c"),
                           ("add an instrument", "n"))
    assert code == 0, asked + err
    assert "instrument id 'con' is a reserved device name on Windows" in asked
    assert "instrument id 'run_id' is reserved" in asked
    assert [i.id for i in load(out, installed).instruments()] == ["meter"]


def test_new_reads_text_in_quotes_as_the_default_shows_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        installed: PluginHost) -> None:
    """The default shows as "\\n"; \\r\\n typed was kept as 4 characters (the instrument
    never answered) and the quoted form was refused as too long."""
    out = tmp_path / "lab.toml"
    code, asked, err = new(monkeypatch, capsys, out, ("add an instrument", "y"),
                           ("type", "scpi.dmm"), ("VISA resource", "GPIB0::5::INSTR"),
                           ("read_termination", r"\r\n"), ("read_termination", r'"\r\n"'),
                           ("write_termination", r'"\r"'), ("add an instrument", "n"))
    assert code == 0, asked + err
    assert 'default "\\n" (escapes such as \\n: in quotes, as shown)' in asked
    assert "text with a backslash goes in double quotes, as JSON" in asked
    [dmm] = load(out, installed).instruments()
    assert dmm.block["read_termination"] == "\r\n" and dmm.block["write_termination"] == "\r"


def test_new_takes_several_dmm_functions_as_a_lab_file_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        installed: PluginHost) -> None:
    """``function`` is one name or a list of them; a list typed was taken as one name and
    refused ("is not one of ...")."""
    out = tmp_path / "lab.toml"
    code, asked, err = new(monkeypatch, capsys, out, ("add an instrument", "y"),
                           ("type", "scpi.dmm"), ("id", "two"),
                           ("VISA resource", "GPIB0::5::INSTR"),
                           ("function", '["VOLT:DC", "CURR:DC"]'), ("add an instrument", "y"),
                           ("type", "scpi.dmm"), ("id", "one"),
                           ("VISA resource", "GPIB0::6::INSTR"), ("function", "RES"),
                           ("add an instrument", "n"))
    assert code == 0, asked + err
    assert 'several as a JSON list, e.g. ["a", "b"]' in asked and "not a valid" not in asked
    blocks = {i.id: i.block for i in load(out, installed).instruments()}
    assert blocks["two"]["function"] == ["VOLT:DC", "CURR:DC"]
    assert blocks["one"]["function"] == "RES"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("command", ["new", "migrate"])
def test_an_output_directory_that_takes_no_file_is_refused_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: str) -> None:
    """``new -o /proc/x.toml`` asked all 31 questions, then could not write the answers.
    /proc takes no new file, even from root (whom os.access tells yes)."""
    lab = tmp_path / "lab.toml"
    lab.write_text(POWER)
    answers = Answers()
    monkeypatch.setattr("sys.stdin", answers)
    args = ["new"] if command == "new" else ["migrate", str(lab)]
    assert daqhub_main([*args, "-o", "/proc/x.toml"]) == 2
    assert answers.asked == 0
    assert "directory /proc is not writable" in capsys.readouterr().err
