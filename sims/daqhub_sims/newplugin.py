"""``daqhub new-plugin NAME``: write a complete driver distribution to start from.

What it writes works as it is (its tests pass against its own simulator) and shows every
piece an author needs: the ``pyproject.toml`` with the three entry points (the driver for
daqhub, the simulator for daqhub-sims, the conformance cases for ``daqhub check``), a driver
written once on :mod:`daqhub.driver` (both flavors generated), a simulator written from the
protocol section of the README, and tests using daqhub-sims' fixtures and conformance kit.
The instrument is a small temperature controller; replace its protocol table with yours.
"""

from __future__ import annotations

import argparse
import re
from importlib.metadata import version
from pathlib import Path
from string import Template

_NAME = re.compile(r"^[a-z][a-z0-9]{1,30}$")

FILES: dict[str, str] = {}

FILES["pyproject.toml"] = '''[build-system]
requires = ["setuptools>=69", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "daqhub-$name"
version = "0.1.0"
description = "daqhub driver plugin for the $title temperature controller"
readme = "README.md"
requires-python = ">=3.11"
# The daqhub versions this plugin works with; the host checks the range when it loads it.
dependencies = ["daqhub$daqhub_range"]

[project.optional-dependencies]
test = ["daqhub-sims$daqhub_range", "pytest>=8,<10", "pytest-timeout>=2.3,<3"]

# The driver: daqhub finds it here.
[project.entry-points.daqhub]
$name = "daqhub_$name.plugin"

# The simulator: daqhub-sims finds it here, so sim://$name works in tests and `daqhub sim`.
[project.entry-points."daqhub_sims.models"]
$name = "daqhub_$name.sim:Simulator"

# How `daqhub check` checks the driver against the simulator.
[project.entry-points."daqhub_sims.conformance"]
daqhub-$name = "daqhub_$name.plugin:conformance"

[tool.setuptools]
packages = ["daqhub_$name"]

[tool.pytest.ini_options]
testpaths = ["tests"]
timeout = 60
timeout_method = "thread"
'''

FILES["README.md"] = '''# daqhub-$name

A [daqhub](https://pypi.org/project/daqhub/) driver plugin for the $title temperature
controller (type `$name.tc`, both flavors, capabilities `Readable` and
`TemperatureController`), with a simulator (`sim://$name`) and tests.

```sh
pip install -e ".[test]"
python -m pytest -q          # the driver against the simulator, both flavors
daqhub check daqhub-$name    # the conformance kit, as a lab would run it
```

## Protocol

ASCII lines; the host ends each command with LF, the controller each reply with CR LF, one
reply per command, within 100 ms.

| command | reply |
|---|---|
| `*IDN?` | `$title,TC,<serial>,<firmware>` |
| `TEMP?` | temperature in K, e.g. `+293.150` |
| `SETP?` | setpoint in K |
| `SETP <K>` | `OK`; the setpoint, 3 to 500 K |

A command it cannot carry out is answered `ERR <code> <text>`: 1 unknown command, 2 bad
argument, 3 out of range.

## Files

| file | holds |
|---|---|
| `daqhub_$name/driver.py` | the protocol table, once; daqhub.driver makes both flavors |
| `daqhub_$name/plugin.py` | registration, and the conformance cases `daqhub check` runs |
| `daqhub_$name/sim.py` | the simulator, written from the protocol above (never from the driver) |
| `tests/` | scripted byte exchanges, the driver on the simulator, the conformance kit |
'''

FILES["daqhub_$name/__init__.py"] = '''\
"""daqhub-$name: the $title temperature controller for daqhub."""
'''

