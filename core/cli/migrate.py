"""``daqhub migrate``: move a v2-only lab to v4 wherever a v4 flavor exists.

A lab migrates instrument by instrument: what has a v4 flavor (and whose block
the v4 flavor accepts) moves; the rest stays v2 and is listed with the reason,
so the lab keeps running through the migration.

The file is edited, not rewritten: tomlkit keeps every comment, blank line and
key order, and a moved ``[[v2.instruments]]`` table becomes a
``[[v4.instruments]]`` table with its own comments (in the file, the comment
lines above a table header belong to that table; tomlkit files them under the
table before, so they are moved along explicitly).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import tomlkit
from tomlkit.container import Container
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Comment, Item, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from ..config import ConfigError, instrument_schema, parse
from ..host import PluginHost
from .args import output_file_problem

DEFAULT_STORAGE = {"v2": "hdf5", "v4": "arrow"}


def migrate(doc: TOMLDocument, host: PluginHost) -> tuple[list[str], list[str], list[str]]:
    """Edit ``doc`` in place; return (ids moved to v4, reasons for each kept on v2, notes)."""
    v2_aot = _find_aot(doc, "v2")
    if v2_aot is None:
        return [], [], []
    moved: list[str] = []
    kept: list[str] = []
    moving: list[Table] = []
    for table in list(v2_aot.body):
        block = table.unwrap()
        iid, tname = block.get("id", "?"), block.get("type", "?")
        target = host.instrument_type(tname, "v4")
        if target is None:
            has_v2 = host.instrument_type(tname, "v2") is not None
            kept.append(f"{iid} ({tname}): " + ("no v4 flavor is installed for this type"
                                                 if has_v2 else "type is not installed"))
            continue
        errors = list(jsonschema.Draft202012Validator(instrument_schema(target)).iter_errors(block))
        if errors:
            kept.append(f"{iid} ({tname}): the v4 flavor does not accept this block: "
                        f"{errors[0].message}")
            continue
        moving.append(table)
        moved.append(iid)
    notes: list[str] = []
    if not moving:
        return moved, kept, notes
    order = [t for t in _tables(doc) if not t.is_super_table()]
    detached = []
    for t in moving:  # one by one: each detach changes which table stands before the next
        detached.append((t, _detach(t, order)))
        order.remove(t)
    for table, _ in detached:
        v2_aot.body.remove(table)
    v4 = doc.get("v4")
    if v4 is None:
        v4 = tomlkit.table()
        v4.add("enabled", True)
        v4.add("storage", DEFAULT_STORAGE["v4"])
        doc.add(tomlkit.nl())
        doc.add("v4", v4)
    v4_aot = _find_aot(doc, "v4")
    if v4_aot is None:
        v4_aot = tomlkit.aot()
        v4.add("instruments", v4_aot)
    for table, leading in detached:
        body = table.value.body
        for item in reversed(leading):
            body.insert(0, (None, item))
        while body and body[-1][0] is None and isinstance(body[-1][1], Whitespace):
            body.pop()
        before = v4_aot.body[-1] if len(v4_aot) else v4
        # one blank line above each moved header (unless the table before ends with one)
        table.trivia.indent = "" if _ends_blank(before) else "\n"
        v4_aot.append(table)
    v4_aot.body[-1].value.body.append((None, Whitespace("\n")))  # before what follows
    v2 = doc.get("v2", {})
    v2_storage = str(v2.get("storage", DEFAULT_STORAGE["v2"]))
    v4_storage = str(doc["v4"].get("storage", DEFAULT_STORAGE["v4"]))
    if v2_storage != v4_storage:
        notes.append(f"storage: {', '.join(moved)} now write(s) {v4_storage!r} ([v4] storage) "
                     f"instead of {v2_storage!r} ([v2] storage): each flavor stores with its "
                     f"own backend. Set [v4] storage = \"{v2_storage}\" to keep {v2_storage}.")
    if not v2_aot.body:
        _remove_aot(doc, "v2")
        if "v2" in doc:
            doc["v2"]["enabled"] = False
            notes.append("[v2] enabled = false: no v2 instruments are left")
    return moved, kept, notes


def _tables(container: Container | Table | TOMLDocument) -> Iterator[Table]:
    """Every table of the document in file order (arrays of tables: each element)."""
    body = container.value.body if isinstance(container, Table) else container.body
    for _, item in body:
        if isinstance(item, Table):
            yield item
            yield from _tables(item)
        elif isinstance(item, AoT):
            for t in item.body:
                yield t
                yield from _tables(t)


def _find_aot(doc: TOMLDocument, flavor: str) -> AoT | None:
    for _, item in doc.body:
        if isinstance(item, Table) and _key_of(doc, item) == flavor:
            for key, sub in item.value.body:
                if key is not None and key.key == "instruments" and isinstance(sub, AoT):
                    return sub
    return None


def _remove_aot(doc: TOMLDocument, flavor: str) -> None:
    del doc[flavor]["instruments"]


def _key_of(doc: TOMLDocument, item: Item) -> str | None:
    return next((k.key for k, v in doc.body if v is item and k is not None), None)


def _ends_blank(table: Table) -> bool:
    body = table.value.body
    return bool(body) and body[-1][0] is None and isinstance(body[-1][1], Whitespace)


def _trailing_comments(table: Table) -> list[Item]:
    """Remove and return the comment lines ending a table's body (from the first comment
    after its last key on): in the file they stand above the next table's header."""
    body = table.value.body
    start = len(body)
    while start > 0 and body[start - 1][0] is None and isinstance(body[start - 1][1],
                                                                   Comment | Whitespace):
        start -= 1
    while start < len(body) and isinstance(body[start][1], Whitespace):
        start += 1
    taken = [item for _, item in body[start:]]
    del body[start:]
    return taken


def _detach(table: Table, order: list[Table]) -> list[Item]:
    """Take ``table`` out of the comment chain: return the comments above its header, and
    hand the comments above the next header (filed under ``table``) to the table before."""
    i = order.index(table)
    own_next = _trailing_comments(table)
    leading = _trailing_comments(order[i - 1]) if i > 0 else []
    if i > 0:
        order[i - 1].value.body.extend((None, item) for item in own_next)
    return leading


def main(args: argparse.Namespace, host: PluginHost) -> int:
    path = Path(args.lab)
    try:
        doc = tomlkit.parse(path.read_text())
    except (OSError, UnicodeDecodeError, TOMLKitError) as exc:
        print(f"{path}: cannot read the lab file: {exc}", file=sys.stderr)
        return 2
    out_path = Path(args.output) if args.output else None
    problem = out_path and output_file_problem(out_path, force=getattr(args, "force", False))
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if len(_find_aot(doc, "v4") or []):
        print(f"{path}: already has [[v4.instruments]]; migrating the v2 ones next to them",
              file=sys.stderr)
    moved, kept, notes = migrate(doc, host)
    out = tomlkit.dumps(doc)
    try:
        parse(out, args.output or "<migrated>", host, path.resolve().parent)
    except ConfigError as exc:
        print("the migrated lab does not validate; nothing written:", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    if out_path is not None:
        try:
            out_path.write_text(out)
        except OSError as exc:
            print(f"cannot write {out_path}: {exc} (nothing written)", file=sys.stderr)
            return 1
        print(f"wrote {out_path}", file=sys.stderr)
    else:
        sys.stdout.write(out)
    print(f"moved to v4: {', '.join(moved) or 'none'}", file=sys.stderr)
    for reason in kept:
        print(f"kept on v2: {reason}", file=sys.stderr)
    for note in notes:
        print(note, file=sys.stderr)
    return 0

