"""A script's fresh readings when the instrument's read refuses a value the script did not
ask for, and where the shutdown report of a script's lab goes.

A toolkit driver's read that refuses one value (``RefusedValues``: a temperature that is
not the integer its channel declares) made ``lab.measure(["meter.power"])`` and every scan
reading ``meter.power`` fail, though the power was read and fine. The asked-for channels
are served now; the refusal is counted in the instrument's health, so the run is not ok
and the report names the value; a refused value of an asked channel still fails the run,
naming it.
"""

from __future__ import annotations

import contextlib
import io
import types
from pathlib import Path
from typing import Any

import pytest

import daqhub
from daqhub.driver import Session, command, instrument_types
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec, DataError

STAGE = '''
[[v2.instruments]]
id = "stage"
type = "test.limited"
poll_hz = 5
'''


class Meter(Session):
    """A meter whose next reading's temperature can be spoiled: a float for its int64
    channel, which the read refuses alone."""

    type_name = "test.spoilable"
    description = "a meter whose temperature reading can be spoiled once"
    transport = "none"
    channels = [ChannelSpec("power", "scalar", "W"),
                ChannelSpec("temperature", "scalar", "C", "int64")]
    spoiled = False

    def poll(self) -> dict[str, Any]:
        temperature = 21.5 if self.spoiled else 21
        self.spoiled = False
        return {"power": 1.0, "temperature": temperature}

    @command
    def spoil(self) -> None:
        """The next reading's temperature cannot be stored as declared."""
        self.spoiled = True


@pytest.fixture
def meter_host(host: PluginHost) -> PluginHost:
    assert host.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(
        lambda: instrument_types(Meter))), "spoilable", "spoilable", "0")
    return host


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_read_refusing_a_channel_not_asked_for_serves_the_asked_ones_and_is_reported(
        meter_host: PluginHost, tmp_path: Path, flavor: str) -> None:
    # one poll at the start, the next in 100 s: every spoiled reading is the script's
    lab_text = (f'[daqhub]\noutput_dir = "{tmp_path}"\n[[{flavor}.instruments]]\nid = "meter"\n'
                f'type = "test.spoilable"\npoll_hz = 0.01\n{STAGE}')
    printed = io.StringIO()
    with daqhub.open_lab(lab_text, host=meter_host, report=printed) as lab:
        lab.latest("meter", wait=10)
        lab["meter"].spoil()
        measured = lab.measure(["meter.power"])
        assert measured["meter.power"].to_pylist() == [1.0]
        lab["meter"].spoil()
        scanned = lab.scan("stage", [1.0, 2.0], read=["meter.power"])
        assert scanned["meter.power"].to_pylist() == [1.0, 1.0]
        assert scanned.schema.metadata[b"daqhub.complete"] == b"true"
        lab["meter"].spoil()  # asked for, the refused value still fails the run, named
        with pytest.raises(DataError, match=r"meter\.temperature is declared int64, got "
                                            r"float 21\.5"):
            lab.measure(["meter"])
        failed = list(lab.records.runs.values())[-1].table()
        assert failed.schema.metadata[b"daqhub.complete"] == b"false"
        assert b"meter.temperature" in failed.schema.metadata[b"daqhub.stop_reason"]
    report = lab.report
    assert report is not None and not report.ok
    outcome = next(o for o in report.instruments if o["id"] == "meter")
    assert (outcome["ok"], outcome["refused_samples"]) == (False, 3)
    assert outcome["last_error"].startswith("rejected 1 sample(s) of channel 'temperature': "
                                            "channel meter.temperature is declared int64")
    assert "NOT OK: meter: 3 of its samples refused" in printed.getvalue()


def test_the_report_goes_to_stderr_as_it_is_when_the_lab_closes(
        host: PluginHost, tmp_path: Path) -> None:
    """``report=sys.stderr`` as a default was the stderr of import time: a script that
    redirected stderr afterwards had the report written past its redirection."""
    lab = daqhub.open_lab(f'[daqhub]\noutput_dir = "{tmp_path}"\n{STAGE}', host=host)
    caught = io.StringIO()
    with contextlib.redirect_stderr(caught):
        lab.close()
    assert "shutdown report" in caught.getvalue()
    assert "stage (v2): stopped" in caught.getvalue()
