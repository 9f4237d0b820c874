"""A ``sim://`` option typo is refused for every model, not only for those that declare
options: a model declaring none took whatever it was given, so ``sim://mytemp?serail=X9`` of
a model written from the ``daqhub new-plugin`` template passed ``daqhub validate`` and
``daqhub sim serve -o serail=X9`` served the defaults, while docs/simulators.md says "a typo
never serves the defaults"."""

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


class Bare(LineDevice):
    """A model as one was written before the template declared its options: reads
    ``serial`` from ``self.options`` and declares nothing."""

    def __init__(self, options: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(options, clock)
        self.serial = self.options.get("serial", "S0001")

    def answer(self, line: str) -> str:
        return self.serial


registry.register_model("typobare", Bare)


def test_a_model_declaring_no_options_refuses_every_one() -> None:
    with pytest.raises(ValueError, match=r"^Bare takes no option 'serail'; its options: none "
                                         r"\(it declares no OPTIONS\)"):
        registry.create("typobare", {"serail": "X9"})
    assert registry.create("typobare").answer("*IDN?") == "S0001"


def test_validate_refuses_the_typo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text(f'[daqhub]\noutput_dir = "{tmp_path}"\n[[v2.instruments]]\nid = "a"\n'
                   'type = "newport.1830c"\nport = "sim://typobare?serail=X9&name=t"\n')
    assert daqhub_main(["validate", str(lab)]) == 2
    assert ("lab.toml:6: sim://typobare takes no option 'serail'; its options: baud, latency, "
            "name (daqhub sim models)") in capsys.readouterr().err


def test_serve_refuses_the_typo(capsys: pytest.CaptureFixture[str]) -> None:
    from daqhub_sims.cli import serve

    done = threading.Event()
    done.set()  # a server that starts stops at once
    assert serve(["typobare", "-o", "serail=X9", "--tcp", "0"], done) == 2
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
