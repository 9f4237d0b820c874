"""A storage backend's ``open()`` that exits, hangs or is interrupted, and a writer whose
``flush_interval`` is no number of seconds: each is named with the backend, its distribution
and the session directory, and the session opens nothing and leaves nothing behind."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until
from storage_testdata import LAB_CONFIG

import daqhub.host as host_module
import daqhub.storage as storage
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.specs import StorageBackend, StorageTarget
from daqhub.storage import FlavorStorage, StorageError, StorageSession

SPEC = ChannelSpec("x", "scalar", "W")
LABEL = "v2 storage backend odd (odd-store 1.2)"


def with_backend(host: PluginHost, open_: Callable[[StorageTarget], Any]) -> PluginHost:
    host.register(types.SimpleNamespace(daqhub_storage_backends=hookimpl(
        lambda: [StorageBackend("odd", open_, "a backend with a bug")])),
        "odd:store", "odd-store", "1.2")
    return host


def open_session(host: PluginHost, root: Path) -> StorageSession:
    return StorageSession.open(host, root, {"v4": FlavorStorage("hdf5", {"m": [SPEC]}),
                                            "v2": FlavorStorage("odd", {"n": [SPEC]})},
                               lab_config=LAB_CONFIG)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


class Writer:
    """A writer that says when it is closed."""

    def __init__(self, flush_interval: Any = 1.0) -> None:
        self.flush_interval = flush_interval
        self.closed = threading.Event()

    def write(self, batch: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> list[Path]:
        self.closed.set()
        return []


def raising(exc: BaseException) -> Callable[[StorageTarget], Any]:
    def open_(target: StorageTarget) -> Any:
        raise exc
    return open_


@pytest.mark.timeout(30)
@pytest.mark.parametrize("exc,says", [
    (SystemExit(0), "SystemExit: 0"),
    (KeyboardInterrupt("from the vendor SDK"), "KeyboardInterrupt: from the vendor SDK"),
    (GeneratorExit(), "GeneratorExit: ")])
def test_an_open_that_exits_is_a_failure_named_with_its_backend(
        tmp_path: Path, storage_host: PluginHost, exc: BaseException, says: str) -> None:
    """sys.exit(0) in open() went through the start: ``daqhub run`` exited 0 having run
    nothing and said nothing."""
    host = with_backend(storage_host, raising(exc))
    with pytest.raises(StorageError) as caught:
        try:
            open_session(host, tmp_path)
        except KeyboardInterrupt as went_through:  # would end the whole test session
            pytest.fail(f"the backend's {went_through!r} went through")
    assert str(caught.value).startswith(f"{LABEL} could not open {tmp_path / 'v2'}/")
    assert str(caught.value).endswith(f": {says}")
    assert not files_under(tmp_path)  # the other flavor's file too


@pytest.mark.timeout(30)
@pytest.mark.parametrize("interval", [None, "1", 0, -1.0, math.nan, math.inf, True])
def test_a_flush_interval_that_is_no_number_of_seconds_is_named_and_its_writer_closed(
        tmp_path: Path, storage_host: PluginHost, interval: Any) -> None:
    """None stopped the lab with "float() argument must be a string or a real number, not
    'NoneType'", naming no backend; "1", 0, NaN and True were taken; the writer open()
    returned was never closed."""
    writer = Writer(interval)
    host = with_backend(storage_host, lambda target: writer)
    with pytest.raises(StorageError) as caught:
        open_session(host, tmp_path)
    assert str(caught.value) == (
        f"{LABEL}: its writer's flush_interval is {type(interval).__name__} {interval!r}; it "
        "must be a number of seconds above 0 (finite), or absent for 1 s")
    assert writer.closed.is_set()
    assert not files_under(tmp_path)


@pytest.fixture
def blocking_open() -> Iterator[tuple[Callable[[StorageTarget], Any], threading.Event,
                                      threading.Event, Writer]]:
    """An open() that waits for ``release`` (a share that does not answer) after setting
    ``entered``, then returns ``writer``."""
    entered, release = threading.Event(), threading.Event()
    writer = Writer()

    def open_(target: StorageTarget) -> Any:
        entered.set()
        release.wait(60)
        return writer
    yield open_, entered, release, writer
    release.set()


@pytest.mark.timeout(30)
def test_an_open_that_does_not_return_is_given_up_on_and_its_late_writer_closed(
        tmp_path: Path, storage_host: PluginHost, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], blocking_open: Any) -> None:
    """It hung the start for ever, with nothing said."""
    open_, entered, release, writer = blocking_open
    monkeypatch.setattr(storage, "OPEN_TIMEOUT", 0.5)
    host = with_backend(storage_host, open_)
    with pytest.raises(StorageError) as caught:
        open_session(host, tmp_path)
    assert str(caught.value).startswith(f"{LABEL} did not open {tmp_path / 'v2'}/")
    assert str(caught.value).endswith(
        " within 0.5 s; its open() goes on in a thread that cannot be stopped, until the "
        "process ends (a writer it returns then is closed at once)")
    assert not files_under(tmp_path)
    release.set()
    assert writer.closed.wait(10), "the writer open() returned late was not closed"


@pytest.mark.timeout(30)
def test_a_slow_open_is_named_on_stderr_while_it_is_waited_for(
        tmp_path: Path, storage_host: PluginHost, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str], blocking_open: Any) -> None:
    """A network share may take a few seconds; the user sees what the start waits for."""
    open_, entered, release, writer = blocking_open
    monkeypatch.setattr(host_module, "SLOW_CALL_S", 0.2)
    host = with_backend(storage_host, open_)
    opened = threading.Thread(target=lambda: open_session(host, tmp_path).close())
    opened.start()
    told = []

    def notice() -> bool:
        told.append(capfd.readouterr().err)
        return "has not returned" in "".join(told)

    wait_until(notice, "the notice of the slow open()", timeout=10)
    release.set()
    opened.join(10)
    assert not opened.is_alive()
    assert (f"daqhub: still waiting for open() of {LABEL}: it has not returned in "
            in "".join(told))
    assert " s; daqhub waits 30 s at most\n" in "".join(told)  # no Ctrl-C: not the main thread
    assert writer.closed.is_set()  # the session opened and closed as usual


class Interrupted(KeyboardInterrupt):
    """What a Ctrl-C handler raises in the main thread (pytest's own ends the session)."""


@contextmanager
def interrupted_once(entered: threading.Event,
                     as_it_comes: Callable[[], object] = lambda: None) -> Iterator[None]:
    """The main thread gets an :class:`Interrupted` (as a Ctrl-C's KeyboardInterrupt) once
    ``entered`` is set, ``as_it_comes()`` being called first."""
    def interrupt(signum: int, frame: Any) -> None:
        as_it_comes()
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, interrupt)
    sender = threading.Thread(target=lambda: entered.wait(10)
                              and signal.pthread_kill(threading.main_thread().ident or 0,
                                                      signal.SIGUSR1))
    try:
        sender.start()
        yield
    finally:
        sender.join(10)
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.timeout(30)
def test_a_ctrl_c_while_an_open_does_not_return_ends_the_wait_and_names_the_backend(
        tmp_path: Path, storage_host: PluginHost, capsys: pytest.CaptureFixture[str],
        blocking_open: Any) -> None:
    open_, entered, release, writer = blocking_open
    host = with_backend(storage_host, open_)

    with interrupted_once(entered), pytest.raises(Interrupted):
        open_session(host, tmp_path)
    err = capsys.readouterr().err
    assert f"daqhub: interrupted in open() of {LABEL} after " in err
    assert " s; its open() goes on in a thread that cannot be stopped, until the process " \
           "ends\n" in err
    assert not files_under(tmp_path)
    release.set()
    assert writer.closed.wait(10), "the writer open() returned late was not closed"