FILES["daqhub_$name/driver.py"] = '''\
"""The $title driver: the protocol table (README, "Protocol"), once, for both flavors."""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

from daqhub.driver import DriverReplyError, Parameter, Session, Transaction
from daqhub.measurement import ChannelSpec

_ERROR = re.compile(r"^ERR (\\d+) ?(.*)$$")
_IDENTITY = re.compile(r"^$title,TC,(\\w+),(\\S+)$$")


class Controller(Session):
    """A $title temperature controller on a serial line."""

    type_name = "$name.tc"
    description = "$title temperature controller (temperature in K)"
    capabilities = ("Readable", "TemperatureController")
    channels = [ChannelSpec("temperature", "scalar", "K", description="sensor (TEMP?)")]
    config_schema = {"type": "object", "properties": {}}
    serial_settings = {"baudrate": 9600, "read_timeout": 0.5}
    command_end, reply_end, read_timeout = b"\\n", b"\\r\\n", 0.5

    temperature = Parameter("TEMP?", unit="K", setting=False)
    setpoint = Parameter("SETP?", "SETP {:.3f}", unit="K", range=(3.0, 500.0), ack="OK")

    def check_reply(self, command: str, text: str) -> str:
        error = _ERROR.match(text)
        if error:
            raise DriverReplyError(self.id, command, error.group(2) or text,
                                   int(error.group(1)))
        return text

    def connect(self) -> Generator[Transaction[Any], Any, None]:
        idn = yield self.query("*IDN?")
        match = _IDENTITY.match(idn)
        if not match:
            raise DriverReplyError(self.id, "*IDN?", f"not a $title controller: {idn!r}",
                                   "identity")
        self.identity = {"model": "TC", "serial": match.group(1), "firmware": match.group(2)}
'''

FILES["daqhub_$name/plugin.py"] = '''"""The daqhub entry point of daqhub-$name."""

from __future__ import annotations

from daqhub.driver import instrument_types
from daqhub.hookspecs import hookimpl
from daqhub.specs import InstrumentType

from .driver import Controller


@hookimpl
def daqhub_instrument_types() -> list[InstrumentType]:
    return instrument_types(Controller)


def conformance() -> list[dict[str, object]]:
    """The conformance cases of ``daqhub check`` and of tests/test_driver.py."""
    return [{"type": "$name.tc", "sim": "$name", "steps": [["set_setpoint", 77.0]],
             "garbage": "\\x00??\\r\\n"}]
'''

FILES["daqhub_$name/sim.py"] = '''\
"""A simulated $title controller, written from the README's protocol section.

The only module that imports daqhub-sims (a test dependency); the driver never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping

from daqhub_sims.device import Clock
from daqhub_sims.linesim import LineDevice
from daqhub_sims.model_options import SimOption, with_defaults


class Simulator(LineDevice):
    """The temperature follows the setpoint at once. Options: :attr:`OPTIONS`, and no
    other: a typo (``serail=X9``) is refused rather than served the defaults."""

    summary = "$title temperature controller"
    OPTIONS = (SimOption("serial", "S0001", "serial number in the *IDN? reply"),)

    def __init__(self, options: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(options, clock)  # refuses an option OPTIONS does not declare
        self.serial = with_defaults(self.OPTIONS, self.options)["serial"]
        self.setpoint = 293.15

    def answer(self, line: str) -> str:
        command, _, arg = line.partition(" ")
        if command == "*IDN?":
            return f"$title,TC,{self.serial},1.0"
        if command in ("TEMP?", "SETP?"):
            return f"{self.setpoint:+.3f}"
        if command != "SETP":
            return "ERR 1 UNKNOWN COMMAND"
        try:
            value = float(arg)
        except ValueError:
            return "ERR 2 BAD ARGUMENT"
        if not 3.0 <= value <= 500.0:
            return "ERR 3 OUT OF RANGE"
        self.setpoint = value
        return "OK"
'''

