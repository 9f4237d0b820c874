"""The three ways to reach a simulated device (sim://, pty, TCP), its registry and its faults.

Each test checks what a client program sees through real pyserial objects.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from polling import wait_until

import daqhub_sims
from daqhub_sims import registry
from daqhub_sims.device import ManualClock
from daqhub_sims.elliptec import ElliptecBus
from daqhub_sims.pty_server import PtyServer
from daqhub_sims.tcp_server import TcpServer

pytestmark = pytest.mark.timeout(15)

BUS = "sim://elliptec?devices=0:ELL14,1:ELL9"
FAST_BUS = "sim://elliptec?devices=0:ELL14,1:ELL9&speed_scale=4"  # 90 degrees in ~52 ms
IN_0 = b"0IN0E1014000020231701016800023000\r\n"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    daqhub_sims.install()
    registry.reset()
    yield
    registry.reset()


def open_url(url: str = BUS, timeout: float | None = 1.0) -> serial.SerialBase:
    return serial.serial_for_url(url, timeout=timeout)


def raises_like_a_vanished_port(port: serial.SerialBase) -> None:
    """What pyserial's POSIX port raises once its USB adapter is gone (pyserial 3.5 on Linux)."""
    with pytest.raises(serial.SerialException, match="returned no data"):
        port.read(1)
    with pytest.raises(serial.SerialException, match="write failed"):
        port.write(b"0gs")
    with pytest.raises(OSError) as exc_info:
        port.in_waiting  # noqa: B018 - a property with an effect
    assert exc_info.value.errno == errno.EIO
    with pytest.raises(termios.error):
        port.reset_input_buffer()
    assert port.is_open


# -- registry -------------------------------------------------------------------------------
def test_install_is_idempotent() -> None:
    daqhub_sims.install()
    daqhub_sims.install()
    assert serial.protocol_handler_packages.count("daqhub_sims.urlhandler") == 1


def test_create_unknown_model_lists_known_ones() -> None:
    with pytest.raises(LookupError, match="elliptec.*esp300.*newport1830c"):
        registry.create("nosuch")
    assert isinstance(registry.create("elliptec", {"devices": "0:ELL6"}), ElliptecBus)


@pytest.mark.parametrize(("model", "typo", "known"), [
    ("esp300", "speed_sacle", "speed_scale"), ("newport1830c", "powr", "power"),
    ("elliptec", "speed_sacle", "speed_scale"), ("esp300", "devices", "axes")])
def test_every_model_refuses_an_option_it_does_not_declare(model: str, typo: str,
                                                           known: str) -> None:
    """esp300 and newport1830c served their defaults for a typo, without a word."""
    with pytest.raises(ValueError, match=rf"takes no option '{typo}'; its options: .*{known}"):
        registry.create(model, {typo: "10"})
    with pytest.raises(serial.SerialException, match=f"takes no option '{typo}'"):
        open_url(f"sim://{model}?{typo}=10")


def test_same_line_whatever_the_option_order() -> None:
    a = registry.endpoint("sim://elliptec?devices=0:ELL14&speed_scale=2")
    b = registry.endpoint("sim://ELLIPTEC?speed_scale=2&devices=0:ELL14&latency=0")
    assert a is b
    assert registry.endpoint("sim://elliptec?devices=0:ELL9") is not a
    assert a.url == "sim://elliptec?devices=0:ELL14&speed_scale=2"


def test_named_instance_and_conflicting_options() -> None:
    a = registry.endpoint("sim://elliptec?name=bench&devices=0:ELL9")
    assert registry.endpoint("sim://elliptec?name=bench") is a
    with pytest.raises(ValueError, match="already exists"):
        registry.endpoint("sim://elliptec?name=bench&devices=0:ELL14")


def test_every_open_of_a_url_reaches_the_same_device() -> None:
    with open_url(FAST_BUS) as first:
        first.write(b"0ma00008C00")
        assert first.readline() == b"0PO00008C00\r\n"
    with open_url(FAST_BUS) as second, open_url(FAST_BUS) as third:
        second.write(b"0gp")
        assert second.readline() == b"0PO00008C00\r\n"
        third.write(b"1gp")
        assert third.readline() == b"1PO00000000\r\n"
    bus = registry.endpoint(FAST_BUS).device
    assert isinstance(bus, ElliptecBus) and bus.unit("0").position == 0x8C00


