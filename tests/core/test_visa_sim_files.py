"""A lab's pyvisa-sim file (``visa_backend = "file.yaml@sim"``) is checked as the lab is.

pyvisa-sim reads the file only when the backend's ResourceManager is created: a file with a
YAML error passed ``daqhub validate``, and ``daqhub run`` then failed with pyvisa-sim's
traceback escaped twice into one 8 KB message, the line and column at its very end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daqhub.cli import main as daqhub_main
from daqhub.config import ConfigError, parse
from daqhub.host import PluginHost
from daqhub.lab import open_lab
from daqhub.resources import VisaSessionManager

pytestmark = pytest.mark.timeout(60)

GOOD = """\
spec: "1.1"
devices:
  dev:
    eom: {GPIB INSTR: {q: "\\n", r: "\\n"}}
    dialogues:
      - {q: "*IDN?", r: "ACME,T1,1,1"}
      - {q: "T?", r: "4.2"}
resources:
  GPIB0::9::INSTR: {device: dev}
"""
# the auditor's file: the first dialogue lacks its closing brace
BROKEN = GOOD.replace('r: "ACME,T1,1,1"}', 'r: "ACME,T1,1,1"')
YAML_ERROR = ("bad.yaml, line 7, column 7: expected ',' or '}', but got '-' "
              "(while parsing a flow mapping at line 6, column 9)")

LAB = """\
[daqhub]
output_dir = "out"

[v4]
storage = "arrow"

[[v4.instruments]]
id = "t1"
type = "{type}"
resource = "{resource}"
visa_backend = "bad.yaml@sim"
"""
BACKEND_LINE = 11


def lab_text(type_name: str = "acme.dmm", resource: str = "GPIB0::9::INSTR") -> str:
    return LAB.replace("{type}", type_name).replace("{resource}", resource)


def problems(host: PluginHost, tmp_path: Path, text: str) -> list[tuple[int, str]]:
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host, tmp_path)
    return [(p.line, p.message) for p in info.value.problems]


def test_a_yaml_error_is_reported_with_file_line_and_column_at_the_backend_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text(BROKEN)
    (tmp_path / "lab.toml").write_text(lab_text("scpi.custom") + 'readings = [{name = "temp", '
                                       'query = "T?", unit = "K"}]\n')
    assert daqhub_main(["validate", str(tmp_path / "lab.toml")]) == 2
    err = capsys.readouterr()
    report = err.out + err.err
    assert (f"lab.toml:{BACKEND_LINE}: visa_backend 'bad.yaml@sim': simulation file "
            f"{tmp_path}/{YAML_ERROR}") in report, report
    assert "Traceback" not in report and "valid (" not in report


def test_open_lab_refuses_the_file_as_validate_does(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BROKEN)
    (tmp_path / "lab.toml").write_text(lab_text("scpi.custom") + 'readings = [{name = "temp", '
                                       'query = "T?", unit = "K"}]\n')
    with pytest.raises(ConfigError) as info:
        open_lab(str(tmp_path / "lab.toml"), storage=False, report=None)
    [problem] = info.value.problems
    assert problem.line == BACKEND_LINE
    assert problem.message.endswith(YAML_ERROR)


@pytest.mark.parametrize(("content", "resource", "said"), [
    (GOOD.replace('"1.1"', '"2.0"'), "GPIB0::9::INSTR",
     "The spec version of the file is (2, 0) but the parser is 1.1"),
    (GOOD.replace('spec: "1.1"\n', ""), "GPIB0::9::INSTR",
     "The file does not specify a spec version"),
    (GOOD.replace("{device: dev}", "{device: nodev}"), "GPIB0::9::INSTR", "missing key 'nodev'"),
    (GOOD, "GPIB0::5::INSTR", "defines no resource GPIB0::5::INSTR (it defines GPIB0::9::INSTR)"),
])
def test_a_file_pyvisa_sim_cannot_use_for_the_resource_is_reported(
        host: PluginHost, tmp_path: Path, content: str, resource: str, said: str) -> None:
    (tmp_path / "bad.yaml").write_text(content)
    [(line, message)] = problems(host, tmp_path, lab_text(resource=resource))
    assert line == BACKEND_LINE
    assert message.startswith(f"visa_backend 'bad.yaml@sim': simulation file {tmp_path}/bad.yaml")
    assert said in message and "\n" not in message


def test_a_usable_file_passes_without_opening_anything(host: PluginHost, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def no_session(*args: object, **kwargs: object) -> None:
        raise AssertionError("validation created a VISA ResourceManager")

    monkeypatch.setattr("pyvisa.ResourceManager", no_session)
    monkeypatch.setattr("pyvisa.highlevel.ResourceManager", no_session)
    (tmp_path / "bad.yaml").write_text(GOOD)
    [dmm] = parse(lab_text(), "lab.toml", host, tmp_path).instruments()
    assert dmm.block["visa_backend"] == f"{(tmp_path / 'bad.yaml').resolve()}@sim"


def test_opening_a_resource_on_a_broken_file_fails_in_one_line(tmp_path: Path) -> None:
    """The file may break after validation, or a script opens it without a lab."""
    (tmp_path / "bad.yaml").write_text(BROKEN)
    with VisaSessionManager() as manager:
        with pytest.raises(ValueError) as info:
            manager.resource("GPIB0::9::INSTR", backend=f"{tmp_path}/bad.yaml@sim")
        assert str(info.value) == f"simulation file {tmp_path}/{YAML_ERROR}"
        (tmp_path / "bad.yaml").write_text(GOOD)  # fixed: the next open reads it again
        resource = manager.resource("GPIB0::9::INSTR", backend=f"{tmp_path}/bad.yaml@sim",
                                    read_termination="\n", write_termination="\n")
        assert resource.query("T?") == "4.2"
