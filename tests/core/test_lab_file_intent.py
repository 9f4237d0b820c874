"""What the user asked for is what runs: an output directory given beside the lab wins over
every flavor's own, a disabled instrument is not counted as one to run (nor switched on by
``migrate``), an id storage refuses is refused by ``validate`` at its line, and a lab path
that is a pipe or a device is read within bounds, one that is neither (nor a file) refused
(from the lab-file audit)."""

from __future__ import annotations

import os
import threading
import tomllib
from pathlib import Path

import pytest

import daqhub
from daqhub.cli import main as daqhub_main
from daqhub.cli.run import load_lab
from daqhub.config import ConfigError, load, parse
from daqhub.host import PluginHost
from daqhub.lab import load_lab_config
from daqhub.measurement import check_id

POWER = '[[v2.instruments]]\nid = "power"\ntype = "newport.1830c"\n' \
        'port = "sim://newport1830c"\n'
STAGE = '[[v2.instruments]]\nid = "stage"\ntype = "newport.esp300"\nport = "sim://esp300"\n' \
        'axis = 1\n'
DMM = '[[v4.instruments]]\nid = "dmm"\ntype = "scpi.dmm"\nresource = "GPIB0::5::INSTR"\n' \
      'visa_backend = "daqhub_sims:visa/dmm_psu.yaml@sim"\n'


@pytest.fixture(scope="module")
def installed() -> PluginHost:
    """The installed plugins, as the commands load them."""
    host = PluginHost()
    host.load_entry_points()
    return host


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- 1. --output-dir / open_lab(output_dir=) win over a flavor's own output_dir -------------

def test_an_output_dir_given_beside_the_lab_replaces_every_flavors_own(
        host: PluginHost, tmp_path: Path) -> None:
    """``[v2] output_dir = "fast"`` (and an absolute ``[v4]`` one) kept the data next to the
    lab file whatever ``--output-dir`` said: now both go to ``DIR/<flavor>``."""
    lab = write(tmp_path / "lab" / "lab.toml", f'''
[v2]
output_dir = "fast"
[v4]
output_dir = "{(tmp_path / "abs-slow").as_posix()}"

[[v2.instruments]]
id = "power"
type = "acme.meter"
port = "sim://meter"

[[v4.instruments]]
id = "dmm"
type = "acme.dmm"
resource = "GPIB0::5::INSTR"
''')
    given = tmp_path / "given"
    for cfg in (load_lab(str(lab), host, str(given)),  # daqhub run --output-dir
                load_lab_config(lab, host, given)):     # open_lab(output_dir=)
        assert {f: c.output_dir for f, c in cfg.flavors.items()} == {
            "v2": given / "v2", "v4": given / "v4"}
    without = load(lab, host)  # the lab's own directories still hold without one
    assert without.flavors["v2"].output_dir == lab.parent / "fast"
    assert without.flavors["v4"].output_dir == tmp_path / "abs-slow"


def test_an_unwritable_output_dir_given_beside_the_lab_is_not_blamed_on_a_line(
        host: PluginHost, tmp_path: Path) -> None:
    """It was reported on ``[v2] output_dir``'s line, a directory no longer used."""
    blocker = write(tmp_path / "a-file", "")
    text = '[v2]\noutput_dir = "fast"\n\n[[v2.instruments]]\nid = "power"\n' \
           'type = "acme.meter"\nport = "sim://meter"\n'
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host, tmp_path, output_dir=blocker)
    [problem] = info.value.problems
    assert problem.line == 0 and str(blocker / "v2") in problem.message