FILES["tests/test_driver.py"] = '''\
"""$name.tc: scripted bytes, the driver on the simulator in both flavors, conformance.

Fixtures come from daqhub-sims' pytest plugin (no conftest needed).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest
from daqhub.driver import DriverReplyError
from daqhub.measurement import Scalar
from daqhub_sims.checks import case
from daqhub_sims.scripted import scripted_instrument

from daqhub_$name.plugin import conformance


def call(inst: Any, method: str, *args: Any) -> Any:
    result = getattr(inst, method)(*args)
    return asyncio.run(result) if inspect.isawaitable(result) else result


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_the_bytes_on_the_wire(flavor: str, daqhub_host: Any,
                               scripted_port: Callable[..., Any]) -> None:
    line = scripted_port([(b"*IDN?\\n", b"$title,TC,A1,1.0\\r\\n"),
                          (b"SETP 77.000\\n", b"OK\\r\\n"), (b"TEMP?\\n", b"+77.000\\r\\n")])
    tc = scripted_instrument(daqhub_host, "$name.tc", flavor, line)
    call(tc, "connect" if flavor == "v2" else "start")
    call(tc, "set_setpoint", 77.0)
    assert call(tc, "temperature") == 77.0
    line.assert_done()


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_on_the_simulator(flavor: str, daqhub_instrument: Callable[..., Any],
                          sim_url: Callable[..., str]) -> None:
    tc = daqhub_instrument("$name.tc", flavor, port=sim_url("$name", serial="B2"))
    tc.call("set_setpoint", 120.0)
    assert tc.rows() == [("temperature", Scalar(120.0, "K"))]
    assert tc.settings() == {"model": "TC", "serial": "B2", "firmware": "1.0",
                             "setpoint": 120.0}
    with pytest.raises(ValueError, match="from 3 to 500"):
        tc.call("set_setpoint", 900.0)  # refused before sending


def test_device_errors_name_instrument_command_and_code(
        daqhub_host: Any, scripted_port: Callable[..., Any]) -> None:
    line = scripted_port([(b"SETP 250.000\\n", b"ERR 3 OUT OF RANGE\\r\\n")])
    tc = scripted_instrument(daqhub_host, "$name.tc", "v2", line, instrument_id="oven")
    with pytest.raises(DriverReplyError) as info:
        tc.set_setpoint(250.0)
    assert (info.value.instrument_id, info.value.command, info.value.code) == (
        "oven", "SETP 250.000", 3)


@pytest.mark.timeout(120)
def test_conformance(daqhub_conformance: Any, sim_url: Callable[..., str],
                     sim_endpoint: Callable[[str], Any]) -> None:
    daqhub_conformance.check("daqhub-$name", [case(spec, sim_url, sim_endpoint)
                                              for spec in conformance()])
'''


def render(name: str) -> dict[str, str]:
    """Relative path -> text of the distribution for ``name``."""
    if not _NAME.match(name):
        raise ValueError(f"plugin name {name!r}: use 2 to 31 lower-case letters and digits, "
                         f"starting with a letter (it becomes daqhub-{name}, daqhub_{name}, "
                         f"type {name}.tc and sim://{name})")
    major, minor = (int(p) for p in version("daqhub").split(".")[:2])
    fields = {"name": name, "title": name.upper(),
              "daqhub_range": f">={major}.{minor},<{major}.{minor + 1}"}
    return {Template(path).substitute(fields): Template(text).substitute(fields)
            for path, text in FILES.items()}


def write(name: str, parent: Path) -> Path:
    """Write ``daqhub-NAME`` under ``parent``; refuses to overwrite anything."""
    files = render(name)
    root = parent / f"daqhub-{name}"
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another name or directory")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="daqhub new-plugin",
        description="Write daqhub-NAME: a driver on daqhub.driver (both flavors), a simulator "
                    "registered under daqhub_sims.models, tests using daqhub-sims' fixtures "
                    "and conformance kit, a README. Exit 2 on a bad name or existing folder.")
    parser.add_argument("name", help="lower-case letters and digits, e.g. 'mytemp' (also the "
                        "simulator's sim:// name: one no installed plugin uses)")
    parser.add_argument("--dir", type=Path, default=Path.cwd(),
                        help="where to create daqhub-NAME (default: here)")
    args = parser.parse_args(argv)
    try:
        root = write(args.name, args.dir)
    except (ValueError, FileExistsError) as exc:
        print(f"daqhub new-plugin: {exc}")
        return 2
    print(f"wrote {root}\nnext: pip install -e '{root}[test]' && cd {root} && "
          f"python -m pytest -q")
    return 0
