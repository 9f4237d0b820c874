"""``daqhub new-plugin`` writes a distribution an outsider can install and test as it is,
and ``daqhub check`` runs the conformance kit on installed plugins."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from contextlib import ExitStack
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from daqhub.cli import main as daqhub_main
from daqhub.driver import DriverError, DriverReplyError
from daqhub_sims import checks, newplugin
from daqhub_sims.checks import case, junit_xml, main, run_checks
from daqhub_sims.conformance import ConformanceError, ConformanceKit

ROOT = Path(__file__).resolve().parents[2]


def test_writes_a_complete_distribution(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    assert daqhub_main(["new-plugin", "oventc", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "daqhub-oventc"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "README.md", "daqhub_oventc/__init__.py", "daqhub_oventc/driver.py",
        "daqhub_oventc/plugin.py", "daqhub_oventc/sim.py", "pyproject.toml",
        "tests/test_driver.py"]
    pyproject = (root / "pyproject.toml").read_text()
    for entry in ('[project.entry-points.daqhub]\noventc = "daqhub_oventc.plugin"',
                  '[project.entry-points."daqhub_sims.models"]\n'
                  'oventc = "daqhub_oventc.sim:Simulator"',
                  '[project.entry-points."daqhub_sims.conformance"]'):
        assert entry in pyproject
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")  # every file is valid Python
    assert "pip install -e" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["Bad", "9lives", "a", "with-dash"])
def test_a_bad_name_is_refused_and_writes_nothing(name: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert newplugin.main([name, "--dir", str(tmp_path)]) == 2
    assert "lower-case letters and digits" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "daqhub-oven").mkdir()
    (tmp_path / "daqhub-oven" / "mine.txt").write_text("keep")
    assert newplugin.main(["oven", "--dir", str(tmp_path)]) == 2
    assert (tmp_path / "daqhub-oven" / "mine.txt").read_text() == "keep"


@pytest.mark.timeout(60)
def test_check_runs_the_conformance_kit_on_installed_plugins(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "check.xml"
    assert main(["daqhub-acme", "--junit-xml", str(report)]) == 0
    assert "ok   daqhub-acme acme.tc1" in capsys.readouterr().out
    suite = ET.parse(report).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("1", "0")
    assert suite.find("testcase").get("name") == "acme.tc1"  # type: ignore[union-attr]


@pytest.mark.timeout(120)
def test_check_runs_the_scpi_cases_on_pyvisa_sim_and_the_tcp_simulator(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "check.xml"
    assert daqhub_main(["check", "daqhub-scpi", "--junit-xml", str(report)]) == 0
    out = capsys.readouterr().out
    for name in ("scpi.dmm on scpi_tcp dmm", "scpi.psu on scpi_tcp psu",
                 "scpi.dmm on pyvisa-sim dmm_psu.yaml", "scpi.psu on pyvisa-sim dmm_psu.yaml",
                 "scpi.custom on pyvisa-sim dmm_psu.yaml"):
        assert f"ok   daqhub-scpi {name}" in out
    suite = ET.parse(report).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("5", "0")


def test_a_scpi_case_that_breaks_the_driver_fails_the_check() -> None:
    """The SCPI cases really drive the instrument: a set value the simulator refuses fails."""
    spec = {"type": "scpi.psu", "visa": "dmm_psu.yaml", "block": {"resource": "GPIB0::6::INSTR"},
            "steps": [["set_voltage", 99.0]]}
    with ExitStack() as stack:
        with pytest.raises(DriverError, match="VOLT 99"):
            ConformanceKit().check("daqhub-scpi", [case(spec, stack=stack)])


def test_check_fails_for_a_distribution_without_cases(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["daqhub-nothing"]) == 1
    out = capsys.readouterr().out
    assert "FAIL daqhub-nothing" in out and "declares no conformance cases" in out


def test_a_failing_case_is_a_junit_failure_naming_the_check() -> None:
    outcomes = run_checks(["daqhub-nothing"])
    suite = ET.fromstring(junit_xml(outcomes))
    assert suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and "declares no conformance cases" in failure.get("message", "")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_generated_plugin_installs_in_a_fresh_venv_and_passes_its_own_tests(
        tmp_path: Path) -> None:
    root = newplugin.write("freshtc", tmp_path)
    venv = tmp_path / "venv"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    env.pop("PYTHONPATH", None)

    def step(args: list[str], cwd: Path, timeout: float) -> str:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n" \
                                     f"{done.stderr[-3000:]}"
        return done.stdout

    step([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    # As an outsider would: the released packages (here: local paths), then the plugin
    # (not compiled up front: Python compiles what the plugin's tests import as they run).
    step([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", str(ROOT),
          str(ROOT / "sims"), f"{root}[test]"], tmp_path, 900)
    out = step([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
               root, 300)
    assert "6 passed" in out
    out = step([str(venv / "bin" / "daqhub"), "check", "daqhub-freshtc", "--junit-xml",
                str(tmp_path / "check.xml")], root, 120)
    assert "ok   daqhub-freshtc freshtc.tc" in out


def test_a_broken_conformance_entry_point_fails_its_own_check_only(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Another installed distribution's broken entry point is a failure of that
    distribution, named with why; the distribution asked for is still checked."""
    real = checks.entry_points
    broken = EntryPoint("daqhub-broken", "daqhub_broken_nowhere:conformance", checks.GROUP)
    monkeypatch.setattr(checks, "entry_points",
                        lambda group: [*real(group=group), broken])
    assert main(["daqhub-acme"]) == 0  # not even loading it costs the acme check
    assert "ok   daqhub-acme acme.tc1" in capsys.readouterr().out
    assert main(["daqhub-broken"]) == 1
    out = capsys.readouterr().out
    assert ("FAIL daqhub-broken -" in out and "daqhub_broken_nowhere:conformance" in out
            and "ModuleNotFoundError" in out), out