def test_reset_gives_fresh_devices_and_kills_old_handles() -> None:
    port = open_url()
    port.write(b"0sv32")
    assert port.readline() == b"0GS00\r\n"
    registry.reset()
    with pytest.raises(serial.SerialException):
        port.write(b"0gv")
    with open_url() as fresh:
        fresh.write(b"0gv")
        assert fresh.readline() == b"0GV64\r\n"


def test_bad_url_fails_to_open_with_the_reason() -> None:
    with pytest.raises(serial.SerialException, match="unknown simulated device 'nosuch'"):
        open_url("sim://nosuch")
    with pytest.raises(serial.SerialException, match="ELL99"):
        open_url("sim://elliptec?devices=0:ELL99")


# -- sim:// handler ---------------------------------------------------------------------------
def test_round_trip_and_read_variants() -> None:
    with open_url(timeout=0.05) as port:
        port.write(b"0in")
        assert port.readline() == IN_0
        port.write(b"0in1gp")
        assert port.read_until(b"\r\n") == IN_0
        assert port.read_until(b"\r\n", size=3) == b"1PO"
        assert port.in_waiting == 10
        assert port.read(100) == b"00000000\r\n"  # at the timeout: fewer than asked
        assert port.read(0) == b""


def test_timeout_zero_and_finite_timeout() -> None:
    with open_url(timeout=0) as port:
        assert port.read(10) == b""
        port.write(b"0gp")
        assert port.read(100) == b"0PO00000000\r\n"
        port.timeout = 0.05
        start = time.monotonic()
        assert port.readline() == b""
        assert 0.04 <= time.monotonic() - start < 0.5


def test_deferred_reply_wakes_a_blocked_reader_without_timeout() -> None:
    with open_url(FAST_BUS, timeout=None) as port:
        start = time.monotonic()
        port.write(b"0ma00008C00")
        assert port.read(13) == b"0PO00008C00\r\n"
        elapsed = time.monotonic() - start
        assert 0.045 <= elapsed < 1.0  # ~52 ms of simulated motion


def test_reset_input_buffer_drops_received_bytes() -> None:
    with open_url() as port:
        port.write(b"0in")
        port.reset_input_buffer()
        assert port.in_waiting == 0
        port.write(b"0gp")
        assert port.readline() == b"0PO00000000\r\n"


def test_manual_clock_behind_the_url_handler() -> None:
    clock = ManualClock()
    ep = registry.endpoint(BUS, clock=clock)
    with pytest.raises(ValueError, match="another clock"):
        registry.endpoint(BUS, clock=ManualClock())
    with open_url(BUS, timeout=0) as port:
        port.write(b"0ma00008C00")
        assert port.read(20) == b""
        clock.advance(1.0)
        ep.poke()
        assert port.read(20) == b"0PO00008C00\r\n"


def test_disconnect_fails_every_operation_like_a_real_port_and_reopen_resumes() -> None:
    ep = registry.endpoint(BUS)
    port = open_url()
    port.write(b"0sv32")
    assert port.readline() == b"0GS00\r\n"
    ep.faults.disconnect()
    raises_like_a_vanished_port(port)
    with pytest.raises(serial.SerialException) as exc_info:
        open_url()
    assert exc_info.value.errno == errno.ENOENT
    ep.faults.reconnect()
    raises_like_a_vanished_port(port)  # an old handle stays dead, as with real hardware
    port.close()
    port.open()
    port.write(b"0gv")
    assert port.readline() == b"0GV32\r\n"  # the device kept its state
    port.close()


