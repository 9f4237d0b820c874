"""The settings snapshots of SCPI instruments: who the instrument is (``*IDN?``), what the
lab file set it up for, and the setpoints a power supply holds, as a lab script and the
session's stored snapshots show them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.ipc as ipc
import pytest

import daqhub
from daqhub_sims import visa_files

pytestmark = pytest.mark.timeout(60)

LAB = '''
[daqhub]
shutdown_timeout = 10

[{flavor}]
storage = "arrow"

[[{flavor}.instruments]]
id = "dmm"
type = "scpi.dmm"
resource = "{dmm}"
visa_backend = "{backend}"
function = ["VOLT:DC", "RES"]
poll_hz = 5

[[{flavor}.instruments]]
id = "psu"
type = "scpi.psu"
resource = "{psu}"
visa_backend = "{backend}"
poll_hz = 5
'''


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_settings_say_which_instrument_and_how_it_was_set(tmp_path: Path, flavor: str) -> None:
    backend = visa_files.sim_library(visa_files.fresh_copy(tmp_path))
    lab_text = LAB.format(flavor=flavor, dmm=visa_files.DMM_RESOURCE,
                          psu=visa_files.PSU_RESOURCE, backend=backend)
    with daqhub.open_lab(lab_text, output_dir=tmp_path / "data", report=None) as lab:
        dmm = lab["dmm"].settings()
        lab["psu"].set_voltage(3.3)
        lab["psu"].set_output(True)
        psu = lab["psu"].settings()
        session_dir = lab.output_dirs()[flavor]
    assert dmm == {"idn": "SIM,DMM1,VISA0005,1.0", "manufacturer": "SIM", "model": "DMM1",
                   "serial": "VISA0005", "firmware": "1.0", "function": ["VOLT:DC", "RES"]}
    assert psu == {"idn": "SIM,PSU1,VISA0006,1.0", "manufacturer": "SIM", "model": "PSU1",
                   "serial": "VISA0006", "firmware": "1.0", "voltage_setpoint": 3.3,
                   "current_limit": 1.0, "output": True}
    with ipc.open_file(session_dir / "settings.arrow") as reader:
        rows = reader.read_all().to_pylist()
    stored = {(r["instrument"], r["reason"]): json.loads(r["settings"]) for r in rows}
    assert stored["dmm", "session start"] == dmm
    start = stored["psu", "session start"]
    assert (start["model"], start["serial"], start["voltage_setpoint"], start["output"]) == (
        "PSU1", "VISA0006", 0.0, False)
    assert stored["psu", "after set_voltage"]["voltage_setpoint"] == 3.3
    assert stored["psu", "after set_output"] == psu


def test_setpoints_that_cannot_be_read_leave_the_identity(sim_library, open_resource,
                                                          build) -> None:
    """A supply that does not answer ``VOLT?`` (here the DMM, which has no such query): the
    snapshot still says which instrument it was, and why the setpoints are missing."""
    psu = build("v2", "scpi.psu", open_resource(visa_files.DMM_RESOURCE, sim_library), "psu")
    psu.connect()
    settings = psu.settings()
    assert (settings["model"], settings["serial"]) == ("DMM1", "VISA0005")
    assert "VOLT?" in settings["setpoints_error"]
    assert "voltage_setpoint" not in settings
