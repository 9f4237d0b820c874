"""A new lab reads its first run back: the README's demo, then the guide's "Reading data back".

The guide's snippet is taken from ``docs/lab-guide.md`` as written and run, in a
subprocess, against a real short demo run made with the README's command, in this
suite's venv (a fresh venv per test run would add minutes for what
``test_snippet_needs_only_what_requirements_install`` checks directly: that
``requirements.txt`` installs every module the snippet imports). The pandas part runs
only where pandas is installed; the rest must run without it.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "lab-guide.md"


def daqhub(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daqhub", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def demo_command() -> list[str]:
    """The README's demo command's daqhub part (``.venv/bin/daqhub run --duration 20``)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- demo-command -->", 1)[1].split("```", 2)[1]
    m = re.search(r"\.venv/bin/daqhub (run[^&\n]*)", block)
    assert m, block
    return m.group(1).split()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the README's demo ran (3 s instead of 20)."""
    cwd = tmp_path_factory.mktemp("lab")
    args = demo_command()
    args[args.index("--duration") + 1] = "3"
    r = daqhub(*args, cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    return cwd


def python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in ``cwd``, as a user runs a snippet; it must succeed."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r


def guide_blocks() -> list[tuple[str, str]]:
    """(marker, code) of every python block of the guide's "Reading data back" section."""
    text = GUIDE.read_text()
    section = text.split("## Reading data back", 1)[1].split("\n## ", 1)[0]
    return [(m.group(1) or "", m.group(2)) for m in re.finditer(
        r"(?:<!-- needs: (\w+) -->\n)?```python\n(.*?)```", section, re.S)]


@pytest.mark.timeout(180)
def test_guide_snippet_runs_as_written_after_the_demo(demo_dir: Path) -> None:
    blocks = guide_blocks()
    assert len(blocks) >= 2
    have_pandas = importlib.util.find_spec("pandas") is not None
    code = "\n".join(c for need, c in blocks if not need or have_pandas)
    r = python(code, demo_dir)
    assert re.search(r"^\d+ power readings in W; channels: .*dmm\.voltage.*stage\.position",
                     r.stdout, re.M), r.stdout
    assert "'power.power': 'W'" in r.stdout and "'stage.position': 'mm'" in r.stdout


def test_snippet_needs_only_what_requirements_install() -> None:
    """Every module the pandas-free blocks import comes with requirements.txt's daqhub."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower().replace("-", "_")
             for d in deps}
    core = [r for r in (ROOT / "requirements.txt").read_text().split()
            if r == "./" or r.startswith(".[")]
    assert core, "requirements.txt installs the core distribution (./ or .[extras])"
    for need, code in guide_blocks():
        if need:
            continue
        for node in ast.walk(ast.parse(code)):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for mod in mods:
                top = mod.split(".")[0]
                assert top in sys.stdlib_module_names or top == "daqhub" or top in names, top


def test_read_session_without_pandas_installed(demo_dir: Path) -> None:
    """With pandas hidden, read_session works and to_pandas says what is missing."""
    code = ("import sys, importlib.abc\n"
            "class Hide(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] == 'pandas': raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Hide())\n"
            "from pathlib import Path\nimport daqhub\n"
            "s = sorted(Path('data/v4').iterdir())[-1].name\n"
            "t = daqhub.read_session(s, merge=True)\n"
            "print(sorted(t.column_names))\n"
            "try:\n    t.to_pandas()\nexcept ImportError as e:\n    print('no pandas:', e)\n")
    r = python(code, demo_dir)
    assert "'power.power'" in r.stdout and "'dmm.voltage'" in r.stdout
    assert "no pandas:" in r.stdout


def test_inspect_takes_a_session_id_and_covers_both_flavors(demo_dir: Path) -> None:
    sid = sorted((demo_dir / "data" / "v2").iterdir())[-1].name
    for arg in (sid, f"data/v2/{sid}", f"data/v4/{sid}"):
        r = daqhub("inspect", arg, "--plot", "demo.png", cwd=demo_dir)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"session {sid}" in r.stdout
        rows = {(m.group(1), m.group(2)) for m in
                re.finditer(r"^  (v2|v4)\s+(\w+)\s+\w+\s+scalar", r.stdout, re.M)}
        assert rows == {("v2", "stage"), ("v2", "power"), ("v2", "rotator"), ("v4", "slider"),
                        ("v4", "dmm"), ("v4", "psu")}, r.stdout
        assert (demo_dir / "demo.png").stat().st_size > 0
    r = daqhub("inspect", "20000101T000000Z-00000000", cwd=demo_dir)
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_plot_names_the_session_and_shows_the_units(demo_dir: Path) -> None:
    """The figure's title names the session; no y label (the unit) is cut off."""
    sid = sorted((demo_dir / "data" / "v2").iterdir())[-1].name
    code = ("import sys\nfrom pathlib import Path\n"
            "from daqhub.cli import inspect as i\n"
            "import matplotlib.figure as mf\n"
            "saved = []\n"
            "orig = mf.Figure.savefig\n"
            "def keep(self, *a, **k):\n"
            "    saved.append(self); return orig(self, *a, **k)\n"
            "mf.Figure.savefig = keep\n"
            f"i.main([{sid!r}, '--plot', 'p.png'])\n"
            "fig = saved[0]; r = fig.canvas.get_renderer()\n"
            "print('TITLE', fig.get_suptitle().replace(chr(10), ' '))\n"
            "for ax in fig.axes:\n"
            "    box = ax.yaxis.label.get_window_extent(r)\n"
            "    print('YLABEL', ax.yaxis.label.get_text(), box.x0 >= 0, ax.get_title())\n")
    r = python(code, demo_dir)
    assert f"TITLE session {sid}" in r.stdout
    labels = re.findall(r"^YLABEL (\S+) (True|False) (.*)$", r.stdout, re.M)
    # one axis per channel with data (a 3 s run on a loaded box may leave one empty)
    assert len(labels) >= 5 and all(inside == "True" for _, inside, _ in labels), r.stdout
    assert ("W", "True", "v2 power.power [W]") in labels


def test_a_unit_beside_wide_tick_labels_stays_on_the_figure(tmp_path: Path) -> None:
    """Values crossing zero at 1e-4 give the widest tick labels ('−0.00015'); the unit
    beside them must still be inside the saved figure, measured at the dpi it is saved at."""
    from matplotlib.figure import Figure

    from daqhub.cli import inspect as i
    from daqhub.datafiles import ChannelReport, FileReport, PlotData
    from daqhub.measurement import ChannelSpec

    t = np.arange(7, dtype=np.int64) * 500_000_000
    wide = np.array([0.35e-4, 0.82e-4, 0.33e-4, -1.3e-4, 0.9e-4, 0.44e-4, 1.1e-4])
    channels = [ChannelReport(f"i{k}", ChannelSpec("current", "scalar", "A"), 7, t,
                              lambda y=(wide if k == 4 else t / 1e9): PlotData(t_ns=t, y=y))
                for k in range(7)]
    saved: list[Figure] = []
    orig = Figure.savefig

    def keep(self: Figure, *a: object, **k: object) -> None:
        saved.append(self)
        orig(self, *a, **k)

    Figure.savefig = keep  # type: ignore[method-assign]
    try:
        i.plot([FileReport(tmp_path / "x.h5", "hdf5", "v2", channels=channels)],
               tmp_path / "p.png")
    finally:
        Figure.savefig = orig  # type: ignore[method-assign]
    fig = saved[0]
    renderer = fig.canvas.get_renderer()
    ticks = [t.get_text() for t in fig.axes[4].get_yticklabels()]
    assert any(len(s) >= 8 for s in ticks), ticks  # the case really has wide labels
    for ax in fig.axes:
        assert ax.yaxis.label.get_window_extent(renderer).x0 >= 0, ax.get_title()
