"""Capabilities as an extension point, checked when a plugin's types are loaded; and the one
error type both runtimes raise for a command they will not run."""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from typing import Any, Protocol

import pytest
from test_toolkit import Oven

from daqhub.driver import CommandRejected, UnknownCommandError, instrument_types
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument, V4Actor
from daqhub.measurement import ChannelSpec
from daqhub.routines import RoutineRunner
from daqhub.specs import InstrumentType

CHANNELS = [ChannelSpec("x", "scalar", "")]


class Shutter(Protocol):
    def open(self) -> None: ...
    def close_shutter(self) -> None: ...


class GoodV2(V2Instrument):
    def read(self) -> list[Any]:
        return []

    def open(self) -> None: ...
    def close_shutter(self) -> None: ...


class GoodV4(V4Actor):
    async def read(self) -> list[Any]:
        return []

    async def open(self) -> None: ...
    async def close_shutter(self) -> None: ...


class MissingV2(V2Instrument):
    def read(self) -> list[Any]:
        return []

    def open(self) -> None: ...


class SyncInV4(V4Actor):
    async def read(self) -> list[Any]:
        return []

    async def open(self) -> None: ...
    def close_shutter(self) -> None: ...


def host_with(*declared: tuple[str, type], capability: type | None = Shutter,
              strict: bool = False) -> PluginHost:
    host = PluginHost(strict=strict)

    @hookimpl
    def daqhub_instrument_types() -> list[InstrumentType]:
        return [InstrumentType(f"acme.{cls.__name__.lower()}", flavor, "none", cls, CHANNELS,
                               "test", capabilities=("Shutter",))  # type: ignore[arg-type]
                for flavor, cls in declared]

    caps = types.SimpleNamespace(daqhub_capabilities=hookimpl(lambda: [capability]))
    drivers = types.SimpleNamespace(daqhub_instrument_types=daqhub_instrument_types)
    if capability is not None:
        host.register(caps, "caps", "daqhub-shutters", "1.0")
    host.register(drivers, "shutters", "daqhub-acme-shutters", "2.0")
    return host


def test_a_plugin_adds_a_capability_and_types_implementing_it_load() -> None:
    host = host_with(("v2", GoodV2), ("v4", GoodV4))
    assert host.capabilities()["Shutter"] is Shutter
    assert "TemperatureController" in host.capabilities()
    assert set(host.instrument_types()) == {("acme.goodv2", "v2"), ("acme.goodv4", "v4")}
    assert host.problems == []


@pytest.mark.parametrize(("flavor", "cls", "why"), [
    ("v2", MissingV2, "capability Shutter: method MissingV2.close_shutter is missing"),
    ("v4", SyncInV4, "capability Shutter: SyncInV4.close_shutter must be 'async def' in a v4 "
                     "actor"),
    ("v2", GoodV4, "capability Shutter: GoodV4.open must be a blocking method in a v2 class")])
def test_a_capability_not_really_implemented_is_a_load_problem_naming_plugin_type_method(
        flavor: str, cls: type, why: str) -> None:
    host = host_with((flavor, cls))
    assert host.instrument_types() == {}
    (problem,) = host.problems
    assert (problem.distribution, problem.plugin) == ("daqhub-acme-shutters", "shutters")
    assert f"instrument type 'acme.{cls.__name__.lower()}' ({flavor})" in problem.error
    assert why in problem.error


def test_an_unknown_capability_is_a_load_problem() -> None:
    host = host_with(("v2", GoodV2), capability=None)
    assert host.instrument_types() == {}
    assert "capability 'Shutter' is unknown" in host.problems[0].error


def test_a_plugin_cannot_redefine_a_core_capability() -> None:
    class Motion(Protocol):
        def go(self) -> None: ...

    host = host_with(capability=Motion)
    host.capabilities()
    assert "the core already defines Motion" in host.problems[0].error


def test_toolkit_types_pass_the_check_in_both_flavors() -> None:
    host = PluginHost(strict=True)
    plugin = types.SimpleNamespace(daqhub_instrument_types=hookimpl(lambda: instrument_types(
        Oven)))
    host.register(plugin, "oven", "daqhub-oven", "1.0")
    assert set(host.instrument_types()) == {("test.oven", "v2"), ("test.oven", "v4")}


LAB = """
[daqhub]
output_dir = "data"

[[v2.instruments]]
id = "old"
type = "acme.tc1"
port = "{port}"

[[v4.instruments]]
id = "new"
type = "acme.tc1"
port = "{port}"
"""


@pytest.mark.timeout(30)
def test_unknown_command_and_command_during_shutdown_raise_the_same_type_in_both_flavors(
        daqhub_lab: Callable[[str], Any], daqhub_run: Callable[..., Any],
        sim_url: Callable[..., str]) -> None:
    rt = daqhub_run(daqhub_lab(LAB.format(port=sim_url("acmetemp", tau=0))))
    for instrument in ("old", "new"):
        with pytest.raises(UnknownCommandError, match=f"{instrument} has no command 'warp'.*"
                                                      f"set_setpoint"):
            rt.call(instrument, "warp", timeout=5.0)
    assert rt.shutdown().ok
    for instrument in ("old", "new"):
        with pytest.raises(CommandRejected, match="shutting down|stopped"):
            rt.call(instrument, "setpoint", timeout=5.0)


@pytest.mark.parametrize(("stopping", "state"), [(True, "stopped"), (False, "failed")])
def test_a_routine_step_refused_by_a_shutdown_stops_the_routine_without_failing_it(
        stopping: bool, state: str) -> None:
    stop = threading.Event()

    def call(instrument: str, method: str, *args: Any, timeout: float) -> None:
        if stopping:
            stop.set()  # the run began shutting down while the step was queued
        raise CommandRejected(f"{instrument}: shutting down; command not run")

    runner = RoutineRunner({"instrument": "rot", "steps": [["home"]], "repeat": True}, call,
                           stop)
    runner.start()
    assert runner.join(5.0)
    assert runner.state.state == state
    assert (runner.state.error == "") is stopping
