"""A scripted scan served over Flight: its points table, settings snapshots and session
metadata reach the remote copy (``daqhub record``) and ``daqhub.connect().read_records()``
byte for byte, the records written after the recorder's last fetch included."""

from __future__ import annotations

import io
import json
import runpy
import threading
from pathlib import Path
from typing import Any

import h5py
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.ipc as ipc
import pytest
from polling import wait_until
from test_lab_across_machines import assert_same_session

import daqhub
from daqhub.flight_record import Recorder

pytestmark = pytest.mark.timeout(90)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "malus_scan.py"
#: the guide's Malus-scan optics (mount in v4), on a sim bus of its own, served
LAB = str(runpy.run_path(str(EXAMPLE))["LAB"]).replace("malus", "flightrecords").replace(
    "[daqhub]\n", "[daqhub]\nshutdown_timeout = 10\n") + """
[daqhub.serve]
address = "127.0.0.1:0"
"""
ANGLES = [0.0, 30.0, 60.0, 90.0]


def test_a_scans_points_and_settings_arrive_in_the_remote_copy(tmp_path: Path,
                                                                daqhub_host: Any) -> None:
    out = io.StringIO()
    text = LAB.format(output_dir=(tmp_path / "local").as_posix(), mount_flavor="v4")
    with daqhub.open_lab(text, host=daqhub_host, meta={"operator": "Ada"}, report=None) as lab:
        assert lab.service is not None
        conn = daqhub.connect(lab.service.url)
        rec = Recorder(conn, tmp_path / "copy", daqhub_host, out)
        thread = threading.Thread(target=rec.run, daemon=True)
        thread.start()
        wait_until(lambda: "copying session" in out.getvalue(), "the recorder started",
                   timeout=30)
        lab["power"].set_wavelength(800)  # a settings snapshot in the middle of the run
        table = lab.scan("rotator", ANGLES, read=["power.power"], settle=0.05)
        sid, dirs = lab.session_id, lab.output_dirs()
        records = conn.read_records()  # the same files, read over Flight while it runs
        assert records == {f"{flavor}/{p.name}": p.read_bytes()
                           for flavor, d in dirs.items() for p in sorted(d.iterdir())
                           if p.name in ("records.h5", "settings.arrow", "points-scan-1.arrow")}
    thread.join(30)
    assert not thread.is_alive(), out.getvalue()
    assert rec.result.exit_code == 0, out.getvalue()
    assert_same_session(tmp_path / "local", tmp_path / "copy")
    copy_v4 = tmp_path / "copy" / "v4" / sid
    points = ipc.open_file(copy_v4 / "points-scan-1.arrow").read_all()
    assert points["rotator"].to_pylist() == ANGLES  # every row, the last one too
    assert points.equals(table)
    assert points.schema.metadata[b"daqhub.complete"] == b"true"
    assert json.loads(points.schema.metadata[b"daqhub.meta"]) == {"operator": "Ada"}
    with h5py.File(tmp_path / "copy" / "v2" / sid / "records.h5", "r") as f:
        assert f["meta"].attrs["operator"] == "Ada"
        assert list(f["points/scan-1/rotator"][()]) == ANGLES
        reasons = list(f["settings/reason"].asstr()[()])
        snapshots = [json.loads(s) for s in f["settings/settings"].asstr()[()]]
        instruments = list(f["settings/instrument"].asstr()[()])
    assert "after set_wavelength" in reasons
    after = snapshots[reasons.index("after set_wavelength")]
    assert instruments[reasons.index("after set_wavelength")] == "power"
    assert 800 in after.values()


def test_a_bad_records_ticket_is_refused(tmp_path: Path, daqhub_host: Any) -> None:
    text = LAB.format(output_dir=(tmp_path / "local").as_posix(), mount_flavor="v4")
    with daqhub.open_lab(text, host=daqhub_host, report=None) as lab:
        assert lab.service is not None
        conn = daqhub.connect(lab.service.url)
        for ticket, says in (({"records": "../etc", "flavor": "v2"}, "not a session id"),
                             ({"records": lab.session_id, "flavor": "v9"}, "flavor 'v9'"),
                             ({"records": lab.session_id, "flavor": "v2", "follow": 1},
                              "follow 1")):
            with pytest.raises(pa.ArrowInvalid, match=says):  # INVALID_ARGUMENT
                conn.client.do_get(flight.Ticket(json.dumps(ticket).encode()),
                                   conn.options()).read_all()
        assert lab["power"].flavor == "v2"  # the run goes on
        assert set(conn.read_records()) >= {"v2/records.h5", "v4/settings.arrow"}
