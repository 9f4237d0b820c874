"""The data service's answers and its start: a remote command's result in plain values, an
unreadable old session told apart from the others, an IPv6 loopback address, and a bad TLS
certificate or key reported as such rather than as a port in use."""

from __future__ import annotations

import enum
import logging
import re
import socket
import subprocess
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.flight as flight
import pytest
from flight_lab import ipv6_loopback, lab_text, served_run
from polling import wait_until
from tls_pair import make_pair

import daqhub
from daqhub import session_files
from daqhub.flight_client import UnreadableSessionWarning
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument, now_ns
from daqhub.measurement import ChannelSpec, Measurement, Scalar, Spectrum
from daqhub.serve_config import ServeConfig, ServeConfigError
from daqhub.specs import InstrumentType

pytestmark = pytest.mark.timeout(60)
TOKEN = "answers-token"


class Mode(enum.Enum):
    DC = "dc"


class Answers(V2Instrument):
    """A v2 instrument whose commands answer in the types drivers return."""

    raw_calls = 0

    def read(self) -> list[Measurement]:
        return [Measurement(self.id, "level", now_ns(), Scalar(np.float32(0.5), "V"),
                            {"gain": 2})]

    def spectrum(self) -> Spectrum:
        return Spectrum(np.array([1.0, 2.0]), np.array([400.0, 500.0]), "counts", "nm")

    def frame(self) -> np.ndarray:
        return np.arange(6, dtype=np.uint16).reshape(2, 3)

    def mode(self) -> Mode:
        return Mode.DC

    def raw(self) -> bytes:
        self.raw_calls += 1
        return b"\x01\x02"

    def raw_count(self) -> int:
        return self.raw_calls


ANSWERS_TOML = '''
[[v2.instruments]]
id = "answers"
type = "test.answers"
poll_hz = 5
'''


@pytest.fixture
def host() -> PluginHost:
    h = PluginHost()
    h.load_entry_points()
    answers = InstrumentType("test.answers", "v2", "none", Answers,  # type: ignore[arg-type]
                             [ChannelSpec("level", "scalar", "V", "float32")],
                             "answers in numpy, enum, dataclass and bytes values")
    plugin = types.SimpleNamespace(daqhub_instrument_types=hookimpl(lambda: [answers]))
    assert h.register(plugin, "answers-tests", "answers-tests", "0")
    return h


@pytest.fixture
def lab(tmp_path: Path, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str]) -> str:
    """The stage and the DMM (``daqhub run`` knows their types)."""
    return lab_text(tmp_path / "data", visa_sim_backend(), sim_url("esp300", speed_scale=20))


