"""``daqhub validate`` says what ``daqhub run`` will say, as a user runs both (the audit's
cases): a lab ``run`` refuses is not called valid, and each problem is said once, on the
line of the key at fault, as the user's; a run that fails to start says why in words."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from daqhub.cli import main as daqhub_main
from daqhub.config import ConfigError, parse, runnable
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.specs import InstrumentType

ROOT = Path(__file__).resolve().parents[2]
POWER = '[[v2.instruments]]\nid = "power"\ntype = "newport.1830c"\nport = "sim://newport1830c"\n'


@pytest.fixture(scope="module")
def installed() -> PluginHost:
    """The installed plugins, as the commands load them."""
    host = PluginHost()
    host.load_entry_points()
    return host


def validate(capsys: pytest.CaptureFixture[str], lab: Path, *more: str) -> tuple[int, str]:
    code = daqhub_main(["validate", str(lab), *more])
    out = capsys.readouterr()
    return code, out.out + out.err


def run(capsys: pytest.CaptureFixture[str], lab: Path, *more: str) -> tuple[int, str]:
    code = daqhub_main(["run", str(lab), "--duration", "1", "--plain", "--no-storage", *more])
    out = capsys.readouterr()
    return code, out.out + out.err


# --- 1. [daqhub.serve] and [daqhub.web]: the rules run applies, on the key's line ----------

REFUSED = [
    ('[daqhub.serve]\naddress = "not an address"\n',
     "lab.toml:2: serve.address 'not an address': expected HOST:PORT"),
    ('[daqhub.serve]\naddress = "127.0.0.1:99999"\n',
     "lab.toml:2: serve.address '127.0.0.1:99999': expected HOST:PORT"),
    ('[daqhub.web]\nlisten = "127.0.0.1:70000"\n',
     "lab.toml:2: web.listen '127.0.0.1:70000': the port must be a number from 0 to 65535"),
    ('[daqhub.serve]\naddress = "0.0.0.0:0"\n',
     "lab.toml:2: serving on 0.0.0.0 (not loopback) needs a token: set DAQHUB_TOKEN"),
    ('[daqhub.serve]\nactions = true\n',
     "lab.toml:2: remote commands (actions = true) need a token: set DAQHUB_TOKEN"),
]


@pytest.mark.parametrize(("table", "said"), REFUSED,
                         ids=["not-an-address", "port-99999", "web-port-70000", "no-token",
                              "actions-no-token"])
def test_validate_refuses_on_the_keys_line_what_run_refuses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        table: str, said: str) -> None:
    """Each was "valid" to validate, then refused by run (exit 2) naming no line, the web
    one as a --web flag the user never gave."""
    monkeypatch.delenv("DAQHUB_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    lab = tmp_path / "lab.toml"
    lab.write_text(f"{table}\n{POWER}")
    code, out = validate(capsys, lab)
    assert code == 2 and said.replace("lab.toml", str(lab)) in out, out
    code, out = run(capsys, lab)
    assert code == 2 and said.replace("lab.toml", str(lab)) in out, out
    assert "--web" not in out and "starting" not in out


def test_offline_validate_leaves_the_token_to_the_lab_pc_but_not_the_address(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DAQHUB_TOKEN", raising=False)
    lab = tmp_path / "lab.toml"
    lab.write_text(f'[daqhub.serve]\naddress = "0.0.0.0:0"\n\n{POWER}')
    assert validate(capsys, lab, "--offline")[0] == 0
    monkeypatch.setenv("DAQHUB_TOKEN", "a-token")
    assert validate(capsys, lab)[0] == 0  # the token is there: served beyond loopback
    lab.write_text(f'[daqhub.serve]\naddress = "lab-pc"\n\n{POWER}')
    code, out = validate(capsys, lab, "--offline")
    assert code == 2 and f"{lab}:2: serve.address 'lab-pc': expected HOST:PORT" in out, out


def test_each_tls_problem_is_on_its_keys_line(tmp_path: Path, installed: PluginHost) -> None:
    text = f'[daqhub.serve]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n\n{POWER}'
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", installed, tmp_path)
    assert {(p.line, p.message) for p in info.value.problems} == {
        (2, f"TLS file {tmp_path / 'cert.pem'} does not exist"),
        (3, f"TLS file {tmp_path / 'key.pem'} does not exist")}
    runnable(parse(text, "lab.toml", installed, tmp_path, offline=True))  # the lab PC's files


def test_a_flag_is_named_as_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    lab = tmp_path / "lab.toml"
    lab.write_text(POWER)
    code, out = run(capsys, lab, "--serve", "127.0.0.1:99999")
    assert code == 2 and "cannot serve live data: --serve '127.0.0.1:99999': expected " \
                         "HOST:PORT" in out, out


def test_an_address_a_flag_overrides_is_not_judged_by_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed: PluginHost,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``run --serve 127.0.0.1:0`` of a lab serving on 0.0.0.0 without a token ran, then
    exited 2 at load for the file's address, which the flag replaces (and --web alike)."""
    monkeypatch.delenv("DAQHUB_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    lab = tmp_path / "lab.toml"
    lab.write_text(f'[daqhub.serve]\naddress = "0.0.0.0:8815"\n\n'
                   f'[daqhub.web]\nlisten = "127.0.0.1:99999"\n\n{POWER}')
    code, out = validate(capsys, lab)  # validate checks the file as it is
    assert code == 2 and f"{lab}:2: serving on 0.0.0.0 (not loopback) needs a token" in out \
        and f"{lab}:5: web.listen '127.0.0.1:99999'" in out, out
    code, out = run(capsys, lab, "--serve", "127.0.0.1:0", "--web", "127.0.0.1:0")
    assert code == 0, out
    # what does not depend on the address is still the file's: actions need the token
    text = f'[daqhub.serve]\naddress = "0.0.0.0:8815"\nactions = true\n\n{POWER}'
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", installed, tmp_path, overridden={("serve", "address")})
    [problem] = info.value.problems
    assert problem.line == 3 and problem.message.startswith("remote commands (actions = true)")


def test_a_disabled_dashboard_table_is_judged_by_its_schema_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """run does not read ``[daqhub.web]`` with ``enabled = false`` (no --web): its listen
    address was refused all the same."""
    lab = tmp_path / "lab.toml"
    lab.write_text(f'[daqhub.web]\nenabled = false\nlisten = "127.0.0.1:99999"\n\n{POWER}')
    code, out = validate(capsys, lab)
    assert code == 0, out
    lab.write_text(f'[daqhub.web]\nenabled = false\nlisten = 8640\n\n{POWER}')
    code, out = validate(capsys, lab)
    assert code == 2 and f"{lab}:3:" in out, out


# --- 2. a VISA library that is not there is said so when the run starts ---------------------

def test_a_run_without_a_visa_library_says_what_ports_says(tmp_path: Path) -> None:
    """It said "dmm: Could not open VISA library:" and an empty line, exit 1."""
    from pyvisa.ctwrapper.highlevel import IVIVisaLibrary

    from daqhub.cli.ports import visa_resources

    if IVIVisaLibrary.get_library_paths():
        pytest.skip("this machine has a VISA library for @ivi")
    lab = tmp_path / "lab.toml"
    lab.write_text('[[v4.instruments]]\nid = "dmm"\ntype = "scpi.dmm"\n'
                   'resource = "GPIB0::5::INSTR"\nvisa_backend = "@ivi"\n')
    ran = subprocess.run([sys.executable, "-m", "daqhub", "run", str(lab), "--duration", "1",
                          "--plain", "--no-storage"], capture_output=True, text=True,
                         timeout=50, cwd=tmp_path)
    why = visa_resources("@ivi")["error"]
    assert why.startswith("no VISA library found on this machine")
    assert ran.returncode == 1 and f"  dmm: VISA @ivi: {why}\n" in ran.stderr, ran.stderr


# --- 3. a scpi.custom block's mistake: once, the user's, not a plugin bug -------------------

@pytest.mark.parametrize(("readings", "said"), [
    ('{name = "v", query = "MEAS:VOLT:DC?"}, {name = "v", query = "MEAS:CURR:DC?"}',
     "readings[1] ('v'): the name is used twice"),
    ('{name = "v", query = "MEAS:VOLT:DC?", regex = "(.*)"}',
     "readings[0] ('v'): 'regex' is only used with parse = \"regex\""),
    ('{name = "v", query = "MEAS:VOLT:DC?", parse = "regex", regex = "(a)(b)"}',
     "readings[0] ('v'): regex '(a)(b)' must have exactly one group"),
], ids=["name-twice", "regex-without-parse", "two-groups"])
def test_a_custom_blocks_mistake_is_said_once_as_the_users(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], readings: str, said: str) -> None:
    """Each was said twice, the first time at line 1 as "a bug in the plugin"."""
    lab = tmp_path / "lab.toml"
    lab.write_text('[daqhub]\noutput_dir = "data"\n\n[[v4.instruments]]\nid = "box"\n'
                   'type = "scpi.custom"\nresource = "GPIB0::5::INSTR"\n'
                   f'readings = [{readings}]\n')
    code, out = validate(capsys, lab)
    assert code == 2 and "1 problem(s)" in out, out
    assert f"{lab}:4: [[v4.instruments]] #1 (box, scpi.custom): {said}" in out, out
    assert "bug in the plugin" not in out


