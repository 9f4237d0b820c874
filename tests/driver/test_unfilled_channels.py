"""A declared channel the default poll can never fill is refused, not an empty column.

The default ``Session.poll`` reads each channel from the ``Parameter`` of its name and used
to skip a channel without one: ``heater`` declared and never emitted passed ``--strict
plugins``, ``validate`` and the conformance kit, and the run said "stopped cleanly" over an
empty file for it.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import pytest

from daqhub.driver import Parameter, Session, flavor_class, instrument_types
from daqhub.measurement import ChannelSpec
from daqhub.plugins.converters import batch_to_rows
from daqhub.specs import InstrumentContext
from daqhub_sims.scripted import ScriptedPort

TEMPERATURE = ChannelSpec("temperature", "scalar", "K")
HEATER = ChannelSpec("heater", "scalar", "%")


class Tc(Session):
    type_name = "test.tc"
    channels = [TEMPERATURE]
    command_end, reply_end, read_timeout = b"\n", b"\n", 0.2

    temperature = Parameter("T?", setting=False)


def test_a_channel_without_a_parameter_is_refused_when_declared_as_a_type() -> None:
    class Heated(Tc):
        channels = [TEMPERATURE, HEATER]

    with pytest.raises(TypeError, match=r"\.Heated: channel\(s\) 'heater' would never get a "
                                        r"value: the default poll reads each channel from the "
                                        r"Parameter of its name"):
        instrument_types(Heated)


def test_a_write_only_parameter_does_not_fill_its_channel() -> None:
    class Heated(Tc):
        channels = [TEMPERATURE, HEATER]
        heater = Parameter(None, "H {}")

    with pytest.raises(TypeError, match=r"channel\(s\) 'heater' would never get a value"):
        instrument_types(Heated)


def test_a_channels_override_is_checked_too() -> None:
    """``instrument_types(cls, channels=...)`` declares the type's channels, not the class."""
    assert [t.flavor for t in instrument_types(Tc, name="test.tc2")] == ["v2", "v4"]
    with pytest.raises(TypeError, match=r"^Tc: channel\(s\) 'heater' would never get a value"):
        instrument_types(Tc, name="test.tc2", channels=[TEMPERATURE, HEATER])


POWER = ChannelSpec("power", "scalar", "W")


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_an_abstract_base_declares_channels_its_models_fill(flavor: str) -> None:
    """A shared base (framing and channels, no query; each model declares its own) was
    refused as it was defined, so a plugin module built this way no longer imported."""
    class MeterBase(Session):
        channels = [POWER]
        command_end, reply_end, read_timeout = b"\n", b"\n", 0.2

    class M1(MeterBase):
        type_name = "test.m1"
        power = Parameter("D?", setting=False)

    assert [t.name for t in instrument_types(M1)] == ["test.m1", "test.m1"]
    assert read(M1, flavor, [(b"D?\n", b"0.5\n")]) == ["power"]
    with pytest.raises(TypeError, match=r"MeterBase: channel\(s\) 'power' would never get"):
        instrument_types(MeterBase, name="test.base")  # the base itself is no type


def read(cls: type[Session], flavor: str, script: list[tuple[bytes, bytes]],
         config: Mapping[str, Any] | None = None) -> list[str]:
    """The channels of one read of ``cls`` in ``flavor`` over ``script``."""
    channels = cls.channels(config or {}) if callable(cls.channels) else cls.channels
    ctx = InstrumentContext("tc1", "test.tc", config or {}, channels,  # type: ignore[arg-type]
                            port=ScriptedPort(script))
    inst = flavor_class(cls, flavor)(ctx)  # type: ignore[arg-type]
    out = inst.read()
    out = asyncio.run(out) if inspect.isawaitable(out) else out
    if flavor == "v2":
        return [m.channel for m in out]
    return [row.channel for batch in out for row in batch_to_rows(batch)]


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_an_own_poll_fills_the_channels_it_declares(flavor: str) -> None:
    """A class with its own poll says what it fills (some channels report only now and
    then); the default poll it calls reads the channels that have a parameter."""
    class Heated(Tc):
        channels = [TEMPERATURE, HEATER]

        def poll(self) -> Generator[Any, Any, dict[str, Any]]:
            values = yield from super().poll()
            return {**values, "heater": 50.0}

    assert read(Heated, flavor, [(b"T?\n", b"300\n")]) == ["temperature", "heater"]


def _heater_too(config: Mapping[str, Any]) -> list[ChannelSpec]:
    return [TEMPERATURE, *([HEATER] if config.get("heater") else [])]


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_channels_function_is_checked_when_the_poll_is_planned(flavor: str) -> None:
    """A channels function gives the channels per block, so the class cannot be checked
    when it is defined: the first poll refuses, naming the instrument, before any byte."""
    class PerBlock(Tc):
        channels = staticmethod(_heater_too)

    assert read(PerBlock, flavor, [(b"T?\n", b"300\n")]) == ["temperature"]
    with pytest.raises(TypeError, match=r"^tc1: \S+\.PerBlock: channel\(s\) 'heater' would never "
                                        r"get a value"):
        read(PerBlock, flavor, [], {"heater": True})


PLUGIN = textwrap.dedent("""
    from daqhub.driver import Parameter, Session, instrument_types
    from daqhub.hookspecs import hookimpl
    from daqhub.measurement import ChannelSpec

    class Tc9(Session):
        type_name = "noemit.tc9"
        channels = [ChannelSpec("temperature", "scalar", "K"), ChannelSpec("heater", "scalar", "%")]
        temperature = Parameter("T?", setting=False)

    @hookimpl
    def daqhub_instrument_types():
        return instrument_types(Tc9)
    """)


@pytest.mark.timeout(60)
def test_strict_plugins_names_the_plugin_and_the_channel(tmp_path: Path) -> None:
    (tmp_path / "oops_noemit.py").write_text(PLUGIN)
    info = tmp_path / "daqhub_noemit-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: daqhub-noemit\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[daqhub]\nnoemit = oops_noemit\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run([sys.executable, "-m", "daqhub", "--strict", "plugins"],
                       capture_output=True, text=True, timeout=50, env=env)
    assert r.returncode == 3, r.stdout + r.stderr
    assert ("daqhub-noemit 1.0 (noemit): hook daqhub_instrument_types raised TypeError: Tc9: "
            "channel(s) 'heater' would never get a value" in r.stderr), r.stderr