def waiting(thread: threading.Thread) -> bool:
    """Whether ``thread`` is inside a condition's wait (a reader blocked for data)."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "wait":
            return True
        frame = frame.f_back
    return False


def test_disconnect_wakes_a_blocked_reader() -> None:
    ep = registry.endpoint(BUS)
    port = open_url(timeout=5)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            port.read(1)
        except serial.SerialException as exc:
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    wait_until(lambda: waiting(thread), "the reader blocked in its read, not just on its way",
               timeout=5, every=0.001)
    start = time.monotonic()
    ep.faults.disconnect()
    thread.join(2)
    assert not thread.is_alive()
    assert len(errors) == 1 and time.monotonic() - start < 1.0
    port.close()


def test_cancel_read_returns_early() -> None:
    port = open_url(timeout=5)
    timer = threading.Timer(0.05, port.cancel_read)
    timer.start()
    start = time.monotonic()
    assert port.read(1) == b""
    assert time.monotonic() - start < 1.0
    timer.join()
    port.close()


def test_round_trip_overhead_is_microseconds() -> None:
    with open_url() as port:
        n = 2000
        start = time.perf_counter()
        for _ in range(n):
            port.write(b"0gp")
            port.readline()
        per_trip = (time.perf_counter() - start) / n
    assert per_trip < 500e-6, f"{per_trip * 1e6:.0f} us per round trip"


# -- faults through the URL ---------------------------------------------------------------------
def test_garbage_arrives_before_the_next_reply() -> None:
    with open_url() as port:
        port.endpoint.faults.inject_garbage(b"\x00\xfe")
        port.write(b"0gp")
        assert port.readline() == b"\x00\xfe0PO00000000\r\n"
        port.write(b"0gp")
        assert port.readline() == b"0PO00000000\r\n"


def test_truncated_reply_loses_its_end_and_the_next_is_whole() -> None:
    with open_url(timeout=0.1) as port:
        port.endpoint.faults.truncate_next(5)
        port.write(b"0in1gp")
        assert port.read_until(b"\r\n") == b"0IN0E1PO00000000\r\n"
        port.write(b"0in")
        assert port.readline() == IN_0


def test_latency_from_url_delays_each_reply() -> None:
    with open_url(BUS + "&latency=0.05") as port:
        assert port.endpoint.faults.latency == 0.05
        start = time.monotonic()
        port.write(b"0gp")
        assert port.read(1) == b"0"
        assert 0.045 <= time.monotonic() - start < 0.5


def test_baud_emulation_makes_bytes_trickle_at_wire_speed() -> None:
    with open_url(BUS + "&baud=1") as port:
        start = time.monotonic()
        port.write(b"0in")
        first = port.read(1)
        t_first = time.monotonic() - start
        rest = port.readline()
        total = time.monotonic() - start
    assert first + rest == IN_0
    # 3 characters out, 35 back, 10 bits each at 9600 baud: ~3 ms to the first byte, ~40 ms total
    assert 0.003 <= t_first < 0.03
    assert 0.038 <= total < 0.5


# -- pseudo-terminal ------------------------------------------------------------------------
def test_pty_round_trip_and_disconnect(tmp_path: Path) -> None:
    link = tmp_path / "ttyELL"
    with PtyServer(registry.endpoint(BUS), link=link) as pty:
        assert pty.path.startswith("/dev/pts/") and os.readlink(link) == pty.path
        port = serial.Serial(str(link), timeout=1)
        port.write(b"0in")
        assert port.readline() == IN_0
        port.write(b"0sv32")
        assert port.readline() == b"0GS00\r\n"
        pty.disconnect()
        raises_like_a_vanished_port(port)
        port.close()
        with pytest.raises(serial.SerialException) as exc_info:
            port.open()
        assert exc_info.value.errno == errno.ENOENT
        pty.reconnect()
        assert os.readlink(link) == pty.path
        port.open()
        port.write(b"0gv")
        assert port.readline() == b"0GV32\r\n"
        port.close()


def test_pty_link_replaces_an_old_symlink_and_removes_only_its_own(tmp_path: Path) -> None:
    """The link a killed server left is replaced; at the end only a link to this server's
    pty is removed, never what someone put there meanwhile."""
    link = tmp_path / "ttyELL"
    link.symlink_to("/dev/pts/nosuch")
    with PtyServer(registry.endpoint(BUS), link=link) as pty:
        assert os.readlink(link) == pty.path
    assert not link.is_symlink() and not link.exists()
    with PtyServer(registry.endpoint(BUS), link=link):
        link.unlink()
        link.write_text("my notes\n")
    assert link.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ttyELL"]


def test_pty_obeys_the_endpoint_faults_and_serves_deferred_replies() -> None:
    ep = registry.endpoint(FAST_BUS)
    with PtyServer(ep) as pty, serial.Serial(pty.path, timeout=1) as port:
        ep.faults.inject_garbage(b"##")
        port.write(b"0ma00008C00")
        start = time.monotonic()
        assert port.readline() == b"##0PO00008C00\r\n"
        assert 0.045 <= time.monotonic() - start < 1.0
        ep.faults.latency = 0.05
        start = time.monotonic()
        port.write(b"0gp")
        assert port.readline() == b"0PO00008C00\r\n"
        assert time.monotonic() - start >= 0.045


def test_pty_of_a_bare_device_and_a_blocked_reader_woken_by_disconnect() -> None:
    with PtyServer(ElliptecBus({"devices": "3:ELL6"})) as pty:
        port = serial.Serial(pty.path, timeout=5)
        port.write(b"3gp")
        assert port.readline() == b"3PO00000000\r\n"
        timer = threading.Timer(0.05, pty.disconnect)
        timer.start()
        start = time.monotonic()
        with pytest.raises(serial.SerialException):
            port.read(1)
        assert time.monotonic() - start < 1.0
        timer.join()
        port.close()


# -- TCP --------------------------------------------------------------------------------------
def test_tcp_round_trip_kick_old_user_and_disconnect() -> None:
    with TcpServer(registry.endpoint(BUS)) as srv:
        assert srv.url == f"socket://127.0.0.1:{srv.port}"
        old = serial.serial_for_url(srv.url, timeout=1)
        old.write(b"0in")
        assert old.readline() == IN_0
        new = serial.serial_for_url(srv.url, timeout=1)
        new.write(b"0gp")
        assert new.readline() == b"0PO00000000\r\n"
        with pytest.raises(serial.SerialException, match="socket disconnected"):
            old.read(1)  # kicked, like ser2net's kickolduser
        old.close()

        srv.disconnect()
        with pytest.raises(serial.SerialException, match="socket disconnected"):
            new.read(1)
        assert write_fails_soon(new)
        new.close()
        refused = serial.serial_for_url(srv.url, timeout=1)  # accepted, then closed at once
        with pytest.raises(serial.SerialException, match="socket disconnected"):
            refused.read(1)
        refused.close()

        srv.reconnect()
        with serial.serial_for_url(srv.url, timeout=1) as again:
            again.write(b"1in")
            assert again.readline().startswith(b"1IN09")


def write_fails_soon(port: serial.SerialBase) -> bool:
    """A TCP write to a closed peer succeeds until the reset comes back.

    (pyserial's socket:// ``close()`` sleeps 0.3 s by itself, which dominates this test.)
    """
    for _ in range(20):
        try:
            port.write(b"0gp")
        except serial.SerialException:
            return True
        time.sleep(0.01)
    return False


def test_tcp_latency_and_deferred_replies() -> None:
    ep = registry.endpoint(FAST_BUS + "&latency=0.02")
    with TcpServer(ep) as srv, serial.serial_for_url(srv.url, timeout=1) as port:
        start = time.monotonic()
        port.write(b"0ma00008C00")
        assert port.readline() == b"0PO00008C00\r\n"
        assert 0.065 <= time.monotonic() - start < 1.0


def test_an_idle_tcp_server_leaves_replies_to_a_pty_on_the_same_line() -> None:
    ep = registry.endpoint(BUS + "&baud=1")
    with PtyServer(ep) as pty, TcpServer(ep), serial.Serial(pty.path, timeout=1) as port:
        for _ in range(3):
            port.write(b"0gp")
            assert port.readline() == b"0PO00000000\r\n"


# -- command line and plugin ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("transport", "sig"), [(["--tcp", "0"], signal.SIGTERM), (["--pty"], signal.SIGINT)]
)
def test_serve_command_prints_an_address_and_stops_on_signal(
    transport: list[str], sig: signal.Signals
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "daqhub_sims", "serve", "elliptec", "--devices", "0:ELL14",
         *transport], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address, proc.stderr.read() if proc.stderr else ""
        with serial.serial_for_url(address, timeout=2) as port:
            port.write(b"0in")
            assert port.readline() == IN_0
        proc.send_signal(sig)
        assert proc.wait(timeout=5) == 0
    finally:
        kill_if_running(proc)


def kill_if_running(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_serve_rejects_an_unknown_model() -> None:
    from daqhub_sims.cli import serve

    assert serve(["nosuch", "--tcp", "0"]) == 2


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_serve_refuses_a_port_out_of_range_as_a_usage_error(
        port: str, capsys: pytest.CaptureFixture[str]) -> None:
    """bind() raised OverflowError once serving had begun: a plugin crash, exit 1."""
    from daqhub_sims.cli import serve
    from daqhub_sims.scpi_tcp import main as scpi_tcp_main

    for run, flag in ((lambda: serve(["esp300", "--tcp", port])), "--tcp"), (
            (lambda: scpi_tcp_main(["--port", port])), "--port"):
        with pytest.raises(SystemExit) as exit_info:
            run()
        assert exit_info.value.code == 2
        assert f"argument {flag}: " in capsys.readouterr().err


@pytest.mark.parametrize("args", [
    ["esp300", "-o", "speed_sacle=10"], ["newport1830c", "-o", "powr=1e-3"],
    ["esp300", "--devices", "0:ELL14"], ["elliptec", "-o", "speed_sacle=10"]])
def test_serve_refuses_an_option_its_model_does_not_take(
        args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """esp300 and newport1830c served their defaults for a typo (elliptec refused it)."""
    from daqhub_sims.cli import serve

    done = threading.Event()
    done.set()  # a server that starts stops at once
    assert serve([*args, "--tcp", "0"], done) == 2
    err = capsys.readouterr().err
    assert re.search(r"takes no option '(speed_sacle|powr|devices)'; its options: ", err), err


def test_serve_refuses_an_option_given_twice(capsys: pytest.CaptureFixture[str]) -> None:
    """The last one won without a word."""
    from daqhub_sims.cli import serve

    done = threading.Event()
    done.set()
    for twice in (["-o", "speed_scale=2", "-o", "speed_scale=3"],
                  ["--devices", "0:ELL14", "-o", "devices=0:ELL9"]):
        with pytest.raises(SystemExit) as exit_info:
            serve(["elliptec", "--tcp", "0", *twice], done)
        assert exit_info.value.code == 2
        assert "given twice" in capsys.readouterr().err


@pytest.mark.parametrize("existing", ["file", "directory"])
def test_serve_refuses_a_link_over_a_file_and_leaves_nothing_behind(
        existing: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--link over a file replaced it and removed it at exit; over a directory it failed but
    left LINK.tmp behind."""
    from daqhub_sims.cli import serve

    link = tmp_path / "notes.txt"
    if existing == "file":
        link.write_text("my notes\n")
    else:
        link.mkdir()
    done = threading.Event()
    done.set()
    assert serve(["esp300", "--pty", "--link", str(link)], done) == 2
    assert f"{link} exists and is not a symlink" in capsys.readouterr().err
    assert link.read_text() == "my notes\n" if existing == "file" else link.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_serve_function_stops_on_event() -> None:
    from daqhub_sims.cli import serve

    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(serve(["elliptec", "--tcp", "0"], stop)))
    thread.start()
    stop.set()
    thread.join(5)
    assert result == [0]