def test_a_garbage_reply_that_sets_off_a_bug_fails_the_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver must refuse a garbled reply with a device error: any other exception is a
    bug that would crash its actor at run time, so the kit says which."""
    from daqhub_acme.driver import Tc1

    from daqhub.driver import flavor_class

    v2 = flavor_class(Tc1, "v2")
    read = v2.read

    def buggy(self: object) -> object:
        try:
            return read(self)
        except DriverError as exc:  # a handler with a bug of its own
            return exc.no_such_field  # type: ignore[attr-defined]

    monkeypatch.setattr(v2, "read", buggy)
    [spec] = [s for s in checks.declared()["daqhub-acme"] if "garbage" in s]
    with ExitStack() as stack:
        with pytest.raises(ConformanceError, match=r"\(v2\): a garbage reply raised "
                                                   r"AttributeError: .* in buggy\)"):
            ConformanceKit().check("daqhub-acme", [case(spec, stack=stack)])


def _on_event_loop() -> bool:
    """Whether the caller runs on an event loop: a plan of the v4 flavor, not of the v2."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _kit_with(*sessions: type) -> ConformanceKit:
    """The kit, with ``sessions`` registered in-process as a plugin's types."""
    from daqhub.driver import instrument_types
    from daqhub.hookspecs import hookimpl

    class Plugin:
        @staticmethod
        @hookimpl
        def daqhub_instrument_types() -> list[Any]:
            return [t for s in sessions for t in instrument_types(s)]

    kit = ConformanceKit()
    assert kit.host.register(Plugin, "test-kit")
    return kit


def _blocking_tc1() -> type:
    from daqhub_acme.driver import Tc1

    class Blocking(Tc1):
        type_name = "test.blocking"

        def poll(self) -> Any:
            if _on_event_loop():
                time.sleep(0.7)  # blocks every v4 actor of a run
            return (yield from super().poll())
    return Blocking


@pytest.mark.timeout(60)
def test_a_v4_poll_that_blocks_the_event_loop_fails_the_flavor_check() -> None:
    """The kit times each step of its own v4 sequence: the runtime's watchdog missed a
    0.4 s block in one short run of three, and ``daqhub check`` said ok."""
    kit = _kit_with(_blocking_tc1())
    with ExitStack() as stack:
        c = case({"type": "test.blocking", "sim": "acmetemp", "options": {"tau": 0}},
                 stack=stack)
        with pytest.raises(ConformanceError, match=r"^test\.blocking \(v4\) read\(\) held the v4 "
                                                   r"event loop for 0\.\d\d s at once"):
            kit.check_flavors_agree(c, kit.types_of(c))


