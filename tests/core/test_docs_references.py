"""The docs point at code and at each other; those pointers must lead somewhere.

A file renamed or a section retitled leaves a reader of ``docs/`` (or of a docstring that
says "see docs/architecture.md, 'Some section'") at a dead end, and nothing else notices:
these tests read every such pointer and check its target exists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
READMES = [ROOT / "README.md", *sorted(ROOT.glob("drivers/*/README.md")),
           *sorted(ROOT.glob("examples/*/README.md"))]
#: where a path written relative to a package's source starts (``runtime/v4.py`` is the
#: core's, ``daqhub/...`` the import name's, ``daqhub_sims/...`` the sims distribution's)
SOURCE_ROOTS = ["", "core/", "sims/", "drivers/newport/", "drivers/elliptec/", "drivers/scpi/",
                "examples/acme-plugin/"]
SKIP_DIRS = {".git", ".venv", ".tox", "build", "__pycache__", ".mypy_cache", ".ruff_cache",
             ".hypothesis", ".pytest_cache", "data"}
#: files daqhub writes into a session, named in the docs but not in the repository
WRITTEN_BY_A_RUN = {"budget.json", "session.h5", "lab.toml"}

PATH_REF = re.compile(r"`(\.ci/[\w./-]+|[\w./-]+\.(?:py|toml|md|yaml|yml|ini|json|sh))`")
# a section named in prose: "Title" above/below, "Title" in x.md, (see "Title"),
# docs/x.md ("Title") or docs/x.md, "Title"
SAME_DOC = re.compile(r'"([^"\n]{3,80})"\)? (?:above|below)\b')
IN_DOC = re.compile(r'"([^"\n]{3,80})"\)? in `?(?:docs/)?([\w-]+\.md)')
FROM_CODE = re.compile(r'docs/([\w-]+\.md)`{0,2}\)?,? \(?(?:see )?"([^"\n]{3,80})"')
SEE = re.compile(r'\(see "([^"\n]{3,80})"\)')
LAB_GUIDE = re.compile(r'lab guide,? \(?"([^"\n]{3,80})"')


def tree_files() -> list[Path]:
    found: list[Path] = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        found.extend(Path(folder, f) for f in files)
    return found


FILES = tree_files()
BASENAMES = {p.name for p in FILES}


def titles(doc: Path) -> set[str]:
    """Its headings and its bold paragraph titles (``**Title.**``): what prose may cite."""
    text = doc.read_text()
    heads = {re.sub(r"^#+\s*", "", line).strip() for line in text.splitlines()
             if line.startswith("#")}
    bold = {m.rstrip(".").strip() for m in re.findall(r"\*\*([^*\n]+)\*\*", text)}
    return heads | bold


def flat(text: str) -> str:
    """Prose with its line breaks (and a docstring's comment marks) folded into spaces."""
    return re.sub(r"\s*\n\s*(?:#\s*)?", " ", text)


def resolves(ref: str) -> bool:
    if "/" not in ref:
        return ref in BASENAMES or ref in WRITTEN_BY_A_RUN
    candidates = [ROOT / (base + ref) for base in SOURCE_ROOTS]
    if ref.startswith("daqhub/"):
        candidates.append(ROOT / "core" / ref.removeprefix("daqhub/"))
    return any(c.exists() for c in candidates)


@pytest.mark.parametrize("doc", DOCS + READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_a_page_names_exists(doc: Path) -> None:
    missing = sorted({ref for ref in PATH_REF.findall(doc.read_text()) if not resolves(ref)})
    assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_section_a_page_cites_exists(doc: Path) -> None:
    text = flat(doc.read_text())
    own = titles(doc)
    bad = [f'"{t}" (above/below)' for t in SAME_DOC.findall(text) + SEE.findall(text)
           if t not in own]
    guide = titles(ROOT / "docs" / "lab-guide.md")
    bad += [f'"{t}" in the lab guide' for t in LAB_GUIDE.findall(text) if t not in guide]
    for title, target in IN_DOC.findall(text):
        page = ROOT / "docs" / target
        if not page.exists() or title not in titles(page):
            bad.append(f'"{title}" in {target}')
    assert not bad, f"{doc.name} cites sections that are not there: {bad}"


def test_every_section_the_code_and_the_pages_cite_by_file_exists() -> None:
    bad = []
    for path in FILES:
        if path.suffix not in (".py", ".md") or path == Path(__file__).resolve():
            continue  # (this file's own examples)
        for target, title in FROM_CODE.findall(flat(path.read_text(errors="replace"))):
            page = ROOT / "docs" / target
            if not page.exists() or title not in titles(page):
                bad.append(f'{path.relative_to(ROOT)}: "{title}" in docs/{target}')
    assert not bad, "sections cited by file that are not there:\n" + "\n".join(bad)


def test_the_checks_find_a_broken_pointer(tmp_path: Path) -> None:
    """The patterns must match the way the pages and the code actually cite."""
    assert PATH_REF.findall("see `runtime/v4.py` and `bench/nowhere.py`") == [
        "runtime/v4.py", "bench/nowhere.py"]
    assert resolves("runtime/v4.py") and not resolves("bench/nowhere.py")
    assert SAME_DOC.findall(flat('as "Memory"\nbelow says')) == ["Memory"]
    assert FROM_CODE.findall(flat('figures in ``docs/performance.md`` ("Fairness\n'
                                  'between flavors")')) == [
        ("performance.md", "Fairness between flavors")]
    assert "Fairness between flavors" in titles(ROOT / "docs" / "performance.md")