def test_run_help_says_where_the_output_dir_puts_each_flavor(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        daqhub_main(["run", "--help"])
    assert "DIR/v2 and DIR/v4" in " ".join(capsys.readouterr().out.split())


def test_open_lab_stores_in_the_output_dir_given_and_never_starts_a_disabled_instrument(
        installed: PluginHost, tmp_path: Path) -> None:
    lab_file = write(tmp_path / "lab" / "lab.toml", '[v2]\noutput_dir = "fast"\n\n' + POWER
                     + "\n" + STAGE + "enabled = false\n")
    given = tmp_path / "given"
    with daqhub.open_lab(lab_file, output_dir=given, host=installed, report=None) as lab:
        lab.latest("power", wait=30)
        assert "stage" not in lab  # disabled: not started
        v2_dir = lab.output_dirs()["v2"]
    assert v2_dir.parent == given / "v2"
    assert any(v2_dir.iterdir())
    assert not (lab_file.parent / "fast").exists()
    assert [o["id"] for o in lab.report.instruments] == ["power"]


# --- 2. disabled instruments are not instruments to run ------------------------------------

def test_a_lab_whose_instruments_are_all_disabled_is_refused_as_an_empty_one(
        installed: PluginHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It validated ("1 instrument: power"), "ran" with nothing and exited 0."""
    lab = write(tmp_path / "lab.toml", POWER + "enabled = false\n")
    refusal = f"{lab}: the lab has no enabled instruments; nothing to run"
    for args in (["validate", str(lab)], ["run", str(lab), "--duration", "1", "--plain"]):
        assert daqhub_main(args) == 2, args
        err = capsys.readouterr().err
        assert refusal in err and "power will not run: it has enabled = false" in err, err
    assert not (tmp_path / "data").exists()
    with pytest.raises(ValueError, match="no enabled instruments"):
        daqhub.open_lab(lab, host=installed, report=None)


def test_validate_counts_and_lists_only_the_instruments_that_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = write(tmp_path / "lab.toml", POWER + "enabled = false\n\n" + DMM)
    assert daqhub_main(["validate", str(lab)]) == 0
    assert capsys.readouterr().out.strip() == \
        f"{lab}: valid (1 instrument: dmm [scpi.dmm, v4])"


# --- 3. migrate keeps the instruments of a disabled [v2] off --------------------------------

def test_migrate_keeps_the_instruments_of_a_disabled_v2_off(
        installed: PluginHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """They were moved into the enabled [v4], and the migrated lab drove them."""
    old = write(tmp_path / "old.toml", "[v2]\nenabled = false   # out for repair\n\n" + STAGE
                + "\n" + POWER + "enabled = true\n\n" + DMM)
    new = tmp_path / "new.toml"
    assert daqhub_main(["migrate", str(old), "-o", str(new)]) == 0
    err = capsys.readouterr().err
    assert "moved to v4: stage, power" in err
    assert "kept off: stage, power (enabled = false written into each moved block" in err
    assert "no v2 instruments are left" not in err  # [v2] was off already
    doc = tomllib.loads(new.read_text())
    assert [(b["id"], b.get("enabled")) for b in doc["v4"]["instruments"]] == [
        ("dmm", None), ("stage", False), ("power", False)]
    assert [i.id for i in load(new, installed).instruments()] == ["dmm"]


# --- 4. an instrument id storage refuses is refused by validate, at its line ---------------

@pytest.mark.parametrize("iid", ["con", "nul", "aux", "com1", "lpt9"])
def test_an_id_windows_reserves_is_refused_at_its_line_in_storages_words(
        host: PluginHost, iid: str) -> None:
    """validate said "valid"; run then failed at start (exit 1), with no line."""
    text = f'[[v2.instruments]]\nid = "{iid}"\ntype = "acme.meter"\nport = "sim://meter"\n'
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host)
    [problem] = info.value.problems
    assert (problem.line, problem.message) == (2, check_id(iid, "instrument id"))
    assert "reserved device name on Windows" in problem.message


def test_validate_exits_2_for_a_reserved_id(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = write(tmp_path / "lab.toml", POWER.replace('"power"', '"con"'))
    assert daqhub_main(["validate", str(lab)]) == 2
    assert f"{lab}:2: instrument id 'con' is a reserved device name on Windows; try 'con_1'" \
        in capsys.readouterr().err


# --- 5. a lab path that is no regular file ------------------------------------------------

def load_in_thread(path: Path, host: PluginHost) -> tuple[threading.Event, list[object]]:
    """``load(path)`` on a thread: set when it returned (its lab) or raised (the error)."""
    outcome: list[object] = []
    done = threading.Event()

    def validate() -> None:
        try:
            outcome.append(load(path, host))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)
        done.set()

    threading.Thread(target=validate, daemon=True).start()
    return done, outcome


def test_a_fifo_is_read_from_its_writer(installed: PluginHost, tmp_path: Path) -> None:
    """``validate <(cat lab.toml)`` worked, then was refused as "not a regular file"."""
    fifo = tmp_path / "lab.toml"
    os.mkfifo(fifo)
    done, outcome = load_in_thread(fifo, installed)

    def write() -> None:
        with open(fifo, "w") as writer:  # waits for a reader's open
            writer.write(POWER)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert done.wait(10), "load() did not end after its writer closed the FIFO"
    if writer.is_alive():  # load() never opened the FIFO: free the writer
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        writer.join(10)
        os.close(reader)
    [lab] = outcome
    assert not isinstance(lab, BaseException), lab
    assert [i.id for i in lab.instruments()] == ["power"]


def test_a_fifo_nobody_writes_to_is_given_up(host: PluginHost, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """validate and run blocked in the read for ever (run's first Ctrl-C did not stop it)."""
    monkeypatch.setattr(daqhub.config, "LAB_READ_WAIT", 0.3)
    fifo = tmp_path / "lab.toml"
    os.mkfifo(fifo)
    done, outcome = load_in_thread(fifo, host)
    if not done.wait(10):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblock the reader: EOF
        done.wait(10)
        pytest.fail("load() blocked reading a FIFO")
    [exc] = outcome
    assert isinstance(exc, ConfigError)
    assert str(exc).startswith(f"{fifo}: nothing came from {fifo} for 0.3 s"), exc


def test_a_directory_an_endless_device_or_an_oversized_file_is_refused_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``validate /dev/zero`` read until MemoryError (a traceback); a directory is no lab."""
    assert daqhub_main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: not a file, pipe or device to read" in err
    assert daqhub_main(["validate", "/dev/zero"]) == 2
    err = capsys.readouterr().err
    assert "/dev/zero: too large for a lab file: more than 16 MiB came from it" in err
    big, cap = tmp_path / "big.toml", 16 * 2**20  # the cap the guide gives
    with big.open("wb") as f:
        f.truncate(cap + 1)  # sparse: no disk used
    assert daqhub_main(["run", str(big), "--duration", "1", "--plain"]) == 2
    err = capsys.readouterr().err
    assert f"too large for a lab file: {cap + 1} bytes, more than 16 MiB" in err
    assert "Traceback" not in err