def test_plugin_hook_gives_the_url_handler_package() -> None:
    hookspecs = pytest.importorskip("daqhub.hookspecs")
    import pluggy

    from daqhub_sims import plugin

    manager = pluggy.PluginManager("daqhub")
    manager.add_hookspecs(hookspecs)
    manager.register(plugin)
    assert manager.hook.daqhub_serial_url_packages() == [["daqhub_sims.urlhandler"]]


def test_bytes_one_session_sees_arrive_wake_the_other_sessions_on_the_line() -> None:
    """A transport that only watches the line (an idle TCP server) must not sit on a reply.

    Its poll loop moves bytes that have come due off the simulated wire; the transport that
    takes them (a pty server) is told at once instead of at its next one-second timeout.
    """
    ep = registry.endpoint(BUS + "&baud=1")
    told = threading.Event()

    def on_change(line_changed: bool) -> None:
        told.set()

    ep.watch(on_change)
    taker = ep.open_session(on_change)
    watcher = ep.open_session()
    taker.write(b"0gp")
    deadline = time.monotonic() + 5
    while True:  # the watcher's poll loop, as a bridge runs it
        event = watcher.next_event_in()
        if told.is_set():
            break
        assert event is not None, "the reply left the wire without anyone being told"
        assert time.monotonic() < deadline
        time.sleep(min(event, 0.05))  # this is the poll loop under test, not a wait for it
    assert taker.read_until(b"\r\n", None, 1.0) == b"0PO00000000\r\n"
