"""What a user is told when a plugin, a distribution or a part of a dependency is missing or
clashes (the b1 audit of installation and plugin discovery): the storage backend daqhub
ships is not taken away by a plugin's of the same name, a lab naming a backend that is not
in use says why, a plugin that failed to load is said at the start of a run and left out of
the session's versions, a command of a distribution not installed names what to install,
``pyarrow.flight`` missing is one line, and ``validate`` says what ``run`` will refuse."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from daqhub import firstparty
from daqhub.cli import main as daqhub_main
from daqhub.config import ConfigError, parse
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.specs import StorageBackend
from daqhub.storage import versions_of

#: a lab of one simulated instrument (daqhub-sims) that runs without hardware
POWER = '[[v2.instruments]]\nid = "power"\ntype = "newport.1830c"\nport = "sim://newport1830c"\n'
NO_FLIGHT = "this pyarrow has no Flight (pyarrow.flight is missing): install pyarrow's wheel"


def _never(target: object) -> object:
    raise AssertionError("a backend opened during validation")


def backend_plugin(name: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(daqhub_storage_backends=hookimpl(
        lambda: [StorageBackend(name, _never, f"a third-party {name}")]))


@pytest.fixture
def installed() -> PluginHost:
    host = PluginHost()
    host.load_entry_points()
    return host


def problems_of(text: str, host: PluginHost, tmp_path: Path) -> list[str]:
    try:
        parse(text, "lab.toml", host, tmp_path)
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


# --- a storage backend named like daqhub's own --------------------------------------------

def test_a_plugins_hdf5_leaves_daqhubs_own_in_use_and_is_said_not_used(
        installed: PluginHost, tmp_path: Path) -> None:
    """Both were dropped: every lab storing v2 data (the demo lab too) was told "unknown
    storage backend 'hdf5' (installed backends: arrow)"."""
    installed.register(backend_plugin("hdf5"), "dupstore:store", "dupstore", "1.0")
    lab = f'[daqhub]\noutput_dir = "data"\n[v2]\nstorage = "hdf5"\n{POWER}'
    assert problems_of(lab, installed, tmp_path) == []
    owner = installed.storage_backend_owner("hdf5")
    assert owner is not None and owner.distribution == "daqhub"
    said = [str(p) for p in installed.problems if p.distribution == "dupstore"]
    assert said == ["dupstore 1.0 (store): storage backend 'hdf5' is declared by daqhub too "
                    "(daqhub 0.1.0, dupstore 1.0); daqhub's own is used, not this one"], said


def test_a_backend_two_plugins_declare_is_named_as_a_clash(tmp_path: Path) -> None:
    host = PluginHost()
    for dist in ("store-a", "store-b"):
        host.register(backend_plugin("fast"), f"{dist}:store", dist, "1.0")
    lab = f'[daqhub]\noutput_dir = "data"\n[v2]\nstorage = "fast"\n{POWER}'
    said = problems_of(lab, host, tmp_path)
    assert ("lab.toml:4: storage backend 'fast' is declared by several installed "
            "distributions: store-a 1.0, store-b 1.0; none of them is used (uninstall all of "
            "them but one (daqhub plugins lists them))") in said, said


def test_an_unknown_backend_names_the_plugins_that_failed_to_load(
        installed: PluginHost, tmp_path: Path) -> None:
    """As an unknown instrument type does: the backend's plugin may be the one that failed."""
    installed.register(types.SimpleNamespace(), "vendor:store", "vendor-store", "2.0")
    lab = f'[daqhub]\noutput_dir = "data"\n[v2]\nstorage = "vendorstore"\n{POWER}'
    [said] = problems_of(lab, installed, tmp_path)
    assert said.startswith("lab.toml:4: unknown storage backend 'vendorstore'; plugins that "
                           "failed to load: vendor-store 2.0 (store): "), said
    assert said.endswith("; daqhub plugins lists every plugin problem)"), said


# --- a type clash suggests the first-party provider ---------------------------------------

def test_a_type_clash_suggests_the_first_party_distribution(
        installed: PluginHost, tmp_path: Path) -> None:
    """It suggested the alphabetically first: here the impostor."""
    esp = installed.instrument_type("newport.esp300", "v4")
    installed.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(lambda: [esp])),
                       "aaa:types", "aaa-impostor", "1.0")
    lab = '[[v4.instruments]]\nid = "stage"\ntype = "newport.esp300"\nport = "sim://esp300"\n'
    [said] = problems_of(lab, installed, tmp_path)
    assert "declared by several installed distributions: aaa-impostor 1.0, daqhub-newport " \
        "0.1.0" in said, said
    assert said.endswith('[daqhub.providers] "newport.esp300" = "daqhub-newport")'), said