def test_a_channels_function_that_fails_on_a_block_its_plugin_accepts_is_a_bug(
        host: PluginHost, tmp_path: Path) -> None:
    """What a plugin's own check refuses is the user's; a block it accepts that its channels
    function cannot read is the plugin's bug, and still said so."""
    def channels(block: object) -> list[ChannelSpec]:
        raise ValueError("cannot read this block")

    def factory(ctx: object) -> None:  # not called by validation
        raise AssertionError("factory called during validation")

    itype = InstrumentType("test.bug", "v4", "none", factory, channels, "a buggy type")
    host.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(lambda: [itype])),
                  "buggy", "buggy-dist", "1.0")
    with pytest.raises(ConfigError) as info:
        parse('[[v4.instruments]]\nid = "b"\ntype = "test.bug"\n', "lab.toml", host, tmp_path)
    [problem] = info.value.problems
    assert problem.line == 1 and "raised ValueError: cannot read this block" in problem.message
    assert problem.suggestion == "a bug in the plugin; report it to its authors"


# --- 6. the lab guide's lab file validates as written ---------------------------------------

def test_the_guides_lab_file_validates(tmp_path: Path, installed: PluginHost) -> None:
    """Copied from "Writing a lab file", it named an instrument it did not define."""
    guide = (ROOT / "docs" / "lab-guide.md").read_text()
    section = guide[guide.index("\n## Writing a lab file\n"):]
    text = re.search(r"```toml\n(.*?)```", section, re.S)
    assert text is not None
    lab = runnable(parse(text.group(1), "guide.toml", installed, tmp_path, offline=True))
    assert {i.id for i in lab.instruments()} >= {r["instrument"] for r in lab.routines}
