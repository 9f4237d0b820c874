"""The driver example of docs/plugin-authors.md (section 2) runs as written, in both flavors.

A reader copies it first; it raised NameError (``ChannelSpec``, ``kelvin``, ``percent``) before
it declared anything. Taken from the page as it is, like the lab guide's snippet in
``tests/e2e/test_reading_back.py``, and driven over a scripted line.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from daqhub.driver import DriverReplyError, flavor_class, instrument_types
from daqhub.measurement import Scalar
from daqhub.specs import InstrumentContext
from daqhub_sims.scripted import ScriptedPort

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugin-authors.md"


def example() -> dict[str, Any]:
    """The namespace the section-2 block leaves when run as a module is."""
    section = GUIDE.read_text().split("## 2. ", 1)[1].split("\n## ", 1)[0]
    [code] = [b for b in re.findall(r"```python\n(.*?)```", section, re.S)
              if "class Tc1(Session)" in b]
    namespace: dict[str, Any] = {"__name__": "plugin_authors_example"}
    exec(compile(code, str(GUIDE), "exec"), namespace)
    return namespace


def call(inst: Any, method: str, *args: Any) -> Any:
    result = getattr(inst, method)(*args)
    return asyncio.run(result) if inspect.isawaitable(result) else result


def test_the_example_declares_a_valid_type() -> None:
    tc1 = example()["Tc1"]
    v2, v4 = instrument_types(tc1)
    assert (v2.name, v2.flavor, v4.flavor) == ("acme.tc1", "v2", "v4")
    assert v2.problems() == v4.problems() == []


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_the_example_talks_to_a_tc1(flavor: str) -> None:
    tc1 = example()["Tc1"]
    port = ScriptedPort([(b"*IDN?\r", b"ACME,TC-1,K9,1.0\r\n"),
                         (b"TEMP?\r", b"+81.000\r\n"), (b"HEAT?\r", b"4.5\r\n"),
                         (b"SETP 80.000\r", b"OK\r\n"), (b"SETP 90.000\r", b"ERR 3\r\n"),
                         (b"HEAT?\r", b"104.5\r\n")])
    ctx = InstrumentContext("tc", "acme.tc1", {}, tc1.channels, port=port)  # type: ignore[arg-type]
    inst = flavor_class(tc1, flavor)(ctx)  # type: ignore[arg-type]
    call(inst, "connect" if flavor == "v2" else "start")
    assert inst.session.identity == {"model": "TC-1", "serial": "K9"}
    assert call(inst, "read") and port.sent[-2:] == [b"TEMP?\r", b"HEAT?\r"]
    call(inst, "set_setpoint", 80)
    with pytest.raises(DriverReplyError) as refused:  # the TC-1's own error reply
        call(inst, "set_setpoint", 90)
    assert (refused.value.instrument_id, refused.value.code) == ("tc", 3)
    with pytest.raises(DriverReplyError, match=r"garbled reply '104\.5': expected a "
                                               r"percentage 0 to 100 \(parser percent"):
        call(inst, "heater")
    port.assert_done()


def test_the_example_s_reading_is_the_declared_channel() -> None:
    tc1 = example()["Tc1"]
    port = ScriptedPort([(b"TEMP?\r", b"+81.000\r\n"), (b"HEAT?\r", b"4.5\r\n")])
    ctx = InstrumentContext("tc", "acme.tc1", {}, tc1.channels, port=port)  # type: ignore[arg-type]
    rows = [(m.channel, m.data) for m in flavor_class(tc1, "v2")(ctx).read()]  # type: ignore[arg-type]
    assert rows == [("temperature", Scalar(81.0, "K")), ("heater", Scalar(4.5, "%"))]
