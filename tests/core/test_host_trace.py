"""A plugin host you can trace and trust: traced calls, registration order, no wrappers,
notifications that never trip strict mode, and import times a user can see."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest
from test_plugin_host import GROUP, make_dist

from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost

ALERTS = textwrap.dedent("""
    from daqhub.hookspecs import hookimpl

    @hookimpl
    def daqhub_resource_event(resource, event, detail):
        pass
    """)


def test_trace_prints_loading_listing_and_a_notification(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    make_dist(tmp_path, "dqtrace-alerts", "dqtrace_alerts", ALERTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DAQHUB_TRACE_HOOKS", "1")
    host = PluginHost()
    host.load_entry_points(GROUP)
    loading = capsys.readouterr().err
    assert "load dqtrace-alerts:dqtrace_alerts = dqtrace_alerts (dqtrace-alerts 1.2.3): " \
           "import" in loading
    assert "register dqtrace-alerts:dqtrace_alerts (dqtrace-alerts 1.2.3): " \
           "daqhub_resource_event" in loading

    host.register(types.SimpleNamespace(daqhub_converters=hookimpl(lambda: [])), "conv",
                  "dqtrace-conv", "0.1")
    host.describe()
    listing = capsys.readouterr().err
    assert "call daqhub_converters() -> conv: " in listing and "returned []" in listing

    host.notify("daqhub_resource_event", resource="sim://a", event="disconnected", detail="EIO")
    told = capsys.readouterr().err
    assert ("call daqhub_resource_event(resource='sim://a', event='disconnected', "
            "detail='EIO') -> dqtrace-alerts:dqtrace_alerts: ") in told
    assert " ms, returned None" in told
    sys.modules.pop("dqtrace_alerts", None)


def test_no_trace_without_the_variable(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DAQHUB_TRACE_HOOKS", raising=False)
    host = PluginHost()
    host.register(types.SimpleNamespace(daqhub_converters=hookimpl(lambda: [])), "conv",
                  "dqtrace-conv", "0.1")
    host.converters()
    assert capsys.readouterr().err == ""


def test_implementations_are_called_in_registration_order() -> None:
    calls: list[str] = []
    host = PluginHost()
    for name in ("first", "second", "third"):
        host.register(types.SimpleNamespace(daqhub_resource_event=hookimpl(
            lambda resource, event, detail, n=name: calls.append(n))), name, f"d-{name}", "1")
    host.notify("daqhub_resource_event", resource="r", event="disconnected", detail="")
    assert calls == ["first", "second", "third"]


def test_a_wrapper_implementation_is_refused_with_a_reason() -> None:
    @hookimpl(wrapper=True)
    def daqhub_converters():
        return (yield)

    host = PluginHost()
    assert not host.register(types.SimpleNamespace(daqhub_converters=daqhub_converters),
                             "wrap", "dq-wrap", "1")
    assert "as a wrapper, which daqhub does not support" in host.problems[0].error
    assert host.converters() == []


def test_notifications_from_many_threads_never_trip_a_strict_step() -> None:
    """A notification that raises is reported while another thread collects a hook in
    strict mode: the collecting step sees only its own problems (none), the host stays
    strict, and every notification's problem is reported."""
    host = PluginHost(strict=True)
    host.register(types.SimpleNamespace(daqhub_instrument_event=hookimpl(
        lambda instrument_id: 1 / 0)), "alerts", "dq-alerts", "1")
    slow_started = threading.Event()
    release = threading.Event()

    def slow_converters() -> list[object]:
        slow_started.set()
        assert release.wait(10)
        return []

    host.register(types.SimpleNamespace(daqhub_converters=hookimpl(slow_converters)),
                  "conv", "dq-conv", "1")
    errors: list[BaseException] = []

    def collect() -> None:
        try:
            host.converters()
        except BaseException as exc:
            errors.append(exc)

    collector = threading.Thread(target=collect)
    collector.start()
    assert slow_started.wait(10)
    notifiers = [threading.Thread(target=host.notify, args=("daqhub_instrument_event",),
                                  kwargs=dict(instrument_id=f"i{k}", event="failed",
                                              detail="")) for k in range(8)]
    for t in notifiers:
        t.start()
    for t in notifiers:
        t.join(10)
    release.set()
    collector.join(10)
    assert errors == [] and host.strict
    assert len([p for p in host.problems if "ZeroDivisionError" in p.error]) == 8


SLOW = textwrap.dedent("""
    import os, time
    from pathlib import Path
    from daqhub.hookspecs import hookimpl

    Path(os.environ["DQSLOW_MARKER"]).write_text("imported")
    time.sleep(1.2)

    @hookimpl
    def daqhub_resource_event(resource, event, detail):
        pass
    """)


@pytest.mark.timeout(120)
def test_help_does_not_import_plugins_and_plugins_shows_the_slow_one(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "dqslow-plugin", "dqslow_plugin", SLOW)
    info = site / "dqslow_plugin-1.2.3.dist-info" / "entry_points.txt"
    info.write_text("[daqhub]\ndqslow_plugin = dqslow_plugin\n")
    marker = tmp_path / "imported"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "DQSLOW_MARKER": str(marker), "COLUMNS": "200"}

    def daqhub(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daqhub", *args], capture_output=True,
                              text=True, timeout=90, env=env)

    for args in (["--help"], ["--version"], []):
        r = daqhub(*args)
        assert "usage" in r.stdout or "daqhub " in r.stdout, r.stderr
        assert not marker.exists(), f"daqhub {' '.join(args)} imported the plugins"
    r = daqhub("plugins")
    assert r.returncode == 0, r.stderr
    assert marker.exists()
    [row] = [line for line in r.stdout.splitlines() if "dqslow-plugin" in line
             and "1.2.3" in line]
    took_ms = int(row.split("1.2.3")[1].split("ms")[0].strip(" │|"))
    assert took_ms >= 1200
    assert "warning: importing dqslow-plugin takes 1." in r.stdout
