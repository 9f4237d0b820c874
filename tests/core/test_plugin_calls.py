"""Plugin code that raises a BaseException or does not return: a notification hook's
KeyboardInterrupt is the plugin's failure, not the end of its delivery thread; a hook or a
storage backend's open() that does not return is named while it is waited for, and a Ctrl-C
ends the wait saying which it ended; a plugin's sys.exit() in the start fails the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until

import daqhub.host as host_module
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.runtime.notify import Notifier

# --- in process -----------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("exc,says", [
    (KeyboardInterrupt("from the mail library"), "KeyboardInterrupt: from the mail library"),
    (GeneratorExit(), "GeneratorExit"), (SystemExit(0), "SystemExit: 0")])
def test_a_notification_hook_raising_a_base_exception_is_an_alarm_and_delivery_goes_on(
        exc: BaseException, says: str) -> None:
    """A KeyboardInterrupt ended the plugin's delivery thread: no alarm, exit 0, and every
    later notification of that plugin was dropped in silence."""
    delivered: list[str] = []

    def started(session_id: str, output_dirs: Any) -> None:
        delivered.append(session_id)
        if session_id == "first":
            raise exc

    host = PluginHost()
    host.register(types.SimpleNamespace(daqhub_session_started=hookimpl(started)),
                  "mailer", "mailer-dist", "2.0")
    alarms: list[tuple[str, str]] = []
    host.notify_listeners.append(lambda p: alarms.append(("plugin", str(p))))
    notifier = Notifier(host, lambda what, message: alarms.append((what, message)))
    notifier.start()
    try:
        notifier.notify("daqhub_session_started", session_id="first", output_dirs={})
        notifier.notify("daqhub_session_started", session_id="second", output_dirs={})
        wait_until(lambda: delivered == ["first", "second"], "both notifications delivered")
    finally:
        assert notifier.close(5) == []
    assert alarms == [("plugin", f"mailer-dist 2.0 (mailer): hook daqhub_session_started "
                                 f"raised {says}")]


@pytest.mark.timeout(30)
def test_a_ctrl_c_in_a_hook_on_the_main_thread_goes_through_and_names_the_hook(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The main thread is the one a real Ctrl-C reaches: it is not the plugin's failure."""
    def types_() -> list[Any]:
        raise KeyboardInterrupt  # where a Ctrl-C lands while the hook runs

    host = PluginHost()
    host.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(types_)),
                  "slowtypes", "slow-dist", "1.0")
    with pytest.raises(KeyboardInterrupt):
        host.instrument_types()
    assert not host.problems
    err = capsys.readouterr().err
    assert err.startswith("daqhub: interrupted in hook daqhub_instrument_types of slow-dist "
                          "1.0 (slowtypes) after ")
    assert err.count("\n") == 1


@pytest.mark.timeout(30)
def test_a_hook_that_does_not_return_is_named_and_a_notification_hook_is_left_to_its_alarm(
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    release = threading.Event()
    entered = threading.Event()

    def types_() -> list[Any]:
        release.wait(20)
        return []

    def event(instrument_id: str, event: str, detail: str) -> None:
        entered.set()
        release.wait(20)

    monkeypatch.setattr(host_module, "SLOW_CALL_S", 0.2)
    host = PluginHost()
    host.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(types_),
                                        daqhub_instrument_event=hookimpl(event)),
                  "slowpoke", "slow-dist", "1.0")
    notifying = threading.Thread(target=host.notify, args=("daqhub_instrument_event",),
                                 kwargs={"instrument_id": "a", "event": "failed", "detail": ""})
    notifying.start()
    assert entered.wait(10)
    listing = threading.Thread(target=host.instrument_types)
    listing.start()
    told: list[str] = []

    def said() -> str:
        told.append(capfd.readouterr().err)
        return "".join(told)

    try:
        wait_until(lambda: "has not returned" in said(), "the notice of the slow hook")
    finally:
        release.set()
        listing.join(10)
        notifying.join(10)
    lines = said().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("daqhub: still waiting for hook daqhub_instrument_types of "
                               "slow-dist 1.0 (slowpoke): it has not returned in ")
    assert lines[0].endswith(" s")  # not the main thread: Ctrl-C would not end it


# --- the daqhub command ---------------------------------------------------------------

PLUGIN = '''
"""A plugin that misbehaves where $DQSLOW says (where:how), touching $DQSLOW_MARK first."""
import os
import sys
import threading
from pathlib import Path

from daqhub.hookspecs import hookimpl
from daqhub.instrument import V2Instrument, now_ns
from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.specs import InstrumentType, StorageBackend

X = ChannelSpec("x", "scalar", "V")


def misbehave(where):
    spot, _, how = os.environ.get("DQSLOW", "").partition(":")
    if spot != where:
        return
    Path(os.environ["DQSLOW_MARK"]).touch()
    if how == "block":
        threading.Event().wait()
    if how == "exit":
        sys.exit(0)


class Counter(V2Instrument):
    def connect(self):
        self.n = 0

    def read(self):
        self.n += 1
        return [Measurement(self.id, "x", now_ns(), Scalar(float(self.n), "V"))]


def channels(block):
    if sys._getframe(2).f_code.co_name == "make_context":  # the run's start, not the check
        misbehave("start")
    return [X]


class Writer:
    def write(self, batch):
        pass

    def flush(self):
        pass

    def close(self):
        return []


def open_writer(target):
    misbehave("open")
    return Writer()


@hookimpl
def daqhub_instrument_types():
    misbehave("types")
    return [InstrumentType("dqslow.counter", "v2", "none", Counter, channels, "a counter")]


@hookimpl
def daqhub_storage_backends():
    return [StorageBackend("slow", open_writer, "a backend on a share that may not answer")]
'''

