"""The plugin host against real entry-point discovery of throwaway distributions."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from daqhub.host import PluginError, PluginHost

GROUP = "daqhub_test_plugins"

GOOD = """
from daqhub.hookspecs import hookimpl
from daqhub.measurement import ChannelSpec
from daqhub.specs import InstrumentType

def _make(ctx):
    return object()

@hookimpl
def daqhub_instrument_types():
    return [InstrumentType("{type}", "v2", "none", _make,
                           [ChannelSpec("x", "scalar", "V")], "test instrument")]
"""

MODULES = {
    "good": GOOD.format(type="good.meter"),
    "twin_a": GOOD.format(type="twin.meter"),
    "twin_b": GOOD.format(type="twin.meter"),
    "broken_import": "import this_module_does_not_exist\n",
    "exits": "import sys\nsys.exit(0)  # every daqhub command used to end here, with 0\n",
    "takes_run": textwrap.dedent("""
        from daqhub.hookspecs import hookimpl
        from daqhub.specs import CliCommand
        @hookimpl
        def daqhub_cli_commands():
            return [CliCommand("run", "not daqhub's run", lambda argv: 0),
                    CliCommand("takes-run-extra", "a command of its own", lambda argv: 0)]
        """),
    "raises": textwrap.dedent("""
        from daqhub.hookspecs import hookimpl
        @hookimpl
        def daqhub_instrument_types():
            raise RuntimeError("driver table is corrupt")
        """),
    "misspelled": textwrap.dedent("""
        from daqhub.hookspecs import hookimpl
        @hookimpl
        def daqhub_validate_config(confg):
            return []
        """),
    "unknown_hook": textwrap.dedent("""
        from daqhub.hookspecs import hookimpl
        @hookimpl
        def daqhub_instrument_typez():
            return []
        """),
    "not_a_list": textwrap.dedent("""
        from daqhub.hookspecs import hookimpl
        @hookimpl
        def daqhub_instrument_types():
            return 42
        """),
    "name_clash": textwrap.dedent("""
        from daqhub.driver import Parameter, Session
        from daqhub.hookspecs import hookimpl
        @hookimpl
        def daqhub_instrument_types():
            class Meter(Session):  # Python 3.11 wraps what __set_name__ raises
                settings = Parameter("S?")
            return []
        """),
    "bad_type": GOOD.format(type="NoDotsHere"),
    "klass": textwrap.dedent("""
        class Plugin:
            pass
        """),
    "too_new": GOOD.format(type="future.meter"),
}


def make_dist(site: Path, dist: str, module: str, source: str, target: str | None = None,
              requires: str = "daqhub>=0.1") -> None:
    """A distribution as pip would leave it: a package plus a *.dist-info folder."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\nRequires-Dist: {requires}\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{module} = {target or module}\n")


@pytest.fixture
def site(tmp_path: Path):
    for name, src in MODULES.items():
        mod = f"dqtest_{name}"
        make_dist(tmp_path, f"dqtest-{name.replace('_', '-')}", mod, src,
                  target=f"{mod}:Plugin" if name == "klass" else None,
                  requires="daqhub>=99" if name == "too_new" else "daqhub>=0.1")
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in MODULES:
        sys.modules.pop(f"dqtest_{name}", None)


def problems_of(host: PluginHost) -> dict[str, str]:
    return {p.distribution: p.error for p in host.problems}


def test_every_broken_plugin_is_reported_and_the_rest_works(site: Path) -> None:
    host = PluginHost()
    host.load_entry_points(GROUP)
    types = host.instrument_types()
    # the good plugin works despite all the broken ones
    assert ("good.meter", "v2") in types
    problems = problems_of(host)
    assert "No module named 'this_module_does_not_exist'" in problems["dqtest-broken-import"]
    assert problems["dqtest-exits"] == "failed to import dqtest_exits: SystemExit: 0"
    assert "driver table is corrupt" in problems["dqtest-raises"]
    assert "(from " in problems["dqtest-name-clash"]  # the toolkit's own words, not only
    assert "Session.settings" in problems["dqtest-name-clash"]  # Python's wrapper
    assert "confg" in problems["dqtest-misspelled"]
    assert "daqhub_instrument_typez" in problems["dqtest-unknown-hook"]
    assert "must return a list" in problems["dqtest-not-a-list"]
    assert "vendor.model" in problems["dqtest-bad-type"]
    assert "names a class" in problems["dqtest-klass"]
    assert "requires daqhub >=99" in problems["dqtest-too-new"]
    # a clash is reported for both sides and neither wins silently
    assert "twin.meter" in problems["dqtest-twin-a"] and "dqtest-twin-b" in problems[
        "dqtest-twin-a"]
    assert "dqtest-twin-b" in problems
    assert ("twin.meter", "v2") not in types
    # each report names distribution and version
    assert all(p.version == "1.2.3" for p in host.problems)
    assert ("future.meter", "v2") not in types


