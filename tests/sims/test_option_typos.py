"""A ``sim://`` option typo is refused for a model that declares its options, by
``daqhub validate`` as by the run; a model that declares none reads its own and takes what it
is given.

d557a8e made a model declaring no options take none, which broke third-party models that
worked: one written from the old ``daqhub new-plugin`` template (it reads ``self.options``)
was refused outright, and for a factory function whose device class declares ``OPTIONS``,
``registry.create`` took the option while ``daqhub validate`` refused it (it read the
declaration from the function, the device reads it from its class)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from daqhub.cli import main as daqhub_main
from daqhub_sims import newplugin, registry
from daqhub_sims.device import Clock
from daqhub_sims.linesim import LineDevice
from daqhub_sims.model_options import SimOption, with_defaults


class Bare(LineDevice):
    """A model as the old ``daqhub new-plugin`` template wrote it: reads ``serial`` from
    ``self.options`` and declares nothing."""

    def __init__(self, options: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(options, clock)
        self.serial = self.options.get("serial", "S0001")

    def answer(self, line: str) -> str:
        return self.serial


class Declared(LineDevice):
    """A device class that declares its options, made by a factory function."""

    OPTIONS = (SimOption("serial", "S1", "serial number"),)

    def __init__(self, options: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(options, clock)
        self.serial = with_defaults(self.OPTIONS, self.options)["serial"]

    def answer(self, line: str) -> str:
        return self.serial


MADE: list[Mapping[str, str] | None] = []  # the options of each device make_declared made


def make_declared(options: Mapping[str, str] | None = None,
                  clock: Clock | None = None) -> Declared:
    MADE.append(options)
    return Declared(options, clock)


make_declared.OPTIONS = Declared.OPTIONS  # type: ignore[attr-defined]


registry.register_model("typobare", Bare)
registry.register_model("typofactory", make_declared)


def validate(tmp_path: Path, port: str) -> int:
    lab = tmp_path / "lab.toml"
    lab.write_text(f'[daqhub]\noutput_dir = "{tmp_path}"\n[[v2.instruments]]\nid = "a"\n'
                   f'type = "newport.1830c"\nport = "{port}"\n')
    return daqhub_main(["validate", "--offline", str(lab)])


def test_a_model_declaring_no_options_reads_its_own(tmp_path: Path) -> None:
    assert registry.create("typobare", {"serial": "X9"}).answer("*IDN?") == "X9"
    assert registry.create("typobare").answer("*IDN?") == "S0001"
    assert validate(tmp_path, "sim://typobare?serial=X9&name=t") == 0


def test_validate_reads_a_factory_functions_options_as_create_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert registry.create("typofactory", {"serial": "X9"}).answer("*IDN?") == "X9"
    assert validate(tmp_path, "sim://typofactory?serial=X9&name=f") == 0
    with pytest.raises(ValueError, match=r"^Declared takes no option 'serail'; its options: "
                                         r"serial \(daqhub sim models\)"):
        registry.create("typofactory", {"serail": "X9"})
    MADE.clear()
    assert validate(tmp_path, "sim://typofactory?serail=X9") == 2
    assert ("lab.toml:6: sim://typofactory takes no option 'serail'; its options: baud, "
            "latency, name, serial (daqhub sim models)") in capsys.readouterr().err
    assert MADE == []  # read from the function: validate makes no device (none is closed)


def test_serve_refuses_the_typo(capsys: pytest.CaptureFixture[str]) -> None:
    from daqhub_sims.cli import serve

    done = threading.Event()
    done.set()  # a server that starts stops at once
    assert serve(["typofactory", "-o", "serail=X9", "--tcp", "0"], done) == 2
    assert "takes no option 'serail'" in capsys.readouterr().err


def test_the_new_plugin_template_declares_its_options() -> None:
    """What ``daqhub new-plugin`` writes is where third-party models start from."""
    namespace: dict[str, Any] = {}
    exec(compile(newplugin.render("typotc")["daqhub_typotc/sim.py"], "sim.py", "exec"),
         namespace)
    simulator = namespace["Simulator"]
    assert [o.name for o in simulator.OPTIONS] == ["serial"]
    assert simulator({"serial": "B2"}).serial == "B2"
    with pytest.raises(ValueError, match=r"takes no option 'serail'; its options: serial"):
        simulator({"serail": "B2"})