@pytest.fixture
def served(lab: str, host: PluginHost, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    runs: list[Any] = []

    def start(config: ServeConfig | None = None) -> tuple[Any, Any]:
        cm = served_run(lab + ANSWERS_TOML, host, tmp_path, config)
        runs.append(cm)
        return cm.__enter__()  # type: ignore[no-any-return]

    yield start
    for cm in runs:
        cm.__exit__(None, None, None)


def test_a_remote_call_answers_in_plain_values_shaped_like_the_lab_api_s(
        served: Any) -> None:
    """``call("stage", "read")`` gave ``["Measurement(instrument_id='stage', ..."]``: the
    repr text of each sample, and no error."""
    rt, service = served(ServeConfig(port=0, token=TOKEN, actions=True))
    with daqhub.connect(service.url, token=TOKEN) as conn:
        local = rt.submit("stage", "read").result(10)[0]  # what a script in the run gets
        stage = conn.call("stage", "read")[0]
        assert stage["instrument_id"] == local.instrument_id == "stage"
        assert stage["channel"] == local.channel == "position"
        assert stage["data"]["unit"] == local.data.unit == "mm"
        assert isinstance(stage["data"]["value"], float)
        assert isinstance(stage["timestamp_ns"], int)
        assert stage["metadata"].keys() == dict(local.metadata).keys()

        batch = rt.submit("dmm", "read").result(10)[0]  # a v4 read: Arrow batches
        rows = conn.call("dmm", "read")[0]
        assert [list(r) for r in rows] == [batch.schema.names] * len(rows)
        assert isinstance(rows[0]["value"], float)

        level = conn.call("answers", "read")[0]
        assert level["data"] == {"value": 0.5, "unit": "V"}
        assert level["metadata"] == {"gain": 2}
        assert conn.call("answers", "spectrum") == {
            "values": [1.0, 2.0], "axis": [400.0, 500.0], "unit": "counts", "axis_unit": "nm"}
        assert conn.call("answers", "frame") == [[0, 1, 2], [3, 4, 5]]
        assert conn.call("answers", "mode") == "dc"


def test_a_result_that_has_no_json_form_is_an_error_saying_the_command_ran(
        served: Any) -> None:
    rt, service = served(ServeConfig(port=0, token=TOKEN, actions=True))
    with daqhub.connect(service.url, token=TOKEN) as conn:
        with pytest.raises(flight.FlightServerError,
                           match=r"answers\.raw ran, but its result cannot be sent: it holds "
                                 r"a value of type bytes.*may have had its effect"):
            conn.call("answers", "raw")
        assert conn.call("answers", "raw_count") == 1  # it did run


OLD = "20260101T000000Z-deadbeef"


def damage_an_old_session(rt: Any) -> list[Path]:
    """An old session whose data files cannot be read (cut short: an HDF5 file, a Parquet
    file), one of each flavor: the files."""
    h5 = Path(rt.lab.flavors["v2"].output_dir) / OLD / "session.h5"
    parquet = Path(rt.lab.flavors["v4"].output_dir) / OLD / "dmm" / "voltage.parquet"
    for path, content in ((h5, b"\x89HDF\r\n\x1a\n cut"), (parquet, b"PAR1 cut")):
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    return [h5, parquet]


def test_an_unreadable_old_session_is_told_and_the_others_stay_readable(
        served: Any, caplog: pytest.LogCaptureFixture) -> None:
    """One bad session.h5 of an old run made every session listing fail with h5py's "file
    signature not found" (naming no file), the running session's reads included; then it
    was left out without a word to the client, as if that flavor had no channels."""
    rt, service = served()
    wait_until(lambda: sum(rt.counts().get("dmm", {}).values()) >= 3, "rows from the dmm",
               timeout=30)
    bad = damage_an_old_session(rt)
    with caplog.at_level(logging.WARNING, "daqhub.serve"), \
            daqhub.connect(service.url, timeout=10) as conn:
        with pytest.warns(UnreadableSessionWarning) as warned:
            listed = conn.sessions()
        assert {sid: sorted(flavors) for sid, flavors in listed.items()} == {
            OLD: [], rt.session_id: ["v2", "v4"]}
        unreadable = conn.stored().unreadable
        assert sorted(unreadable) == [OLD] and sorted(unreadable[OLD]) == ["v2", "v4"]
        for path, flavor in zip(bad, ["v2", "v4"], strict=True):  # which file, and why
            assert unreadable[OLD][flavor].startswith(f"cannot read {path}: ")
            assert any(f"session {OLD}: its {flavor} channels are left out, the service "
                       f"cannot read them (cannot read {path}: " in str(w.message)
                       for w in warned), [str(w.message) for w in warned]
            assert any(str(path) in r.getMessage() for r in caplog.records), path
        with pytest.warns(UnreadableSessionWarning):  # it lists every session to pick one
            tables = conn.read_session()
        assert tables["v4/dmm/voltage"].num_rows >= 3
        assert conn.read_session(rt.session_id).keys() == tables.keys()
        assert isinstance(conn.read_records(rt.session_id), dict)
        assert len(conn.channels()) == 3
        with pytest.warns(UnreadableSessionWarning):
            assert conn.read_session(OLD) == {}


def test_every_session_file_that_cannot_be_read_is_named_and_an_empty_one_holds_nothing(
        tmp_path: Path) -> None:
    """A damaged Arrow stream was skipped quietly where an HDF5 or Parquet file raised: the
    service listed its session as if the channel did not exist. An empty file (created a
    moment ago, or by a run killed as it began) holds no channel yet, whatever its format."""
    d = tmp_path / OLD
    stream = d / "dmm" / "voltage.arrows"
    stream.parent.mkdir(parents=True)
    stream.write_bytes(b"not an Arrow stream")
    with pytest.raises(OSError, match=f"^cannot read {re.escape(str(stream))}: "):
        session_files.channels("v4", d)
    for path in (d / "session.h5", stream, d / "dmm" / "current.parquet"):
        path.write_bytes(b"")
    assert session_files.channels("v4", d) == []


def test_reading_one_session_reads_no_other_session_s_files(
        served: Any, caplog: pytest.LogCaptureFixture) -> None:
    """read_session(id) and read_records(id) listed every session to find the one asked for:
    each read opened every old session's files (and failed on an unreadable one)."""
    rt, service = served()
    wait_until(lambda: sum(rt.counts().get("dmm", {}).values()) >= 3, "rows from the dmm",
               timeout=30)
    damage_an_old_session(rt)
    with caplog.at_level(logging.WARNING, "daqhub.serve"), \
            daqhub.connect(service.url, timeout=10) as conn:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnreadableSessionWarning)
            assert conn.read_session(rt.session_id)["v4/dmm/voltage"].num_rows >= 3
            assert isinstance(conn.read_records(rt.session_id), dict)
        assert not [r for r in caplog.records if "not listed" in r.getMessage()]
        with pytest.raises(LookupError, match=rf"no session 'nope' .*there are {OLD}, "
                                              rf"{rt.session_id}\)"), \
                pytest.warns(UnreadableSessionWarning):  # what there is: every session
            conn.read_session("nope")


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_the_ipv6_loopback_is_served_and_a_busy_port_named_as_typed(
        served: Any, lab: str, host: PluginHost, tmp_path: Path) -> None:
    """``--serve [::1]:PORT`` was accepted, then failed: "Cannot parse URI: 'grpc://::1:0'"
    (reported as the address being in use)."""
    config = ServeConfig.from_table({}, address="[::1]:0", environ={})
    rt, service = served(config)
    assert service.url.startswith("grpc://[::1]:")
    with daqhub.connect(service.url, timeout=10) as conn:
        assert len(conn.channels()) == 3
    with socket.socket(socket.AF_INET6) as busy:
        busy.bind(("::1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = ServeConfig.from_table({}, address=f"[::1]:{port}", environ={})
        with pytest.raises(ServeConfigError, match=rf"cannot listen on \[::1\]:{port} "), \
                served_run(lab, host, tmp_path / "second", taken):
            pass


def test_a_bad_certificate_or_key_is_named_before_the_run_starts(
        tmp_path: Path, lab: str) -> None:
    """A certificate or key that is not PEM, or a key of another certificate, was reported as
    "cannot listen on 127.0.0.1:0 (in use, ...): Server did not start properly"."""
    cert, key = make_pair(tmp_path / "certs", "a")
    other_cert, other_key = make_pair(tmp_path / "certs", "b")
    junk = tmp_path / "certs" / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = {(junk, key): f"{junk} is not a PEM certificate",
             (cert, junk): f"{junk} is not a PEM private key",
             (cert, other_key): f"{other_key} is not the private key of {cert}"}
    for (c, k), why in cases.items():
        with pytest.raises(ServeConfigError) as err:
            ServeConfig.from_table({"tls_cert": str(c), "tls_key": str(k)}, environ={})
        assert str(err.value) == f"tls_cert/tls_key: {why}"
    assert ServeConfig.from_table({"tls_cert": str(other_cert), "tls_key": str(other_key)},
                                  environ={}).scheme == "grpc+tls"

    lab_file = tmp_path / "lab.toml"
    lab_file.write_text(f'[daqhub.serve]\naddress = "127.0.0.1:0"\ntls_cert = "{cert}"\n'
                        f'tls_key = "{other_key}"\n{lab}')
    run = subprocess.run([sys.executable, "-m", "daqhub", "run", str(lab_file), "--duration",
                          "1", "--plain"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    err_text = run.stderr
    assert f"tls_cert/tls_key: {other_key} is not the private key of {cert}" in err_text
    assert "cannot listen" not in err_text
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_starting_with_an_unchecked_bad_pair_blames_the_pair_not_the_address(
        tmp_path: Path, lab: str, host: PluginHost) -> None:
    """A ServeConfig made in code is not checked before start_service; gRPC's "Server did
    not start properly" then read as a port problem."""
    cert, _ = make_pair(tmp_path / "certs", "a")
    _, other_key = make_pair(tmp_path / "certs", "b")
    with pytest.raises(ServeConfigError, match="^tls_cert/tls_key: .* is not the private "
                                               "key of"), \
            served_run(lab, host, tmp_path, ServeConfig(port=0, tls_cert=cert,
                                                          tls_key=other_key)):
        pass