@pytest.mark.timeout(60)
def test_an_alarm_of_the_runtime_about_the_instrument_fails_the_short_run() -> None:
    """The runtime named the actor blocking its loop and counted errors, and the short run
    still passed because it shut down cleanly."""
    kit = _kit_with(_blocking_tc1())
    with ExitStack() as stack:
        c = case({"type": "test.blocking", "sim": "acmetemp", "options": {"tau": 0}},
                 stack=stack)
        # the error it counts ends the wait at once; a block after the wait: the alarm
        with pytest.raises(ConformanceError, match=r"^test\.blocking \(v4\): (the runtime raised "
                           r"an alarm during a short run: event loop blocked for over 0\.\d\d s "
                           r"by v4 actor dut_v4 \(in read\) at .*test_new_plugin\.py:\d+ in "
                           r"poll|\w+, 1 error\(s\) [\d.]+ s into a short run on a fresh simulated "
                           r"device, the last: read blocked the event loop for 0\.\d s)"):
            kit.check_clean_shutdown(c, kit.types_of(c))


@pytest.mark.timeout(60)
def test_errors_during_the_short_run_fail_it_naming_the_last() -> None:
    """On a fresh simulated device no poll fails: one that does is the driver's, even
    when polling went on and the run shut down cleanly."""
    from daqhub_acme.driver import Tc1

    class Flaky(Tc1):
        type_name = "test.flaky"
        polls = 0

        def poll(self) -> Any:
            self.polls += 1
            if self.polls == 1:  # and polling goes on: data comes, the run shuts down cleanly
                raise DriverReplyError(self.id, "TEMP?", "misread its own reply", "garbled")
            return (yield from super().poll())

    kit = _kit_with(Flaky)
    with ExitStack() as stack:
        c = case({"type": "test.flaky", "sim": "acmetemp", "options": {"tau": 0}}, stack=stack)
        with pytest.raises(ConformanceError, match=r"^test\.flaky \(v[24]\): \w+, \d+ error\(s\) "
                           r"[\d.]+ s into a short run on a fresh simulated device, the last: "
                           r".*dut_v[24]: 'TEMP\?' \[code garbled\]: misread its own reply"):
            kit.check_clean_shutdown(c, kit.types_of(c))


@pytest.mark.timeout(60)
def test_a_declared_channel_without_samples_fails_the_short_run() -> None:
    """A declared channel the driver never fills passed: the flavors agreed (neither had
    it) and the short run counted samples over all channels together."""
    from daqhub_acme.driver import Tc1

    class NoHeater(Tc1):
        type_name = "test.noheater"

        def poll(self) -> Any:
            values = yield from super().poll()
            return {"temperature": values["temperature"]}  # heater: declared, never sent

    kit = _kit_with(NoHeater)
    with ExitStack() as stack:
        c = case({"type": "test.noheater", "sim": "acmetemp", "options": {"tau": 0},
                  "timeout_s": 1.0}, stack=stack)
        with pytest.raises(ConformanceError, match=r"^test\.noheater \(v2\): running, \d+ "
                           r"sample\(s\) but none on the declared channel\(s\) heater within "
                           r"1\.0 s of a short run on a fresh simulated device .*; "
                           r"test\.noheater \(v4\): running, \d+ sample\(s\) but none on the "
                           r"declared channel\(s\) heater"):
            kit.check_clean_shutdown(c, kit.types_of(c))


@pytest.mark.timeout(60)
def test_a_rare_channel_of_the_case_may_stay_empty() -> None:
    """A driver reporting an event channel only when it happens (an over-temperature) failed
    the short run: a quiet simulated device never sends one."""
    from dataclasses import replace

    from daqhub_acme.driver import Tc1

    from daqhub.measurement import ChannelSpec

    class Alarmed(Tc1):
        type_name = "test.alarmed"
        channels = [*Tc1.channels, ChannelSpec("overtemp", "scalar", "K")]

        def poll(self) -> Any:
            values = yield from super().poll()
            if values["temperature"] > 450:  # an event: reported only when it happens
                values["overtemp"] = values["temperature"]
            return values

    kit = _kit_with(Alarmed)
    with ExitStack() as stack:
        c = case({"type": "test.alarmed", "sim": "acmetemp", "options": {"tau": 0}},
                 stack=stack)
        kit.check_clean_shutdown(replace(c, rare_channels=("overtemp",)), kit.types_of(c))


def _kit_of(types: list[Any]) -> ConformanceKit:
    """The kit, with ``types`` registered in-process as a plugin's."""
    from daqhub.hookspecs import hookimpl

    class Plugin:
        @staticmethod
        @hookimpl
        def daqhub_instrument_types() -> list[Any]:
            return types

    kit = ConformanceKit()
    assert kit.host.register(Plugin, "test-kit")
    return kit


