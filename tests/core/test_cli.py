"""The daqhub command as a user runs it: a subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import daqhub
from daqhub.cli import main as daqhub_main
from daqhub.config import TRANSPORT_KEYS
from daqhub.host import PluginHost
from daqhub.specs import CliCommand


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daqhub", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_version_and_help() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"daqhub {daqhub.__version__}"
    r = run("--help")
    assert r.returncode == 0
    for word in ("plugins", "validate", "schema", "exit codes"):
        assert word in r.stdout


def test_plugins_json_lists_every_distribution() -> None:
    r = run("plugins", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    versions = {d["name"]: d["version"] for d in info["distributions"]}
    assert versions["daqhub"] == daqhub.__version__
    for dist in ("daqhub-newport", "daqhub-elliptec", "daqhub-scpi", "daqhub-sims"):
        assert versions.get(dist), f"{dist} not listed: {versions}"


def test_plugins_table() -> None:
    r = run("plugins")
    assert r.returncode == 0 and "daqhub-newport" in r.stdout
    # each distribution is credited with its own commands, not every plugin's
    assert "commands from daqhub-elliptec: scan\n" in r.stdout
    assert "commands from daqhub-sims: check, new-plugin, sim\n" in r.stdout


def test_validate_lists_all_problems_and_exits_2(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text('[daqhub]\noutput_dr = "x"\n\n[[v2.instruments]]\nid = "a"\n'
                   'type = "no.such"\n')
    r = run("validate", str(lab))
    assert r.returncode == 2
    assert f"{lab}:2: unknown key 'output_dr'" in r.stderr
    assert f"{lab}:6: unknown instrument type 'no.such'" in r.stderr


def test_validate_valid_file(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text('[daqhub]\noutput_dir = "x"\n\n[[v2.instruments]]\nid = "stage"\n'
                   'type = "newport.esp300"\nport = "sim://esp300"\naxis = 1\n')
    r = run("validate", str(lab))
    assert r.returncode == 0, r.stderr
    assert "valid (1 instrument: stage [newport.esp300, v2])" in r.stdout


def test_schema_is_json() -> None:
    r = run("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert set(schema["properties"]) == {"daqhub", "v2", "v4", "storage", "routines"}


def test_no_command_prints_help_and_exits_2() -> None:
    r = run()
    assert r.returncode == 2 and "usage" in r.stdout


def test_ports_json_lists_serial_ports_and_visa_backends() -> None:
    r = run("ports", "--json", "--backend", "@py")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert isinstance(info["serial"], list)
    assert [v["backend"] for v in info["visa"]] == ["@py"]
    assert all("device" in p and "usb_identity" in p for p in info["serial"])


def test_ports_says_when_a_device_asked_about_does_not_exist() -> None:
    r = run("ports", "--backend", "@py", "/dev/daqhub-no-such-tty")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "/dev/daqhub-no-such-tty does not exist" in " ".join(r.stdout.split())
    r = run("ports", "--json", "--backend", "@py", "/dev/daqhub-no-such-tty")
    assert r.returncode == 1
    assert json.loads(r.stdout)["not_devices"] == {"/dev/daqhub-no-such-tty": "does not exist"}


def test_ports_reports_a_missing_visa_library_without_failing() -> None:
    r = run("ports", "--backend", "/nonexistent/libvisa.so")
    assert r.returncode == 0
    assert "not available" in r.stdout


def test_plugin_commands_reach_the_cli() -> None:
    r = run("sim", "models")          # added by daqhub-sims through daqhub_cli_commands
    assert r.returncode == 0 and "elliptec" in r.stdout.split()
    r = run("inspect", "--help")
    assert r.returncode == 0 and "--plot" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "--duration", "0"], "--duration: seconds must be a finite number above 0, got 0"),
    (["run", "--duration", "nan"], "--duration: seconds must be a finite number above 0"),
    (["run", "--duration", "-1"], "--duration: seconds must be a finite number above 0"),
    (["run", "--plain", "--interval", "0"], "--interval: seconds must be a finite number"),
    (["view", "grpc://127.0.0.1:1", "--duration", "inf"], "--duration: seconds must be"),
    (["inspect", "x", "--gap-factor", "0.5"], "--gap-factor: gap factor must be a finite "
                                              "number above 1"),
])
def test_a_number_that_cannot_mean_anything_is_refused_before_anything_runs(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--duration 0`` used to run forever and ``--interval 0`` to flood the terminal."""
    try:
        code = daqhub_main(args)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, what", [
    (["validate", ""], "argument lab: an empty string is no lab file"),
    (["run", "", "--duration", "1"], "argument lab: an empty string is no lab file"),
    (["run", "--output-dir", " ", "--duration", "1"], "no output directory"),
    (["inspect", ""], "argument path: an empty string is no path"),
    (["inspect", ".", "--plot", ""], "no plot file"),
    (["migrate", ""], "no lab file"),
    (["new", "-o", ""], "no output file"),
])
def test_an_empty_path_is_refused_not_taken_for_the_current_directory(
        args: list[str], what: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``Path("")`` is ``.``: an unset shell variable made ``inspect "$SESSION"`` summarise
    every session under the current directory, and ``run ""`` read ``.`` as the demo lab."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    try:
        code = daqhub_main(args)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    out = capsys.readouterr()
    assert what in out.err and "session" not in out.out


def test_an_output_file_that_cannot_be_written_is_refused_before_the_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No traceback after the work (or after every question of ``daqhub new``): the
    place, or the plot's format, is checked first, and nothing is written."""
    lab = Path(daqhub.__file__).parent / "demo_lab.toml"
    missing = tmp_path / "nowhere" / "out"
    cases = [
        (["migrate", str(lab), "-o", f"{missing}.toml"], f"{missing.parent} is not an existing"),
        (["migrate", str(lab), "-o", str(tmp_path), "--force"], "is a directory"),
        (["inspect", str(tmp_path), "--plot", f"{missing}.png"], "is not an existing directory"),
        (["inspect", str(tmp_path), "--plot", str(tmp_path / "plot.txt")],
         "must end in one of"),
        (["new", "-o", f"{missing}.toml"], "is not an existing directory"),
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # `new` must not ask anything
    for args, message in cases:
        assert daqhub_main(args) == 2, args
        out = capsys.readouterr()
        assert message in out.out + out.err, (args, out)
        assert "Traceback" not in out.err and "?" not in out.out, (args, out)
    assert list(tmp_path.iterdir()) == []


def test_new_refuses_a_lab_without_instruments_and_a_poll_rate_it_cannot_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "lab.toml"
    monkeypatch.setattr("sys.stdin", io.StringIO("data\nn\n"))
    assert daqhub_main(["new", "-o", str(out)]) == 1
    assert "the lab has no enabled instruments" in capsys.readouterr().err
    assert not out.exists()
    host = PluginHost()
    host.load_entry_points()
    own = [k for k in host.instrument_types()[("newport.1830c", "v2")].config_schema[
        "properties"] if k not in TRANSPORT_KEYS["serial"]]  # each asked, left at its default
    answers = ("data\ny\nnewport.1830c\nv2\nmeter\n/dev/daqhub-no-such-port\n"
               "sim://newport1830c\n" + "\n" * len(own) + "1e9\ninf\n10\nn\n\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(answers))
    assert daqhub_main(["new", "-o", str(out)]) == 0, capsys.readouterr()
    asked = capsys.readouterr().out
    assert asked.count(" to 10000 polls per second") == 2  # 1e9 and inf: refused at once
    assert "serial device '/dev/daqhub-no-such-port' does not exist" in asked  # and this
    assert "poll_hz = 10.0" in out.read_text()


def test_a_plugin_command_returning_none_succeeds_and_a_wrong_type_is_named(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """None (a plain Python main) is exit 0; a command that returns something else is the
    plugin's mistake, said with the command's name, not a TypeError after it ran."""
    ran: list[str] = []
    commands = {"hello": CliCommand("hello", "says hello", lambda argv: ran.append("hello")),
                "bad": CliCommand("bad", "returns text", lambda argv: ran.append("bad") or "ok")}
    monkeypatch.setattr(PluginHost, "cli_commands", lambda self: commands)
    assert daqhub_main(["hello"]) == 0
    assert daqhub_main(["bad"]) == 3
    assert ran == ["hello", "bad"]
    assert "daqhub bad: the command returned str 'ok', not an exit code" in \
        capsys.readouterr().err


@pytest.mark.parametrize("name, says", [("records.h5", "is the session's records"),
                                        ("points-scan-1.arrow", "is the session's records"),
                                        ("budget.json", "is not a data file")])
def test_inspect_of_a_file_that_is_no_data_file_says_what_it_is(
        name: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not "unreadable" (exit 1, as for a damaged data file): a usage mistake, exit 2."""
    path = tmp_path / name
    path.write_bytes(b"{}")
    assert daqhub_main(["inspect", str(path)]) == 2
    assert says in capsys.readouterr().err


def test_a_signal_delivered_twice_is_one_request_to_stop_and_a_second_one_forces() -> None:
    """GNU ``timeout -s INT`` signals daqhub and then its process group: the copy, arriving
    microseconds later, used to count as the second Ctrl-C that forces the exit."""
    import signal

    from daqhub.cli.run import ECHO_S, Interrupts

    echo = Interrupts()
    assert echo.arrived(signal.SIGINT, 100.0) == 1
    assert echo.arrived(signal.SIGINT, 100.0 + ECHO_S / 10) == 1  # the same one, twice
    assert echo.arrived(signal.SIGINT, 100.0 + ECHO_S * 4) == 2   # a second press: forces
    other = Interrupts()
    assert other.arrived(signal.SIGINT, 5.0) == 1
    assert other.arrived(signal.SIGTERM, 5.0) == 2  # another signal at once is a second one



# --- plugins that fail, --strict, and what the commands say where ---------------------------

BROKEN_PLUGIN = {  # an installed distribution, as a dist-info directory on PYTHONPATH
    "broken_dist-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: broken-dist\n"
                                         "Version: 0.1\nRequires-Dist: daqhub>=0.1,<0.2\n",
    "broken_dist-0.1.dist-info/entry_points.txt": "[daqhub]\nbroken = broken_mod\n"
                                                 "hookfail = hookfail_mod\n",
    "broken_mod.py": 'raise ImportError("the vendor SDK is not installed")\n',
    "hookfail_mod.py": (
        "from daqhub.hookspecs import hookimpl\n"
        "from daqhub.specs import CliCommand\n\n"
        "@hookimpl\ndef daqhub_instrument_types():\n"
        "    raise RuntimeError('types hook broke')\n\n"
        "@hookimpl\ndef daqhub_cli_commands():\n"
        "    return [CliCommand('failcmd', 'a command that raises', lambda argv: 1 / 0)]\n"),
}


@pytest.fixture
def broken_plugin(tmp_path: Path) -> Path:
    """A directory that, on PYTHONPATH, installs a distribution with a plugin that fails to
    import and one whose types hook raises and whose command raises."""
    root = tmp_path / "site"
    for name, text in BROKEN_PLUGIN.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def run_with(site: Path, *args: str, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "daqhub", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env)


def test_an_unknown_type_names_the_plugins_that_failed_to_load(
        broken_plugin: Path, tmp_path: Path) -> None:
    """The import error was only in ``daqhub plugins``; validate listed installed types."""
    lab = tmp_path / "lab.toml"
    lab.write_text('[[v4.instruments]]\nid = "tc"\ntype = "acme.tc9"\n'
                   'port = "sim://newport1830c"\n')
    r = run_with(broken_plugin, "validate", "--offline", str(lab))
    assert r.returncode == 2
    assert (f"{lab}:3: unknown instrument type 'acme.tc9'; plugins that failed to load: "
            "broken-dist 0.1 (broken): failed to import broken_mod: ImportError: the vendor "
            "SDK is not installed; broken-dist 0.1 (hookfail): hook daqhub_instrument_types "
            "raised RuntimeError: types hook broke (") in r.stderr
    assert "daqhub plugins lists every plugin problem)" in r.stderr


@pytest.mark.parametrize("args", [["ports", "--backend", "@py"],
                                  ["view", "grpc://127.0.0.1:1", "--duration", "1"],
                                  ["inspect", "."], ["failcmd"]])
def test_strict_fails_every_command_with_every_plugin_problem(
        args: list[str], broken_plugin: Path, tmp_path: Path) -> None:
    """``ports`` and ``view`` ignored --strict; ``inspect`` and plugin commands listed only
    the problems found before any hook ran."""
    r = run_with(broken_plugin, "--strict", *args, cwd=tmp_path)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "daqhub: 2 plugin problem(s) (strict mode):" in r.stderr
    assert "failed to import broken_mod" in r.stderr
    assert "hook daqhub_instrument_types raised RuntimeError: types hook broke" in r.stderr


def test_a_plugin_command_that_raises_is_named_with_its_plugin(broken_plugin: Path) -> None:
    r = run_with(broken_plugin, "failcmd")
    assert r.returncode == 1
    assert r.stderr == ("daqhub failcmd: plugin broken-dist 0.1's command 'failcmd' failed: "
                        "ZeroDivisionError: division by zero\n")


def test_a_lab_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Windows editors write one; it was "not valid TOML: Invalid statement, column 1"."""
    lab = tmp_path / "lab.toml"
    lab.write_text('\ufeff[daqhub]\noutput_dir = "x"\n\n[[v2.instruments]]\nid = "stage"\n'
                   'type = "newport.esp300"\nport = "sim://esp300"\naxis = 1\n',
                   encoding="utf-8")
    r = run("validate", str(lab))
    assert r.returncode == 0, r.stderr
    assert "valid (1 instrument: stage [newport.esp300, v2])" in r.stdout


@pytest.mark.parametrize("args", [["missing"], ["missing", "--json"], [".", "--plot", "p.txt"],
                                  ["empty"]])
def test_inspect_says_its_errors_on_stderr(args: list[str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """They were on stdout, under --json too, where a script reads the summary."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert daqhub_main(["inspect", *args]) in (1, 2)
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("daqhub inspect: ")