LAB = '[daqhub]\noutput_dir = "data"\n[v2]\nstorage = "slow"\n' \
      '[[v2.instruments]]\nid = "c"\ntype = "dqslow.counter"\npoll_hz = 10\n'


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """A lab of the plugin's instrument, stored by its backend; the plugin installed in
    ``site`` beside it, as pip would leave it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "dqslow.py").write_text(PLUGIN)
    info = site / "dqslow-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dqslow\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[daqhub]\ndqslow = dqslow\n")
    (tmp_path / "lab.toml").write_text(LAB)
    return tmp_path / "lab.toml"


class Daqhub:
    """The ``daqhub`` command with the plugin misbehaving as ``how`` says; its stderr is read
    as it comes."""

    def __init__(self, lab: Path, how: str, *args: str) -> None:
        self.mark = lab.parent / "misbehaving"
        env = {**os.environ, "PYTHONPATH": str(lab.parent / "site"), "DQSLOW": how,
               "DQSLOW_MARK": str(self.mark)}
        self.proc = subprocess.Popen([sys.executable, "-m", "daqhub", *args, str(lab)],
                                     cwd=lab.parent, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def interrupted(self, after: str = "") -> tuple[int, str, str]:
        """One SIGINT once the plugin's code has started (and stderr has a line starting
        with ``after``, if given); the exit code, stdout and stderr."""
        try:
            wait_until(self.mark.exists, "the plugin's code to start", timeout=30)
            if after:
                wait_until(lambda: any(x.startswith(after) for x in self.lines),
                           f"a line {after!r} on stderr", timeout=30)
            self.proc.send_signal(signal.SIGINT)
            return self.outcome()
        finally:
            self.proc.kill()

    def outcome(self) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait(60)
        self.reader.join(10)
        return code, out, "".join(self.lines)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_hook_that_does_not_return_is_named_and_a_ctrl_c_says_it_ended_it(
        lab: Path, command: str) -> None:
    """``daqhub validate`` (every command that loads plugins) hung with nothing said, and the
    Ctrl-C said "daqhub: interrupted"; ``daqhub run`` took the Ctrl-C and went on waiting."""
    notice = ("daqhub: still waiting for hook daqhub_instrument_types of dqslow 1.2.3 "
              "(dqslow): it has not returned in ")
    code, out, err = Daqhub(lab, "types:block", command).interrupted(after=notice)
    assert code == 130, err
    [told] = [line for line in err.splitlines() if line.startswith(notice)]
    assert told.endswith(" s (Ctrl-C stops waiting)")
    assert "daqhub: interrupted in hook daqhub_instrument_types of dqslow 1.2.3 (dqslow) " \
           "after " in err


@pytest.mark.timeout(90)
def test_a_ctrl_c_while_a_storage_backend_opens_ends_the_start_naming_it(lab: Path) -> None:
    """The first SIGINT was acknowledged ("shutting down (again to force)") and ignored while
    open() hung: `timeout -s INT`, systemd's stop or a single Ctrl-C never ended the run."""
    code, out, err = Daqhub(lab, "open:block", "run", "--plain").interrupted()
    assert code == 130, err
    assert "SIGINT: stopping before the run started\n" in err
    assert "daqhub: interrupted in open() of v2 storage backend slow (dqslow 1.2.3) after " \
           in err
    assert " s; its open() goes on in a thread that cannot be stopped, until the process " \
           "ends\n" in err
    assert list((lab.parent / "data" / "v2").iterdir()) == []  # no session left half-made


@pytest.mark.timeout(90)
@pytest.mark.parametrize("where,says", [
    ("open", "daqhub: could not start the lab: v2 storage backend slow (dqslow 1.2.3) could "
             "not open {data}/v2/"),
    ("start", "daqhub: could not start the lab: SystemExit: 0 raised at {site}/dqslow.py:")])
def test_a_plugins_sys_exit_during_the_start_fails_the_run_saying_so(
        lab: Path, where: str, says: str) -> None:
    """The run exited 0 having run nothing, its last line "daqhub: starting 1 instruments"."""
    code, out, err = Daqhub(lab, f"{where}:exit", "run", "--plain", "--duration", "30").outcome()
    assert code == 1, out + err
    assert says.format(data=lab.parent / "data", site=lab.parent / "site") in err
    assert err.rstrip().endswith(": SystemExit: 0" if where == "open" else
                                 "; plugin code must not end or interrupt daqhub")
    assert out.startswith("daqhub: starting 1 instruments")


def test_a_signal_in_the_hosts_bookkeeping_is_not_taken_for_one_in_plugin_code() -> None:
    """``daqhub run`` raises out of plugin code at the first signal of its start; raised
    inside PluginCall's own entry or exit, that left the call recorded for good, and 5 s
    later the watcher named a hook that had returned and asked for the forcing Ctrl-C."""
    import sys
    import types

    import daqhub.host
    from daqhub.cli.run import in_plugin_code
    from daqhub.host import PluginCall

    in_host = types.SimpleNamespace(f_code=types.SimpleNamespace(
        co_filename=daqhub.host.__file__))  # a frame of the host's bookkeeping
    assert not in_plugin_code(sys._getframe())  # no plugin call under way
    with PluginCall("hook daqhub_validate", "daqhub-x 1.0 (x)", notice=False):
        assert in_plugin_code(sys._getframe())
        assert not in_plugin_code(in_host)
