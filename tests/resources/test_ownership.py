"""One device, one owner: identity keys, exclusive opens, lock records naming the holder."""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pyvisa
import serial
from resources_fakes import PtyDevice

from daqhub.resources import (
    ResourceBusyError,
    ResourceConfigConflictError,
    SerialPortManager,
    VisaSessionManager,
    serial_identity,
    visa_identity,
)
from daqhub.resources.filelock import HOLDER_ENV, holder_for_children, lock_path_for
from daqhub.resources.identity import visa_serial_identity
from daqhub.resources.ownership import LOCK_DIR_ENV, claim, held_devices, holder, record_path

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "locks"
    monkeypatch.setenv(LOCK_DIR_ENV, str(d))
    return d


@pytest.fixture
def other_mgr() -> Iterator[SerialPortManager]:
    """A second manager: what another daqhub process would be (its own record lock)."""
    mgr = SerialPortManager()
    yield mgr
    mgr.close_all(5.0)


def test_identity_of_names() -> None:
    assert serial_identity("socket://LocalHost:4001?logging=debug") == "socket://127.0.0.1:4001"
    assert serial_identity("SOCKET://10.0.0.02:4001".replace("02", "2")) == \
        "socket://10.0.0.2:4001"
    assert serial_identity("rfc2217://Lab-Box.:2217?ign_set_control") == "rfc2217://lab-box:2217"
    assert serial_identity("socket://[::1]:7") == "socket://[::1]:7"
    with pytest.raises(ValueError, match="HOST:PORT"):
        serial_identity("socket://nohostport")
    # simulator URLs: the handler says which line they reach (line options are not identity)
    pkgs = ["daqhub_sims.urlhandler"]
    assert serial_identity("sim://ESP300?latency=0.01", pkgs) == serial_identity(
        "sim://esp300", pkgs)
    assert serial_identity("sim://elliptec?name=bench&devices=0:ELL14", pkgs) == \
        serial_identity("sim://elliptec?name=bench", pkgs)
    assert serial_identity("sim://esp300?axes=2", pkgs) != serial_identity("sim://esp300", pkgs)
    assert visa_identity("TCPIP::LocalHost::INSTR") == "TCPIP0::127.0.0.1::inst0::INSTR"
    assert visa_identity("GPIB::5") == "GPIB0::5::INSTR"


