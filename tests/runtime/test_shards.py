"""Which instruments share a worker process: every name of one device is one resource group."""

from __future__ import annotations

import os
import pty
from collections.abc import Iterator
from pathlib import Path

import pytest

from daqhub.config import InstrumentConfig
from daqhub.measurement import ChannelSpec
from daqhub.runtime.shards import plan, resource_group
from daqhub.specs import InstrumentType

pytestmark = pytest.mark.timeout(30)

STAGE = InstrumentType("acme.stage", "v2", "serial", lambda ctx: None,
                       [ChannelSpec("position", "scalar", "mm")], "a stage")
DMM = InstrumentType("acme.dmm", "v4", "visa", lambda ctx: None,
                     [ChannelSpec("volts", "scalar", "V")], "a DMM")


@pytest.fixture
def pty_link(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A pty's path and a symlink to it (what a by-id name is)."""
    master, slave = pty.openpty()
    link = tmp_path / "usb-FTDI-if00-port0"
    link.symlink_to(os.ttyname(slave))
    yield os.ttyname(slave), str(link)
    os.close(master)
    os.close(slave)


def _inst(iid: str, t: InstrumentType, **block: object) -> InstrumentConfig:
    return InstrumentConfig(iid, t.name, t.flavor, block, 1)


def test_a_serial_port_and_its_visa_asrl_name_are_one_group(pty_link: tuple[str, str]
                                                            ) -> None:
    path, link = pty_link
    stage = _inst("stage", STAGE, port=path)
    dmm = _inst("dmm", DMM, resource=f"ASRL{link}::INSTR", visa_backend="@py")
    types = {"stage": STAGE, "dmm": DMM}
    for scope in ("resource", "board"):
        assert resource_group(dmm, DMM, scope, []) == resource_group(stage, STAGE, scope, []) \
            == f"serial {os.path.realpath(path)}"
        [shard] = plan([stage, dmm], types, 2, scope, [])  # one process holds the device
        assert sorted(shard.ids) == ["dmm", "stage"]
    # what is not a local device keeps its VISA group: a simulator, a numbered board, GPIB
    sim = _inst("sim", DMM, resource=f"ASRL{path}::INSTR", visa_backend="@sim")
    assert resource_group(sim, DMM, "resource", []) == f"visa ASRL{path}::INSTR@@sim"
    numbered = _inst("n", DMM, resource="ASRL1::INSTR")
    assert resource_group(numbered, DMM, "resource", []) == "visa ASRL1::INSTR@@py"
    gpib = _inst("g", DMM, resource="GPIB::5")
    assert resource_group(gpib, DMM, "board", []) == "visa board GPIB0@@py"
    assert resource_group(dmm, DMM, "global", []) == "visa (global lock scope)"
