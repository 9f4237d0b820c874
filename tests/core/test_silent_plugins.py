"""A plugin that registers nothing is a plugin problem, not a silent "-" in the listing.

A hook function without ``@hookimpl`` was never registered, and a ``daqhub_instrument_types``
that forgot ``return`` gave None, read as "nothing to add": both were listed as
``daqhub-x ... -``, ``daqhub --strict plugins`` exited 0, and a lab said only "unknown
instrument type 'x.tc9'", naming no plugin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daqhub.host import PluginHost

GROUP = "daqhub_test_silent"

#: module name -> its source: what a third-party author writes by mistake
MODULES = {
    "nohookimpl": textwrap.dedent("""
        from daqhub.measurement import ChannelSpec
        from daqhub.specs import InstrumentType

        def daqhub_instrument_types():  # no @hookimpl
            return [InstrumentType("nohookimpl.tc9", "v2", "none", object,
                                   [ChannelSpec("t", "scalar", "K")], "never registered")]
        """),
    "retnone": textwrap.dedent("""
        from daqhub.hookspecs import hookimpl
        from daqhub.measurement import ChannelSpec
        from daqhub.specs import InstrumentType

        @hookimpl
        def daqhub_instrument_types():
            [InstrumentType("retnone.tc9", "v2", "none", object,
                            [ChannelSpec("t", "scalar", "K")], "built, not returned")]
        """),
    "halfmarked": textwrap.dedent("""
        from daqhub.hookspecs import hookimpl

        @hookimpl
        def daqhub_serial_url_packages():
            return []

        def daqhub_validate_config(config):  # no @hookimpl: the lab check never runs
            return ["every lab is wrong"]
        """),
    "nothing": "VERSION = 1\n",
    "quietcheck": textwrap.dedent("""
        from daqhub.hookspecs import hookimpl

        @hookimpl
        def daqhub_validate_config(config):
            if "nonsense" in config:  # finds nothing to say: None, not a forgotten return
                return ["nonsense"]
        """),
    "helperonly": textwrap.dedent("""
        def daqhub_vendor_dll_path():  # a helper of the author's, no hook
            return "vendor.dll"
        """),
}


def write_site(root: Path, group: str) -> Path:
    """Each module of MODULES as an installed distribution ``daqhub-<name>`` 1.0 whose
    entry point of ``group`` names it."""
    for name, source in MODULES.items():
        (root / f"oops_{name}.py").write_text(source)
        info = root / f"daqhub_{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: daqhub-{name}\n"
                                       "Version: 1.0\nRequires-Dist: daqhub>=0.1\n")
        (info / "entry_points.txt").write_text(f"[{group}]\n{name} = oops_{name}\n")
    return root


@pytest.fixture
def site(tmp_path: Path):
    write_site(tmp_path, GROUP)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in MODULES:
        sys.modules.pop(f"oops_{name}", None)


def test_a_plugin_that_registers_nothing_is_a_problem_naming_it(site: Path) -> None:
    host = PluginHost()
    host.load_entry_points(GROUP)
    host.instrument_types(), host.serial_url_packages()
    problems = {p.distribution: p.error for p in host.problems}
    assert problems["daqhub-nohookimpl"] == (
        "oops_nohookimpl implements no daqhub hook, so it adds nothing; "
        "daqhub_instrument_types lack(s) @hookimpl (from daqhub.hookspecs import hookimpl)")
    assert problems["daqhub-nothing"] == ("oops_nothing implements no daqhub hook, so it adds "
                                          "nothing")
    assert problems["daqhub-retnone"] == ("hook daqhub_instrument_types returned None: did it "
                                          "forget `return`? (return [] when it has nothing)")
    assert problems["daqhub-helperonly"] == ("oops_helperonly implements no daqhub hook, so "
                                             "it adds nothing")  # its helper is no hook
    assert "daqhub-quietcheck" not in problems
    assert host.validate_config({}) == []  # a lab check with nothing to say: no lab is wrong
    assert problems["daqhub-halfmarked"] == (
        "daqhub_validate_config lack(s) @hookimpl (from daqhub.hookspecs import hookimpl): "
        "daqhub never calls it")
    registered = {i.distribution for i in host.plugins.values()}
    assert "daqhub-nohookimpl" not in registered and "daqhub-nothing" not in registered
    assert {"daqhub-retnone", "daqhub-halfmarked"} <= registered  # what they mark still works


@pytest.mark.timeout(60)
def test_strict_plugins_exits_3_and_a_lab_names_the_plugin(tmp_path: Path) -> None:
    """What a CI job and a lab see: ``daqhub --strict plugins`` fails, and the lab's
    unknown type comes with the plugin that failed to provide it."""
    (tmp_path / "site").mkdir()
    write_site(tmp_path / "site", "daqhub")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "site"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    strict = subprocess.run([sys.executable, "-m", "daqhub", "--strict", "plugins"],
                            capture_output=True, text=True, timeout=50, env=env)
    assert strict.returncode == 3, strict.stdout + strict.stderr
    assert ("daqhub-nohookimpl 1.0 (nohookimpl): oops_nohookimpl implements no daqhub hook"
            in strict.stderr)
    assert ("daqhub-retnone 1.0 (retnone): hook daqhub_instrument_types returned None: did "
            "it forget `return`?" in strict.stderr)
    lab = tmp_path / "lab.toml"
    lab.write_text('[[v2.instruments]]\nid = "tc"\ntype = "nohookimpl.tc9"\n')
    checked = subprocess.run([sys.executable, "-m", "daqhub", "validate", "--offline",
                              str(lab)], capture_output=True, text=True, timeout=50, env=env)
    assert checked.returncode == 2
    assert "1 problem(s)" in checked.stderr, checked.stderr  # quietcheck's None is no problem
    assert ("unknown instrument type 'nohookimpl.tc9'; plugins that failed to load: "
            in checked.stderr), checked.stderr
    assert ("daqhub-nohookimpl 1.0 (nohookimpl): oops_nohookimpl implements no daqhub hook"
            in checked.stderr), checked.stderr
