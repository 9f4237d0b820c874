"""``daqhub migrate``: move a v2-only lab to v4 wherever a v4 flavor exists.

A lab migrates instrument by instrument: what has a v4 flavor (and whose block
the v4 flavor accepts) moves; the rest stays v2 and is listed with the reason,
so the lab keeps running through the migration.

The file is edited, not rewritten: tomlkit keeps every comment, blank line and
key order, and a moved ``[[v2.instruments]]`` table becomes a
``[[v4.instruments]]`` table with its own comments. In the file the comment lines
above a table header belong to that table, but tomlkit files them under what comes
before (the previous table's body, or the parent table's body ahead of the array),
so they are moved explicitly: into the text tomlkit writes before a header
(``trivia.indent``), the moved table's own and, for the comments that stood above the
header after it, the next table's. Items are blanked (``Null``) rather than deleted,
so tomlkit's index of the keys after them stays right.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import tomlkit
from tomlkit.container import Container
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Comment, Item, Null, Table, Whitespace
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
    v2_body = doc["v2"].value.body  # _find_aot found the array in the [v2] table
    file_end = ""  # comments that ended the file after a moved table stay at its end
    for t in moving:  # in file order: each detach changes which table stands before the next
        file_end += _detach(t, order, v2_body, v2_aot)
        order.remove(t)
        v2_aot.body.remove(t)
    emptied = False
    if not v2_aot.body:  # before [v4] is added, so that the blank lines come out right
        _remove_aot(doc, "v2")
        if "v2" in doc:
            doc["v2"]["enabled"] = False
            emptied = True
    v4 = doc.get("v4")
    if v4 is None:
        v4 = tomlkit.table()
        v4.add("enabled", True)
        v4.add("storage", DEFAULT_STORAGE["v4"])
        if not doc.as_string().endswith("\n\n"):  # one blank line above [v4]
            doc.add(tomlkit.nl())
        doc.add("v4", v4)
    v4_aot = _find_aot(doc, "v4")
    if v4_aot is None:
        v4_aot = tomlkit.aot()
        v4.add("instruments", v4_aot)
    for table in moving:
        body = table.value.body
        while body and body[-1][0] is None and isinstance(body[-1][1], Whitespace | Null):
            body.pop()
        before = v4_aot.body[-1] if len(v4_aot) else v4
        # one blank line above each moved header (unless the table before ends with one)
        table.trivia.indent = (("" if _ends_blank(before) else "\n")
                               + table.trivia.indent.lstrip("\n"))
        v4_aot.append(table)
    v4_aot.body[-1].value.body.append((None, Whitespace("\n")))  # before what follows
    if file_end:
        doc.body.append((None, Whitespace(file_end)))
    v2 = doc.get("v2", {})
    v2_storage = str(v2.get("storage", DEFAULT_STORAGE["v2"]))
    v4_storage = str(doc["v4"].get("storage", DEFAULT_STORAGE["v4"]))
    if v2_storage != v4_storage:
        notes.append(f"storage: {', '.join(moved)} now write(s) {v4_storage!r} ([v4] storage) "
                     f"instead of {v2_storage!r} ([v2] storage): each flavor stores with its "
                     f"own backend. Set [v4] storage = \"{v2_storage}\" to keep {v2_storage}.")
    if emptied:
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
    items = [item for _, item in table.value.body if not isinstance(item, Null)]
    return bool(items) and isinstance(items[-1], Whitespace)


def _comment_block(body: list[tuple[Any, Item]], end: int) -> int:
    """Where the comment lines right before ``body[end]`` start (the blank lines among
    them included, the blank lines above the first one not)."""
    start = end
    while start > 0 and body[start - 1][0] is None and isinstance(body[start - 1][1],
                                                                   Comment | Whitespace):
        start -= 1
    while start < end and isinstance(body[start][1], Whitespace):
        start += 1
    return start


def _take_text(body: list[tuple[Any, Item]], start: int, end: int) -> str:
    """The text of ``body[start:end]``, blanked in place (see the module doc)."""
    text = "".join(item.as_string() for _, item in body[start:end])
    body[start:end] = [(None, Null()) for _ in range(start, end)]
    return text


def _detach(table: Table, order: list[Table], v2_body: list[tuple[Any, Item]],
            aot: AoT) -> str:
    """Take ``table`` out of the comment chain: the comments above its header go into the
    text before its header, the comments above the next header into the next table's.
    Returns the comments that ended the file after it (for the new end of the file)."""
    i = order.index(table)
    leading = ""
    if aot.body[0] is table:  # the array's first table: its comments are in [v2], ahead of it
        at = next(n for n, (_, item) in enumerate(v2_body) if item is aot)
        leading = _take_text(v2_body, _comment_block(v2_body, at), at)
    if not leading and i > 0:  # the comments end the body of the table before
        prev = order[i - 1].value.body
        leading = _take_text(prev, _comment_block(prev, len(prev)), len(prev))
    table.trivia.indent = leading + table.trivia.indent
    body = table.value.body
    above_next = _take_text(body, _comment_block(body, len(body)), len(body))
    if above_next:
        if i + 1 < len(order):
            order[i + 1].trivia.indent = above_next + order[i + 1].trivia.indent
        else:
            return above_next
    return ""


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

