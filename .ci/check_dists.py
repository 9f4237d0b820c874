"""Check built wheels and sdists against the pyproject.toml they were built from.

``python .ci/check_dists.py DIST_DIR``: for each of the repository's distributions there must
be exactly one wheel and one sdist in DIST_DIR; the wheel's METADATA must carry the
pyproject's name, version, Requires-Python and requirements (extras included), its
entry_points.txt the pyproject's entry points, and it must contain each package's
``__init__.py`` and ``py.typed``; the sdist must contain the pyproject.toml and the same
package files, and a long description (a ``readme``) unless listed in ``NO_README_YET``.
twine checks that descriptions render; this checks that what a user installs is what the
sources declare.
"""

from __future__ import annotations

import configparser
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = [ROOT, ROOT / "drivers/newport", ROOT / "drivers/elliptec",
                 ROOT / "drivers/scpi", ROOT / "sims"]
#: Distributions known to ship no long description (no ``readme`` yet). Every other one must;
#: one of these that gains a description must leave the list, so the list stays true.
NO_README_YET: set[str] = set()


def requirement_set(texts: list[str], extra: str | None = None) -> set[str]:
    out = set()
    for text in texts:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        marker = f"; extra == {extra!r}" if extra else ""
        out.add(f"{name}{sorted(str(s) for s in req.specifier)}{marker}")
    return out


def wheel_requirements(values: list[str]) -> set[str]:
    out = set()
    for text in values:
        req = Requirement(text)
        extra = None
        if req.marker is not None:
            extra = str(req.marker).split("==")[-1].strip().strip("'\"")
        marker = f"; extra == {extra!r}" if extra else ""
        out.add(f"{canonicalize_name(req.name)}{sorted(str(s) for s in req.specifier)}{marker}")
    return out


def package_files(pyproject: dict) -> list[tuple[str, str]]:
    """(path in the wheel, path in the sdist) of each package's ``__init__.py``, and of
    ``py.typed`` for top-level packages: what every distribution must ship."""
    tool = pyproject.get("tool", {}).get("setuptools", {})
    package_dir: dict[str, str] = tool.get("package-dir", {})
    files = []
    for package in tool.get("packages", []):
        parts = package.split(".")
        for cut in range(len(parts), -1, -1):  # the longest prefix with its own folder
            prefix = ".".join(parts[:cut])
            if prefix in package_dir or cut == 0:
                base = package_dir.get(prefix, "")
                folder = "/".join(p for p in (base, *parts[cut:]) if p)
                break
        wheel_folder = "/".join(parts)
        names = ["__init__.py"] + (["py.typed"] if len(parts) == 1 else [])
        files += [(f"{wheel_folder}/{n}", f"{folder}/{n}") for n in names]
    return files


def check(source: Path, dist: Path) -> list[str]:
    pyproject = tomllib.loads((source / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    name, version = project["name"], project["version"]
    stem = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    wheels = sorted(dist.glob(f"{stem}-*.whl"))
    sdists = sorted(dist.glob(f"{stem}.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"{name}: expected one wheel and one sdist {stem}*, found "
                f"{[w.name for w in wheels]} {[s.name for s in sdists]}"]
    problems: list[str] = []
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        info = f"{stem}.dist-info"
        meta = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        described = bool(meta.get_payload().strip()) and "Description-Content-Type" in meta
        if described == (name in NO_README_YET):
            problems.append(f"{name}: " + ("has a long description now: remove it from "
                                           "NO_README_YET" if described else
                                           "no long description: set readme in pyproject.toml"))
        if (meta["Name"], meta["Version"]) != (name, version):
            problems.append(f"{name}: wheel says {meta['Name']} {meta['Version']}")
        if meta["Requires-Python"] != project["requires-python"]:
            problems.append(f"{name}: Requires-Python {meta['Requires-Python']!r}, "
                            f"pyproject {project['requires-python']!r}")
        declared = requirement_set(project.get("dependencies", []))
        for extra, texts in project.get("optional-dependencies", {}).items():
            declared |= requirement_set(texts, extra)
        shipped = wheel_requirements(meta.get_all("Requires-Dist") or [])
        if declared != shipped:
            problems.append(f"{name}: Requires-Dist differs: only in pyproject "
                            f"{sorted(declared - shipped)}, only in wheel "
                            f"{sorted(shipped - declared)}")
        entry = configparser.ConfigParser()
        entry.optionxform = str  # entry-point names are case-sensitive
        if f"{info}/entry_points.txt" in names:
            entry.read_string(wheel.read(f"{info}/entry_points.txt").decode())
        want = {group: dict(points) for group, points in
                project.get("entry-points", {}).items()}
        if project.get("scripts"):
            want["console_scripts"] = dict(project["scripts"])
        got = {group: dict(entry[group]) for group in entry.sections()}
        if want != got:
            problems.append(f"{name}: entry points {got} != pyproject {want}")
        for path, _ in package_files(pyproject):
            if path not in names:
                problems.append(f"{name}: wheel lacks {path}")
    with tarfile.open(sdists[0]) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
        if "pyproject.toml" not in members:
            problems.append(f"{name}: sdist lacks pyproject.toml")
        for _, path in package_files(pyproject):
            if path not in members:
                problems.append(f"{name}: sdist lacks {path}")
    return problems


def main() -> int:
    dist = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("dist")
    problems = [p for source in DISTRIBUTIONS for p in check(source, dist)]
    for problem in problems:
        print(f"check_dists: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_dists: {len(DISTRIBUTIONS)} wheels and sdists match their pyproject.toml")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