def test_listing_shows_good_and_broken(site: Path) -> None:
    host = PluginHost()
    host.load_entry_points(GROUP)
    info = host.describe()
    names = {d["name"]: d for d in info["distributions"]}
    assert names["dqtest-good"]["version"] == "1.2.3"
    assert names["dqtest-good"]["instrument_types"][0]["name"] == "good.meter"
    assert {p["distribution"] for p in info["problems"]} >= {"dqtest-broken-import",
                                                             "dqtest-raises"}


def test_strict_mode_turns_a_report_into_a_failure(site: Path) -> None:
    host = PluginHost(strict=True)
    with pytest.raises(PluginError, match="dqtest-"):
        host.load_entry_points(GROUP)
        host.instrument_types()


def test_notification_that_raises_is_reported_not_propagated() -> None:
    import types as pytypes

    from daqhub.hookspecs import hookimpl

    seen = []

    @hookimpl
    def daqhub_instrument_event(instrument_id, event):
        raise RuntimeError("mail server down")

    @hookimpl
    def daqhub_resource_event(resource, event, detail):
        seen.append((resource, event, detail))

    host = PluginHost(strict=True)
    host.register(pytypes.SimpleNamespace(daqhub_instrument_event=daqhub_instrument_event),
                  "alerts", "alerts-dist", "0.1")
    host.register(pytypes.SimpleNamespace(daqhub_resource_event=daqhub_resource_event),
                  "log", "log-dist", "0.1")
    host.notify("daqhub_instrument_event", instrument_id="x", event="failed", detail="boom")
    host.notify("daqhub_resource_event", resource="sim://a", event="disconnected", detail="EIO")
    assert seen == [("sim://a", "disconnected", "EIO")]
    assert "mail server down" in host.problems[0].error
    assert host.strict  # left as it was (notifications run on several threads at once)
    with pytest.raises(ValueError):
        host.notify("daqhub_instrument_types")


def test_installed_distributions_are_listed() -> None:
    host = PluginHost()
    host.load_entry_points()
    info = host.describe()
    names = {d["name"]: d["version"] for d in info["distributions"]}
    for dist in ("daqhub", "daqhub-newport", "daqhub-elliptec", "daqhub-scpi", "daqhub-sims"):
        assert names.get(dist), f"{dist} missing from {sorted(names)}"
    assert any(c["name"] == "unified-to-arrow"
               for d in info["distributions"] for c in d["converters"])


def test_strict_mode_reports_every_problem_not_only_the_first(site: Path) -> None:
    host = PluginHost(strict=True)
    with pytest.raises(PluginError) as info:
        host.load_entry_points(GROUP)
    broken = {p.distribution for p in info.value.problems}
    assert {"dqtest-broken-import", "dqtest-misspelled", "dqtest-unknown-hook",
            "dqtest-klass", "dqtest-too-new"} <= broken
    assert all(d in str(info.value) for d in broken)
    with pytest.raises(PluginError) as info:  # the next step: every declaration problem
        host.instrument_types()
    assert {"dqtest-raises", "dqtest-not-a-list", "dqtest-bad-type", "dqtest-twin-a",
            "dqtest-twin-b"} <= {p.distribution for p in info.value.problems}


def test_a_plugin_command_named_like_one_of_daqhubs_own_is_refused(site: Path) -> None:
    """A plugin's ``run`` used to replace ``daqhub run`` without a word."""
    from daqhub.cli import BUILTIN_COMMANDS, build_parser

    host = PluginHost()
    host.reserve_commands(BUILTIN_COMMANDS)
    host.load_entry_points(GROUP)
    assert "run" not in host.cli_commands() and "takes-run-extra" in host.cli_commands()
    assert problems_of(host)["dqtest-takes-run"] == (
        "invalid command 'run': daqhub has a command 'run' of its own; the plugin's is not used")
    listed = {line.split()[0] for line in build_parser().format_help().splitlines()
              if line.startswith("    ") and line.split()}
    assert listed == set(BUILTIN_COMMANDS)  # the reserved names are the parser's commands
