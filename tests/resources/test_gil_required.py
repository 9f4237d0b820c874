"""The gates rest on the GIL (daqhub.resources.gil): a build without it is refused at import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from daqhub.resources import gil

pytestmark = pytest.mark.timeout(60)

IMPORT_WITH_GIL = ("import sys; sys._is_gil_enabled = lambda: {enabled}; "
                   "import daqhub.resources; print('imported')")


def _import_with_gil(enabled: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", IMPORT_WITH_GIL.format(enabled=enabled)],
                          capture_output=True, text=True, timeout=50)


def test_importing_the_resources_without_the_gil_fails_loudly() -> None:
    done = _import_with_gil(False)
    assert done.returncode != 0
    assert "ImportError: daqhub.resources relies on the GIL" in done.stderr
    assert "PYTHON_GIL=1" in done.stderr
    assert "imported" not in done.stdout


def test_importing_the_resources_with_the_gil_works() -> None:
    done = _import_with_gil(True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_require_gil_follows_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert not gil.gil_enabled()
    with pytest.raises(ImportError, match="GIL disabled; run Python with PYTHON_GIL=1"):
        gil.require_gil()
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True)
    assert gil.gil_enabled()
    gil.require_gil()
    monkeypatch.delattr(sys, "_is_gil_enabled")  # interpreters before 3.13 have no probe
    assert gil.gil_enabled()