def test_symlink_and_target_share_one_port_and_one_lock(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice],
        tmp_path: Path) -> None:
    dev = pty_device(link=tmp_path / "by-id-FAKE")
    via_link = serial_mgr.port(dev.path)
    via_target = serial_mgr.port(dev.pty_path)
    assert via_link is via_target
    assert via_link.identity == os.path.realpath(dev.pty_path)
    assert holder(via_link.identity) is not None and holder(via_link.identity).pid == os.getpid()
    with pytest.raises(ResourceConfigConflictError, match="both reach"):
        serial_mgr.port(dev.pty_path, baudrate=19200)

    crossed: list[tuple[bytes, bytes]] = []

    def user(port_name: str, tag: str) -> None:
        port = serial_mgr.port(port_name)
        for n in range(150):
            token = f"{tag}{n}".encode()
            reply = port.query(b"Q" + token + b"\n", terminator=b"\n", owner=tag)
            if reply != b"R" + token:
                crossed.append((token, reply))

    threads = [threading.Thread(target=user, args=(name, tag))
               for name, tag in ((dev.path, "link"), (dev.pty_path, "target"),
                                 (dev.path, "link2"), (dev.pty_path, "target2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert crossed == []
    assert len(dev.requests) == 600


def test_second_owner_is_refused_naming_the_first(
        serial_mgr: SerialPortManager, other_mgr: SerialPortManager,
        pty_device: Callable[..., PtyDevice], tmp_path: Path) -> None:
    dev = pty_device(link=tmp_path / "ttyLINK")
    port = serial_mgr.port(dev.pty_path)
    with pytest.raises(ResourceBusyError) as info:
        other_mgr.port(dev.path)  # another name of the same device
    message = str(info.value)
    assert dev.path in message and f"process {os.getpid()}" in message
    assert info.value.holder and str(os.getpid()) in info.value.holder
    assert port.query(b"Qstill\n", terminator=b"\n") == b"Rstill"  # the owner is unharmed
    assert os.path.realpath(dev.pty_path) in held_devices()
    serial_mgr.close_all(5.0)
    assert held_devices() == {}
    assert other_mgr.port(dev.path).query(b"Qnext\n", terminator=b"\n") == b"Rnext"


def test_a_url_another_lab_of_this_process_holds_is_named_so(
        serial_mgr: SerialPortManager, other_mgr: SerialPortManager,
        sim_url: Callable[..., str]) -> None:
    """Two labs in one script on one simulated (or ser2net) URL: a URL has no lock record,
    and the refusal blamed "a handle opened without the manager (a driver or tool calling
    serial_for_url itself?)"."""
    url = sim_url("esp300")
    serial_mgr.port(url)
    with pytest.raises(ResourceBusyError, match="in use by another lab .another serial "
                                                "manager. in this process"):
        other_mgr.port(url)
    serial_mgr.close_all(5.0)
    assert other_mgr.port(url).query(b"VE?\r", terminator=b"\r\n").startswith(b"ESP300")


def test_a_program_holding_the_port_is_named_as_not_daqhub(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    dev = pty_device()
    with serial.serial_for_url(dev.pty_path, exclusive=True):  # what minicom -o... would hold
        with pytest.raises(ResourceBusyError, match="another program .not a daqhub process"):
            serial_mgr.port(dev.pty_path)
    assert holder(serial_identity(dev.pty_path)) is None  # the failed open kept no record
    assert serial_mgr.port(dev.pty_path).query(b"Q1\n", terminator=b"\n") == b"R1"


def test_a_stale_record_of_a_dead_process_is_taken_over(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    dev = pty_device()
    identity = serial_identity(dev.pty_path)
    path = record_path(identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("pid=999999\nhost=gone\nsince=2020-01-01T00:00:00Z\ncommand=daqhub run\n")
    port = serial_mgr.port(dev.pty_path)
    assert port.query(b"Q2\n", terminator=b"\n") == b"R2"
    found = holder(identity)
    assert found is not None and found.pid == os.getpid()


BYPASS = textwrap.dedent("""
    import errno, sys, serial
    from daqhub.resources import SerialPortManager
    path = sys.argv[1]
    mgr = SerialPortManager()
    port = mgr.port(path)
    try:
        serial.serial_for_url(path)  # a driver opening the managed port itself
    except serial.SerialException as exc:
        print("refused", exc.errno == errno.EBUSY, exc)
    else:
        print("opened")
    print("manager", port.query(b"Qok\\n", terminator=b"\\n"))
    mgr.close_all(5.0)
    serial.serial_for_url(path).close()  # released: the tty is left as it was found
    print("reopened")
""")


def _without_cap_sys_admin() -> None:
    """Root with CAP_SYS_ADMIN may open a tty in exclusive mode (Linux tty_io.c); labs run as
    ordinary users. Drop it from the bounding set so the exec'd child is such a process."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_sys_admin = 24, 21
    if libc.prctl(pr_capbset_drop, cap_sys_admin, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN)")


def _may_drop_capabilities() -> bool:
    """CAP_SETPCAP (bit 8) in our effective set: what the prctl above needs."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 8 & 1)
    return False


def test_a_driver_calling_serial_for_url_on_a_managed_port_is_refused(
        pty_device: Callable[..., PtyDevice], lock_dir: Path) -> None:
    root = os.geteuid() == 0
    if root and not _may_drop_capabilities():
        pytest.skip("root without CAP_SETPCAP cannot start a process without CAP_SYS_ADMIN, "
                    "which the kernel lets open an exclusive tty")
    dev = pty_device()
    result = subprocess.run(
        [sys.executable, "-c", BYPASS, dev.pty_path], capture_output=True, text=True,
        timeout=20, env={**os.environ, LOCK_DIR_ENV: str(lock_dir)},
        preexec_fn=_without_cap_sys_admin if root else None)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("refused True") and dev.pty_path in lines[0], lines
    assert lines[1:] == ["manager b'Rok'", "reopened"]


class _LockedSession:
    """A VISA session some other program holds locked."""

    def __init__(self, code: pyvisa.constants.StatusCode) -> None:
        self.code = code
        self.closed = False

    def lock_excl(self, timeout: int | None = None) -> None:
        raise pyvisa.errors.VisaIOError(self.code)

    def close(self) -> None:
        self.closed = True


class _Rm:
    def __init__(self, session: _LockedSession) -> None:
        self.session = session

    def open_resource(self, name: str, **settings: object) -> _LockedSession:
        return self.session

    def close(self) -> None:
        pass


def test_visa_resources_are_locked_where_the_backend_can(sim_backend: str) -> None:
    locked = _LockedSession(pyvisa.constants.StatusCode.error_resource_locked)
    mgr = VisaSessionManager(rm_factory=lambda key: _Rm(locked))
    with pytest.raises(ResourceBusyError, match="GPIB0::9::INSTR is locked by another session"):
        mgr.resource("GPIB0::9::INSTR")
    assert locked.closed
    unsupported = _LockedSession(pyvisa.constants.StatusCode.error_nonsupported_operation)
    mgr = VisaSessionManager(rm_factory=lambda key: _Rm(unsupported))
    assert "refused to lock" in mgr.resource("GPIB0::9::INSTR").exclusive
    with VisaSessionManager() as sim:  # pyvisa-sim has no locking: used unlocked, and said so
        res = sim.resource("GPIB0::5::INSTR", backend=sim_backend, read_termination="\n",
                           write_termination="\n")
        assert res.stats()["exclusive"] == "unlocked: this VISA backend cannot lock"
        assert res.query("Q1?") == "R1"


def test_record_path_is_beside_a_writable_device_directory(tmp_path: Path,
                                                           lock_dir: Path) -> None:
    assert record_path(str(tmp_path / "ttyX")) == lock_path_for(tmp_path / "ttyX")
    assert record_path("/dev/ttyUSB0").parent == lock_dir
    assert record_path("/dev/ttyUSB0").name == "%2Fdev%2FttyUSB0.lock"


def test_daqhub_ports_says_who_holds_each_port(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from daqhub.cli.ports import list_ports

    held = pty_device()
    serial_mgr.port(held.pty_path)
    node = tmp_path / "ttyS9"  # a device node nobody has open, until another program opens it
    node.touch()
    with open(node, "rb"):
        assert list_ports([], True, [str(node)]) == 0
    found = {p["device"]: p["in_use"] for p in json.loads(capsys.readouterr().out)["serial"]}
    # the port a daqhub manager holds is listed although the system does not list ptys
    assert found[os.path.realpath(held.pty_path)].startswith(f"daqhub process {os.getpid()}")
    assert found[str(node)].startswith(f"pid {os.getpid()} (")
    list_ports([], True, [str(node)])
    found = {p["device"]: p["in_use"] for p in json.loads(capsys.readouterr().out)["serial"]}
    assert found[str(node)] == ""
    list_ports([], False, [str(node)])
    text = capsys.readouterr().out
    assert "in use by daqhub process" in text and "free" in text


def test_a_driver_opening_a_managed_simulated_port_itself_is_refused(
        serial_mgr: SerialPortManager) -> None:
    import errno

    import daqhub_sims

    daqhub_sims.install()
    url = "sim://esp300?name=ownership-test"
    port = serial_mgr.port(url)
    with pytest.raises(serial.SerialException) as info:
        serial.serial_for_url("SIM://esp300?name=ownership-test")  # bytes that would mix in
    assert info.value.errno == errno.EBUSY and "busy" in str(info.value)
    assert port.query(b"1TP?\r", terminator=b"\r\n")  # the manager's own line still works
    serial_mgr.close_all(5.0)
    serial.serial_for_url(url).close()  # free again once the manager let go


# ---------------------------------------------------------------- a serial line through VISA

def _asrl(path: str) -> str:
    return f"ASRL{path}::INSTR"


def test_a_visa_asrl_session_holds_its_devices_record_against_a_serial_port(
        visa_mgr: VisaSessionManager, other_mgr: SerialPortManager,
        pty_device: Callable[..., PtyDevice], tmp_path: Path) -> None:
    dev = pty_device(link=tmp_path / "ttyLINK")
    res = visa_mgr.resource(_asrl(dev.path), backend="@py", read_termination="\n",
                            write_termination="\n")
    assert res.query("Qvisa") == "Rvisa"
    with pytest.raises(ResourceBusyError) as info:
        other_mgr.port(dev.pty_path)  # another process naming the same line as a serial port
    message = str(info.value)
    assert dev.pty_path in message and f"process {os.getpid()} " in message, message
    assert info.value.holder and str(os.getpid()) in info.value.holder
    found = holder(serial_identity(dev.pty_path))
    assert found is not None and found.pid == os.getpid()
    assert res.query("Qstill") == "Rstill"  # the owner is unharmed
    assert dev.requests == [b"Qvisa", b"Qstill"]  # nothing of the refused opener's reached it
    assert visa_mgr.close_all(5.0) == []
    assert held_devices() == {}
    assert other_mgr.port(dev.path).query(b"Qnext\n", terminator=b"\n") == b"Rnext"


def test_a_serial_ports_owner_refuses_a_visa_asrl_session_naming_itself(
        serial_mgr: SerialPortManager, visa_mgr: VisaSessionManager,
        pty_device: Callable[..., PtyDevice], tmp_path: Path) -> None:
    dev = pty_device(link=tmp_path / "ttyLINK")
    port = serial_mgr.port(dev.pty_path)
    with pytest.raises(ResourceBusyError) as info:
        visa_mgr.resource(_asrl(dev.path), backend="@py")
    message = str(info.value)
    assert message.startswith(f"VISA resource {_asrl(dev.path)} (device "), message
    assert f"process {os.getpid()} " in message and os.path.realpath(dev.pty_path) in message
    assert visa_mgr.resources() == []  # refused before anything was opened
    assert port.query(b"Qok\n", terminator=b"\n") == b"Rok"
    serial_mgr.close_all(5.0)
    res = visa_mgr.resource(_asrl(dev.path), backend="@py", read_termination="\n",
                            write_termination="\n")
    assert res.query("Q1") == "R1"


class _FakeSession:
    def __init__(self) -> None:
        self.closed = False

    def lock_excl(self, timeout: int | None = None) -> None:
        raise NotImplementedError

    def query(self, command: str) -> str:
        return "R" + command[1:]

    def close(self) -> None:
        self.closed = True


class _FakeRm:
    def open_resource(self, name: str, **settings: object) -> _FakeSession:
        return _FakeSession()

    def close(self) -> None:
        pass


SIM_ASRL = """\
spec: "1.1"
devices:
  dev0:
    eom:
      ASRL INSTR:
        q: "\\n"
        r: "\\n"
    dialogues:
      - q: "Q1?"
        r: "R1"
resources:
  ASRL1::INSTR:
    device: dev0
"""


def test_simulated_numbered_and_other_visa_resources_take_no_record(
        other_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice], tmp_path: Path,
        sim_backend: str) -> None:
    dev = pty_device()
    (tmp_path / "asrl.yaml").write_text(SIM_ASRL)
    with VisaSessionManager(rm_factory=lambda key: _FakeRm()) as fake:
        # a simulated backend opens no device, whatever the name says
        assert fake.resource(_asrl(dev.pty_path), backend="@sim").query("Q2") == "R2"
        assert fake.resource(_asrl(dev.pty_path), backend=f"{tmp_path}/x.yaml").query(
            "Q3") == "R3"
        with VisaSessionManager() as sim:
            asrl = sim.resource("ASRL1::INSTR", backend=f"{tmp_path / 'asrl.yaml'}@sim",
                                read_termination="\n", write_termination="\n")
            gpib = sim.resource("GPIB0::5::INSTR", backend=sim_backend, read_termination="\n",
                                write_termination="\n")
            assert asrl.query("Q1?") == "R1" and gpib.query("Q1?") == "R1"
            assert held_devices() == {}
            assert other_mgr.port(dev.pty_path).query(b"Q4\n", terminator=b"\n") == b"R4"
    assert visa_serial_identity(_asrl(dev.pty_path), "@py") == os.path.realpath(dev.pty_path)
    assert visa_serial_identity(_asrl(dev.pty_path), "") == os.path.realpath(dev.pty_path)
    for name, backend in ((_asrl(dev.pty_path), "@SIM"), ("ASRL1::INSTR", "@py"),
                          ("GPIB0::5::INSTR", "@py"), ("TCPIP::10.0.0.2::INSTR", "@py")):
        assert visa_serial_identity(name, backend) is None, (name, backend)


# ---------------------------------------------------------------- who a worker's record names

HOLD = textwrap.dedent("""
    import sys
    from daqhub.resources.ownership import claim
    lock = claim(sys.argv[1], sys.argv[1])
    print("held", flush=True)
    sys.stdin.readline()  # until the test lets go
""")


def _holding_child(identity: str, env: dict[str, str]) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", HOLD, identity], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], 20)
    line = child.stdout.readline() if ready else ""
    if line != "held\n":
        child.kill()
        raise AssertionError(f"no record taken: {line!r} {child.communicate(timeout=10)}")
    return child


def _let_go(child: subprocess.Popen[str]) -> None:
    child.communicate("\n", timeout=20)


def test_a_worker_s_record_names_the_run_that_started_it(lock_dir: Path) -> None:
    identity = "/dev/ttyWORKER-TEST"
    env = {**holder_for_children("worker 2"), LOCK_DIR_ENV: str(lock_dir)}
    child = _holding_child(identity, env)
    try:
        with pytest.raises(ResourceBusyError) as info:
            claim(identity, "/dev/ttyWORKER-TEST")
        message = str(info.value)
        # the run (this process, which a user can stop) is the holder; the worker is detail
        assert f"in use by process {os.getpid()} on " in message, message
        assert f"through its worker 2 (pid {child.pid}) since " in message, message
        found = holder(identity)
        assert found is not None and found.pid == os.getpid()
        assert found.via == f"worker 2 (pid {child.pid})"
    finally:
        _let_go(child)
    assert holder(identity) is None


def test_a_process_not_started_by_the_named_run_names_itself(lock_dir: Path) -> None:
    identity = "/dev/ttyPLAIN-TEST"
    # a value inherited from further up (this process's parent's), not the child's parent's
    variable = {HOLDER_ENV: json.dumps({"pid": os.getppid(), "command": "daqhub run x.toml",
                                        "role": "worker 1"})}
    for env in ({**os.environ, LOCK_DIR_ENV: str(lock_dir)},
                {**os.environ, LOCK_DIR_ENV: str(lock_dir), **variable}):
        child = _holding_child(identity, env)
        try:
            found = holder(identity)
            assert found is not None and found.pid == child.pid and found.via == ""
            with pytest.raises(ResourceBusyError, match=f"in use by process {child.pid} on "):
                claim(identity, identity)
        finally:
            _let_go(child)


# ---------------------------------------------------------------- looking is not holding

def test_a_probe_caught_looking_does_not_make_a_free_port_busy(lock_dir: Path) -> None:
    identity = "/dev/ttyPROBED"
    path = record_path(identity)
    path.write_text("")
    probe = os.open(path, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)  # what holder() / `daqhub ports` holds while it looks
    done = threading.Timer(0.05, lambda: (fcntl.flock(probe, fcntl.LOCK_UN), os.close(probe)))
    done.start()
    try:
        lock = claim(identity, identity)  # the port is free: the probe is waited out
    finally:
        done.join(5)
    try:
        found = holder(identity)
        assert found is not None and found.pid == os.getpid()  # the probe still sees a holder
        start = time.monotonic()
        with pytest.raises(ResourceBusyError, match=f"in use by process {os.getpid()} "):
            claim(identity, identity)  # a real holder is refused at once, probes or not
        assert time.monotonic() - start < 0.4
    finally:
        lock.release()
    assert holder(identity) is None