@pytest.mark.timeout(60)
def test_a_start_that_raises_is_the_short_runs_failure_not_missing_channels() -> None:
    """A v4 start() that raised every time was reported, after the whole timeout, as "no
    sample on the declared channel(s) temperature, heater": the cause was not named."""
    from dataclasses import replace

    from daqhub_acme.driver import Tc1

    from daqhub.driver import flavor_class, instrument_types

    class DeadV4(flavor_class(Tc1, "v4")):  # type: ignore[misc]
        async def start(self) -> None:
            raise RuntimeError("v4 start bug: self.x is None")

    kit = _kit_of([replace(t, name="test.v4dead", factory=DeadV4) if t.flavor == "v4"
                   else replace(t, name="test.v4dead") for t in instrument_types(Tc1)])
    with ExitStack() as stack:
        c = case({"type": "test.v4dead", "sim": "acmetemp", "options": {"tau": 0},
                  "timeout_s": 5.0}, stack=stack)
        with pytest.raises(ConformanceError, match=r"^test\.v4dead \(v4\): \w+, 1 error\(s\) "
                           r"[\d.]+ s into a short run on a fresh simulated device, the last: "
                           r"start failed: RuntimeError: v4 start bug: self\.x is None .*"
                           r"\(no sample yet on temperature, heater\)$"):
            kit.check_clean_shutdown(c, kit.types_of(c))


@pytest.mark.timeout(60)
def test_refused_samples_are_the_short_runs_failure_not_a_missing_channel() -> None:
    """v2 rows of one channel refused for a wrong unit were reported, after the whole
    timeout, as "no sample on the declared channel(s) heater"."""
    from dataclasses import replace

    from daqhub_acme.driver import Tc1

    from daqhub.driver import flavor_class, instrument_types
    from daqhub.measurement import Measurement, Scalar

    class WrongUnitV2(flavor_class(Tc1, "v2")):  # type: ignore[misc]
        def read(self) -> list[Measurement]:
            return [Measurement(m.instrument_id, m.channel, m.timestamp_ns,
                                Scalar(m.data.value, "W")) if m.channel == "heater" else m
                    for m in super().read()]

    kit = _kit_of([replace(t, name="test.wrongunit", factory=WrongUnitV2) if t.flavor == "v2"
                   else replace(t, name="test.wrongunit") for t in instrument_types(Tc1)])
    with ExitStack() as stack:
        c = case({"type": "test.wrongunit", "sim": "acmetemp", "options": {"tau": 0},
                  "timeout_s": 5.0}, stack=stack)
        with pytest.raises(ConformanceError, match=r"^test\.wrongunit \(v2\): \w+, \d+ error\(s\), "
                           r"\d+ refused sample\(s\) [\d.]+ s into a short run on a fresh "
                           r"simulated device, the last: rejected \d+ sample\(s\) of channel "
                           r"'heater': channel dut_v2\.heater is declared in '%', got 'W' "
                           r"\(no sample yet on heater\)$"):
            kit.check_clean_shutdown(c, kit.types_of(c))


def test_a_type_two_plugins_declare_is_named_as_a_clash() -> None:
    """``daqhub check daqhub-acme`` said "acme.tc1: not registered by any installed plugin"
    when another distribution declared acme.tc1 too: the kit read the plugin problems before
    the types were collected, when the clash was not known yet."""
    from daqhub_acme.driver import Tc1

    from daqhub.driver import instrument_types
    from daqhub.hookspecs import hookimpl

    class Dup:
        @staticmethod
        @hookimpl
        def daqhub_instrument_types() -> list[Any]:
            return instrument_types(Tc1)

    kit = ConformanceKit()
    assert kit.host.register(Dup, "dup", "daqhub-dup", "0.1.0")
    [spec] = [s for s in checks.declared()["daqhub-acme"] if "garbage" in s]
    with ExitStack() as stack:
        with pytest.raises(ConformanceError, match=re.escape(
                "daqhub-acme has plugin problems: instrument type 'acme.tc1' (v2) is declared "
                "by several plugins (daqhub-acme 0.1.0, daqhub-dup 0.1.0); none of them is "
                "used unless a lab file chooses one in [daqhub.providers]")):
            kit.check("daqhub-acme", [case(spec, stack=stack)])