@pytest.mark.timeout(30)
def test_a_ctrl_c_during_a_quick_open_waits_for_it_and_closes_its_writer_first(
        tmp_path: Path, storage_host: PluginHost, blocking_open: Any) -> None:
    """Interrupted in an h5py open that was about to return, the start left the open to its
    daemon thread: the process's exit then waited for ever on h5py's lock that thread held
    (1 exit in ~25 of ``daqhub run`` hung). The open under way is waited for (a short
    grace) and its writer closed before the interrupt goes on."""
    open_, entered, release, writer = blocking_open
    host = with_backend(storage_host, open_)

    # the open returns soon after the interrupt
    with interrupted_once(entered, lambda: threading.Timer(0.2, release.set).start()):
        with pytest.raises(Interrupted):
            open_session(host, tmp_path)
        assert writer.closed.is_set()  # closed here, before the interrupt went on
        assert not storage.opens_running()


@pytest.mark.timeout(60)
def test_a_hung_open_does_not_keep_the_process_from_exiting(tmp_path: Path) -> None:
    """The thread a hung open() keeps is a daemon: the interpreter does not wait for it."""
    script = textwrap.dedent(f"""
        import threading, types
        import daqhub.plugins.hdf5 as hdf5_plugin
        import daqhub.storage as storage
        from daqhub.hookspecs import hookimpl
        from daqhub.host import PluginHost
        from daqhub.measurement import ChannelSpec
        from daqhub.specs import StorageBackend
        from daqhub.storage import FlavorStorage, StorageError, StorageSession

        storage.OPEN_TIMEOUT = 0.5
        host = PluginHost()
        host.register(types.SimpleNamespace(daqhub_storage_backends=hookimpl(lambda: [
            StorageBackend("hung", lambda target: threading.Event().wait(), "hangs")])),
            "hung:store", "hung-store", "1")
        try:
            StorageSession.open(host, {str(tmp_path)!r}, {{"v2": FlavorStorage(
                "hung", {{"m": [ChannelSpec("x", "scalar", "W")]}})}})
        except StorageError as exc:
            print(exc)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert "v2 storage backend hung (hung-store 1) did not open " in done.stdout


class ExitingWriter(Writer):
    """A writer whose first flush calls ``sys.exit()`` and whose close() does too."""

    def __init__(self) -> None:
        super().__init__(flush_interval=0.05)
        self.flushes = 0
        self.flushed_again = threading.Event()

    def flush(self) -> None:
        self.flushes += 1
        if self.flushes == 1:
            raise SystemExit(0)
        self.flushed_again.set()

    def close(self) -> list[Path]:
        super().close()
        raise SystemExit(3)


@pytest.mark.timeout(30)
def test_a_writer_that_exits_in_flush_or_close_is_a_failure_and_the_flusher_goes_on(
        tmp_path: Path, storage_host: PluginHost) -> None:
    """A ``sys.exit()`` in a writer's flush() ended the background flusher (no flush of any
    flavor for the rest of the run, nothing said); one in close() went through the session's
    close, naming no backend."""
    writer = ExitingWriter()
    session = open_session(with_backend(storage_host, lambda target: writer), tmp_path)
    try:
        assert writer.flushed_again.wait(10), "the background flusher stopped"
    finally:
        with pytest.raises(StorageError) as caught:
            session.close(timeout=5)
    assert f"{LABEL}: closing failed: SystemExit: 3" in str(caught.value), str(caught.value)
    assert writer.closed.is_set()
