"""daqhub-sims' authoring kit: scripted byte exchanges and one-instrument fixtures."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from daqhub.measurement import Scalar
from daqhub_sims.scripted import ScriptedPort, scripted_instrument


def call(inst: Any, method: str, *args: Any) -> Any:
    result = getattr(inst, method)(*args)
    return asyncio.run(result) if inspect.isawaitable(result) else result


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_scripted_exchange_drives_either_flavor_byte_for_byte(
        flavor: str, daqhub_host: Any, scripted_port: Callable[..., ScriptedPort]) -> None:
    line = scripted_port([(b"*IDN?\r", b"ACME,TC-1,S1,1.0\r\n"), (b"SETP 80.000\r", b"OK\r\n"),
                          (b"TEMP?\r", b"+81.000\r\n"), (b"HEAT?\r", b"4.5\r\n")])
    tc = scripted_instrument(daqhub_host, "acme.tc1", flavor, line, {"setpoint_k": 80.0})
    call(tc, "connect" if flavor == "v2" else "start")
    assert len(call(tc, "read")) == 2
    line.assert_done()


def test_the_script_names_what_was_sent_instead_of_what_it_expects(daqhub_host: Any) -> None:
    line = ScriptedPort([(b"*IDN?\r", b"ACME,TC-1,S1,1.0\r\n"), (b"SETP?\r", b"+1.0\r\n")])
    tc = scripted_instrument(daqhub_host, "acme.tc1", "v2", line)
    with pytest.raises(AssertionError, match=r"request #1 was b'TEMP\?\\r', the script expects "
                                             r"b'\*IDN\?\\r'"):
        tc.read()
    with pytest.raises(AssertionError, match=r"2 scripted request\(s\) never sent"):
        ScriptedPort([(b"a", b""), (b"b", b"")]).assert_done()


def test_unknown_type_is_a_clear_error(daqhub_host: Any) -> None:
    with pytest.raises(LookupError, match="no v2 instrument type 'acme.nope'.*acme.tc1"):
        scripted_instrument(daqhub_host, "acme.nope", "v2", ScriptedPort([]))


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_one_instrument_of_a_type_on_a_sim_port_without_a_lab_file(
        flavor: str, daqhub_instrument: Callable[..., Any],
        sim_url: Callable[..., str]) -> None:
    tc = daqhub_instrument("acme.tc1", flavor, port=sim_url("acmetemp", tau=0, serial="K9"),
                           setpoint_k=120.0)
    assert tc.rows() == [("temperature", Scalar(120.0, "K")), ("heater", Scalar(0.0, "%"))]
    tc.call("set_setpoint", 150.0)
    assert tc.call("setpoint") == 150.0
    assert tc.settings() == {"model": "TC-1", "serial": "K9", "firmware": "1.0",
                             "setpoint": 150.0}


def test_a_model_name_two_distributions_claim_makes_no_device(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two installed distributions registering ``sim://acmetemp`` (or one taking a built-in
    name) is refused naming both, instead of the first one found silently winning."""
    import importlib.metadata

    from daqhub_sims import registry

    real = importlib.metadata.entry_points
    extra = [importlib.metadata.EntryPoint("acmetemp", "daqhub_acmetemp.sim:Simulator",
                                           registry.MODEL_GROUP),
             importlib.metadata.EntryPoint("esp300", "daqhub_other.sim:ESP", registry.MODEL_GROUP)]
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [*real(group=group), *extra])
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_clashes", {})
    monkeypatch.setattr(registry, "_discovered", False)
    with pytest.raises(registry.UnknownModelError,
                       match=r"'acmetemp' is registered more than once: "
                             r"daqhub_acme.sim:AcmeTempSim \(daqhub-acme\); "
                             r"daqhub_acmetemp.sim:Simulator"):
        registry.model_factory("acmetemp")
    built_in = r"daqhub_sims.esp300:ESP300 \(daqhub-sims\)"
    with pytest.raises(registry.UnknownModelError, match=r"daqhub_other.sim:ESP .*" + built_in):
        registry.create("esp300")
    assert registry.model_factory("newport1830c")  # names nobody else claims still work


def test_validate_finds_a_sim_port_the_run_could_not_open(daqhub_host: Any,
                                                         tmp_path: Any) -> None:
    """An unknown simulated model, or an option its model does not take, is a problem of
    the lab file on its line, not an error when the run opens the port."""
    from daqhub.config import ConfigError, parse

    text = (f'[daqhub]\noutput_dir = "{tmp_path}"\n'
            '[[v2.instruments]]\nid = "a"\ntype = "newport.1830c"\nport = "sim://nosuch"\n'
            '[[v2.instruments]]\nid = "b"\ntype = "elliptec.ell14"\naddress = 0\n'
            'port = "sim://elliptec?devies=0:ELL14"\n'
            '[[v2.instruments]]\nid = "c"\ntype = "newport.1830c"\n'
            'port = "sim://newport1830c?noise=0&latency=0.001&name=c"\n')
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", daqhub_host, tmp_path)
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 2, problems
    assert problems[0].startswith("lab.toml:6: unknown simulated device 'nosuch'")
    assert problems[1].startswith("lab.toml:11: sim://elliptec takes no option 'devies'")
    assert "devices" in problems[1]