# --- a plugin that failed to load: said by run, not in the session's versions ---------------

BROKEN = {  # an installed distribution, as a dist-info directory on PYTHONPATH
    "elog_notify-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: elog-notify\n"
                                          "Version: 1.0\n",
    "elog_notify-1.0.dist-info/entry_points.txt": "[daqhub]\nelog = elog_notify\n",
    "elog_notify.py": 'raise ImportError("the e-log vendor library is not installed")\n',
}


def daqhub(*args: str, cwd: Path, site: Path | None = None, block: str = "",
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``daqhub ARGS`` in a fresh process; ``site`` on its path, the module ``block`` made
    missing (as on a PC without it)."""
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    code = (f"import sys; sys.modules[{block!r}] = None; " if block else "import sys; ") + \
        f"from daqhub.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def test_run_says_which_plugin_failed_to_load(tmp_path: Path) -> None:
    """A plugin of session hooks only (an e-log uploader) that failed to import was never
    mentioned: the run said nothing and exited 0."""
    site = tmp_path / "site"
    for name, text in BROKEN.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    (tmp_path / "lab.toml").write_text(POWER)
    r = daqhub("run", "lab.toml", "--duration", "0.5", "--plain", "--no-storage",
               cwd=tmp_path, site=site)
    assert r.returncode == 0, r.stderr
    assert ("daqhub: a plugin failed to load, the run goes on without it: elog-notify 1.0 "
            "(elog): failed to import elog_notify: ImportError: the e-log vendor library is "
            "not installed\n") in r.stderr, r.stderr


def test_a_distribution_whose_plugin_did_not_load_is_not_in_the_sessions_versions(
        installed: PluginHost) -> None:
    """The files recorded it as present in a session it took no part in."""
    installed.register(types.SimpleNamespace(), "elog:notify", "elog-notify", "1.0")
    versions = versions_of(installed)
    assert "elog-notify" not in versions
    assert versions["daqhub"] and versions["daqhub-newport"]
    assert any(p.distribution == "elog-notify" for p in installed.load_problems())


# --- a command of a distribution that is not installed ------------------------------------

@pytest.mark.parametrize(("argv", "dist", "folder"), [
    (["check"], "daqhub-sims", "sims"), (["sim", "models"], "daqhub-sims", "sims"),
    (["new-plugin", "x"], "daqhub-sims", "sims"),
    (["scan", "/dev/ttyUSB0"], "daqhub-elliptec", "drivers/elliptec")])
def test_a_command_of_a_distribution_not_installed_names_what_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
        dist: str, folder: str) -> None:
    """argparse answered "invalid choice: 'check'", with nothing to install."""
    missing = {"daqhub-sims": ("check", "sim", "new-plugin"), "daqhub-elliptec": ("scan",)}
    real_installed, real_commands = firstparty.is_installed, PluginHost.cli_commands
    monkeypatch.setattr(firstparty, "is_installed",
                        lambda d: d not in missing and real_installed(d))
    monkeypatch.setattr(PluginHost, "cli_commands", lambda self: {
        k: c for k, c in real_commands(self).items() if not any(k in m for m in
                                                                  missing.values())})
    assert daqhub_main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"daqhub {argv[0]} is provided by {dist}: pip install {dist} (from a daqhub "
                   f"checkout: pip install ./{folder})\n"), err


# --- pyarrow without Flight -----------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["run", "lab.toml", "--serve", "127.0.0.1:8815", "--no-storage", "--duration", "1", "--plain"],
    ["tail", "grpc://127.0.0.1:1"],
    ["record", "grpc://127.0.0.1:1", "--output-dir", "copy"],
    ["view", "grpc://127.0.0.1:1", "--web", "127.0.0.1:0"]], ids=lambda a: a[0])
def test_pyarrow_without_flight_is_one_line_naming_what_to_install(
        tmp_path: Path, argv: list[str]) -> None:
    """run --serve ended in a traceback (exit 1); tail and record blamed "plugin daqhub's
    command"."""
    (tmp_path / "lab.toml").write_text(POWER)
    r = daqhub(*argv, cwd=tmp_path, block="pyarrow.flight")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "plugin daqhub" not in r.stderr, r.stderr
    [line] = r.stderr.splitlines()
    said = {"run": f"daqhub: cannot serve live data: {NO_FLIGHT}"}.get(
        argv[0], f"daqhub {argv[0]}: {NO_FLIGHT}")
    assert line.startswith(said), line
    assert "starting" not in r.stdout


# --- validate says what run refuses for want of a library -----------------------------------

def test_validate_says_a_visa_library_is_missing_as_run_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It called the lab valid; run then failed to start it."""
    from pyvisa.ctwrapper.highlevel import IVIVisaLibrary

    from daqhub.cli.ports import visa_resources

    if IVIVisaLibrary.get_library_paths():
        pytest.skip("this machine has a VISA library for @ivi")
    lab = tmp_path / "lab.toml"
    lab.write_text('[daqhub]\noutput_dir = "data"\n\n[[v4.instruments]]\nid = "dmm"\n'
                   'type = "scpi.dmm"\nresource = "GPIB0::5::INSTR"\nvisa_backend = "@ivi"\n')
    assert daqhub_main(["validate", str(lab)]) == 2
    out = capsys.readouterr().err
    why = visa_resources("@ivi")["error"]
    assert f"  {lab}:8: dmm: VISA @ivi: {why}\n" in out, out
    assert daqhub_main(["validate", "--offline", str(lab)]) == 0  # away from the lab PC


def test_validate_says_gpib_on_pyvisa_py_needs_its_library(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    if importlib.util.find_spec("gpib") or importlib.util.find_spec("gpib_ctypes"):
        pytest.skip("this machine has a GPIB library for pyvisa-py")
    lab = tmp_path / "lab.toml"
    lab.write_text('[daqhub]\noutput_dir = "data"\n\n[[v4.instruments]]\nid = "dmm"\n'
                   'type = "scpi.dmm"\nresource = "GPIB0::5::INSTR"\n')
    assert daqhub_main(["validate", str(lab)]) == 2
    out = capsys.readouterr().err
    assert f"  {lab}:7: dmm: Please install linux-gpib (Linux) or gpib-ctypes" in out, out
    lab.write_text('[daqhub]\noutput_dir = "data"\n\n[[v4.instruments]]\nid = "dmm"\n'
                   'type = "scpi.dmm"\nresource = "TCPIP::10.0.0.2::INSTR"\n')
    assert daqhub_main(["validate", str(lab)]) == 0, capsys.readouterr().err


def test_validate_says_pyarrow_without_flight_for_a_lab_that_serves(tmp_path: Path) -> None:
    """``[daqhub.serve]`` on a pyarrow without Flight: validate called the lab valid, and run
    refused it (exit 2)."""
    (tmp_path / "lab.toml").write_text(f'[daqhub.serve]\naddress = "127.0.0.1:0"\n\n{POWER}')
    r = daqhub("validate", "lab.toml", cwd=tmp_path, block="pyarrow.flight")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"  lab.toml:1: cannot serve live data: {NO_FLIGHT}" in r.stderr, r.stderr
    run = daqhub("run", "lab.toml", "--no-storage", "--plain", "--duration", "1",
                 cwd=tmp_path, block="pyarrow.flight")
    assert run.returncode == 2 and f"daqhub: cannot serve live data: {NO_FLIGHT}" in run.stderr
    offline = daqhub("validate", "--offline", "lab.toml", cwd=tmp_path, block="pyarrow.flight")
    assert offline.returncode == 0, offline.stderr  # away from the lab PC
    (tmp_path / "lab.toml").write_text(POWER)  # a lab that does not serve needs no Flight
    assert daqhub("validate", "lab.toml", cwd=tmp_path, block="pyarrow.flight").returncode == 0


# --- a command of a distribution installed, whose plugin failed to load ---------------------

def test_a_command_whose_plugin_failed_to_load_says_why(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """daqhub-sims installed, its plugin failing to import: ``daqhub check`` was argparse's
    "invalid choice: 'check'", with neither the install hint (it is installed) nor why."""
    monkeypatch.setitem(sys.modules, "daqhub_sims.plugin", None)  # its import fails
    assert daqhub_main(["check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("daqhub check is provided by daqhub-sims, installed, whose plugin "
                          "failed to load: daqhub-sims "), err
    assert "(sims): failed to import daqhub_sims.plugin: ModuleNotFoundError" in err, err
    assert "invalid choice" not in err
