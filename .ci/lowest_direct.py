"""Print pip constraints pinning every direct dependency to the lowest version allowed.

Reads every pyproject.toml of the repository (the five distributions and the example
plugin): each third-party requirement of ``[project] dependencies`` and of every extra is
pinned to its floor (``numpy>=1.26,<3`` -> ``numpy==1.26``); when several distributions
name the same package the highest floor wins, the lowest version all of them accept. The
repository's own distributions are left out (they install from source). Transitive
dependencies are not pinned: pip resolves them as a user's pip would, which is the
lowest-direct resolution of uv (``uv pip install --resolution lowest-direct``) done with the
pip every environment already has.

Usage: ``python .ci/lowest_direct.py [--output lowest.txt]; pip install -c lowest.txt ...``.
A requirement without a lower bound is an error: its lowest version cannot be tested.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", ".tox", "build", "dist", "node_modules"}


def pyprojects() -> list[Path]:
    return sorted(p for p in ROOT.rglob("pyproject.toml")
                  if not SKIP_DIRS & set(p.relative_to(ROOT).parts))


def floor(requirement: Requirement) -> Version | None:
    """The lowest version the requirement's specifier allows (None: it has no floor)."""
    bounds = [Version(s.version) for s in requirement.specifier
              if s.operator in (">=", "==", "~=", "===")]
    return max(bounds) if bounds else None


def main() -> int:
    projects = [tomllib.loads(p.read_text(encoding="utf-8"))["project"] for p in pyprojects()]
    own = {canonicalize_name(project["name"]) for project in projects}
    floors: dict[str, tuple[Version, str]] = {}
    problems: list[str] = []
    for project in projects:
        texts = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            texts += extra
        for text in texts:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            if name in own:
                continue
            low = floor(requirement)
            if low is None:
                problems.append(f"{project['name']}: {text!r} has no lower bound")
                continue
            if name not in floors or low > floors[name][0]:
                floors[name] = (low, project["name"])
    for problem in problems:
        print(f"lowest_direct: {problem}", file=sys.stderr)
    text = "".join(f"{name}=={low}  # floor of {source}\n"
                   for name, (low, source) in sorted(floors.items()))
    if len(sys.argv) == 3 and sys.argv[1] == "--output":
        Path(sys.argv[2]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
