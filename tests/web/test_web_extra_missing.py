"""The web extra is aiohttp and plotly: without either, ``run --web``, ``[daqhub.web]``,
``validate`` and ``daqhub view`` say so in one line, exit 2, before anything starts. Many
environments have aiohttp (other packages pull it in) and not plotly: the dashboard was
announced, its plotly.js answered 500 with a traceback in the run's output, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

POWER = '[[v2.instruments]]\nid = "power"\ntype = "newport.1830c"\nport = "sim://newport1830c"\n'


def daqhub(*args: str, cwd: Path, block: str) -> subprocess.CompletedProcess[str]:
    """``daqhub ARGS`` in a fresh process, as on a PC without the module ``block``."""
    code = (f"import sys; sys.modules[{block!r}] = None; from daqhub.cli import main; "
            f"sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=dict(os.environ))


@pytest.mark.parametrize("missing", ["plotly", "aiohttp"])
@pytest.mark.parametrize("argv", [
    ["run", "lab.toml", "--web", "127.0.0.1:0", "--no-storage", "--duration", "1", "--plain"],
    ["run", "web_lab.toml", "--no-storage", "--duration", "1", "--plain"],
    ["view", "grpc://127.0.0.1:1", "--web", "127.0.0.1:0"],
    ["validate", "web_lab.toml"]], ids=["run --web", "run [daqhub.web]", "view", "validate"])
def test_the_web_extra_missing_is_one_line_before_anything_starts(
        tmp_path: Path, argv: list[str], missing: str) -> None:
    (tmp_path / "lab.toml").write_text(POWER)
    (tmp_path / "web_lab.toml").write_text(f'[daqhub.web]\nlisten = "127.0.0.1:0"\n\n{POWER}')
    r = daqhub(*argv, cwd=tmp_path, block=missing)
    assert r.returncode == 2, r.stdout + r.stderr
    said = (f"the dashboard needs the web extra ({missing} is missing): "
            "pip install 'daqhub[web]'")
    where = {"run": "daqhub: ", "view": "daqhub view: ",
             "validate": "  web_lab.toml:1: "}[argv[0]]
    assert f"{where}{said}\n" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "starting" not in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("argv", [
    ["run", "web_lab.toml", "--no-storage", "--duration", "1", "--plain"],
    ["validate", "web_lab.toml"]], ids=["run", "validate"])
def test_a_web_extra_installed_but_broken_is_said_by_validate_as_by_run(
        tmp_path: Path, argv: list[str]) -> None:
    """A plotly that is installed (``find_spec`` finds it) but whose own dependency is missing:
    ``validate`` called the lab valid, and ``run`` refused it."""
    broken = tmp_path / "site" / "plotly"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(
        "raise ImportError(\"No module named 'narwhals'\", name='narwhals')\n")
    (tmp_path / "web_lab.toml").write_text(f'[daqhub.web]\nlisten = "127.0.0.1:0"\n\n{POWER}')
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(broken.parent),
                                                      env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-m", "daqhub", *argv], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    said = ("the dashboard needs the web extra (plotly cannot be imported: No module named "
            "'narwhals'): pip install 'daqhub[web]'")
    where = {"run": "daqhub: ", "validate": "  web_lab.toml:1: "}[argv[0]]
    assert f"{where}{said}\n" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "starting" not in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("web", [False, True], ids=["lab", "web lab"])
def test_validate_imports_the_web_extra_for_a_web_lab_only_and_never_the_runtime(
        tmp_path: Path, web: bool) -> None:
    """``validate`` imported the runtime (``daqhub.runtime.dual``, through ``web.runweb``) for
    every lab: a third of a second and more. The web extra is imported (as ``run`` imports
    it: being installed is not being importable) for a lab with ``[daqhub.web]`` only."""
    (tmp_path / "lab.toml").write_text(
        f'[daqhub.web]\nlisten = "127.0.0.1:0"\n\n{POWER}' if web else POWER)
    heavy = ["aiohttp", "plotly", "daqhub.web.server", "daqhub.web.runweb",
             "daqhub.runtime.dual"]
    code = ("import sys; from daqhub.cli import main; code = main(['validate', 'lab.toml']); "
            f"print([m for m in {heavy!r} if m in sys.modules]); sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == str(["aiohttp", "plotly"] if web else []), r.stdout
