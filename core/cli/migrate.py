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

tomlkit keeps each part of a table where the file has it: an array of
``[[v2.instruments]]`` below other headers (``[v2]``, ``[v4]``, then the array), or below
dotted keys (``v2.storage = ...``), is held by a ``v2`` table of its own, and other
tables between its tables split it in several; ``_arrays`` finds them all. A sub-table
(``[v2.instruments.restart]``) belongs to its instrument and moves with it. Instruments
written inline (``instruments = [{...}]``) are refused rather than edited.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import tomlkit
from tomlkit.container import Container
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Comment, InlineTable, Item, Null, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from ..config import (
    DAQHUB_KEYS,
    ConfigError,
    instrument_schema,
    load,
    parse,
    resolve_visa_backend,
    runnable,
)
from ..host import PluginHost
from ..outdir import lab_path
from ..specs import FLAVORS
from .args import output_file_problem, print_problems, write_whole

DEFAULT_STORAGE = {"v2": "hdf5", "v4": "arrow"}


class MigrateError(Exception):
    """A layout of the lab file ``migrate`` does not edit; the message says how to write it."""


def migrate(doc: TOMLDocument, host: PluginHost) -> tuple[list[str], list[str], list[str]]:
    """Edit ``doc`` in place; return (ids moved to v4, reasons for each kept on v2, notes).
    Raises MigrateError, before any change, for a layout it does not edit."""
    plain = doc.unwrap()
    for flavor in FLAVORS:
        section = plain.get(flavor, {})
        tables = [t for _, aot in _arrays(doc, flavor) for t in aot.body]
        if "instruments" in section and (not tables
                                         or len(section["instruments"]) != len(tables)):
            raise MigrateError(f"[{flavor}] instruments is an inline array (instruments = "
                               f"[...]); migrate moves tables: write each instrument as a "
                               f"[[{flavor}.instruments]] table")
    if isinstance(doc.get("v4"), InlineTable):
        raise MigrateError("v4 is an inline table (v4 = {...}); write it as a [v4] table")
    arrays = _arrays(doc, "v2")
    moved: list[str] = []
    kept: list[str] = []
    moving: list[Table] = []
    for table in (t for _, aot in arrays for t in aot.body):
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
    # a disabled [v2] kept its instruments off; in [v4] each keeps off by its own key
    v2_off = plain.get("v2", {}).get("enabled", True) is False
    order = [t for t in _tables(doc) if not t.is_super_table()]
    file_end = ""  # comments that ended the file after a moved table stay at its end
    for t in moving:  # in file order: each detach changes which table stands before the next
        holder, aot = next((h, a) for h, a in arrays if any(x is t for x in a.body))
        file_end += _detach(t, order, holder.value.body, aot)
        for own in _own_tables(t):
            del order[_index(order, own)]
        del aot.body[_index(aot.body, t)]
    for holder, aot in arrays:  # before [v4] is added, so that the blank lines come out right
        if not aot.body:
            del holder["instruments"]
    emptied = not any(aot.body for _, aot in arrays)
    if emptied and "v2" in doc and not v2_off:
        doc["v2"]["enabled"] = False
    if "v4" not in doc:
        v4 = tomlkit.table()
        v4.add("enabled", True)
        v4.add("storage", DEFAULT_STORAGE["v4"])
        indent = _gap(doc.as_string())  # one blank line above [v4]
        doc.add("v4", v4)
        v4.trivia.indent = indent
    gap = ""  # one blank line above each moved header
    if v4_arrays := _arrays(doc, "v4"):
        v4_aot = v4_arrays[-1][1]
    else:
        v4_aot = tomlkit.aot()
        holder = doc["v4"]
        if isinstance(holder, Table) and not holder.is_super_table():  # below [v4]'s keys
            file_end += _pass_on(holder, order)  # the comments above the next header
            gap = "" if _ends_blank(holder) else "\n"
        else:  # dotted keys (v4.storage = ...): the keys below them would land in its tables
            gap = _gap(doc.as_string())
            holder = tomlkit.table(is_super_table=True)
            doc.append("v4", holder)
            holder.trivia.indent = ""
        holder.add("instruments", v4_aot)
    already = [str(t.get("id", "?")) for t in v4_aot.body]
    for table in moving:
        body = _own_tables(table)[-1].value.body
        while body and body[-1][0] is None and isinstance(body[-1][1], Whitespace | Null):
            body.pop()
        if len(v4_aot):
            gap = "" if _ends_blank(_own_tables(v4_aot.body[-1])[-1]) else "\n"
        table.trivia.indent = gap + table.trivia.indent.lstrip("\n")
        table.invalidate_display_name()  # its sub-tables' headers: [v4.instruments.restart]
        if v2_off and table.get("enabled", True) is not False:
            off = tomlkit.item(False).comment("it was in the disabled [v2]")
            if "enabled" in table:
                table["enabled"] = off
            else:  # append() copies the first space of the header's comments as an indent
                table.raw_append("enabled", off)
        v4_aot.append(table)
    _own_tables(v4_aot.body[-1])[-1].value.body.append((None, Whitespace("\n")))
    if file_end:
        doc.body.append((None, Whitespace(file_end)))
    if doc["v4"].get("enabled", True) is False:
        doc["v4"]["enabled"] = True
        notes.append("[v4] enabled = true (it was false), so that the moved instruments run"
                     + (f"; so do the v4 instruments already there: {', '.join(already)}"
                        if already else ""))
    v2 = doc.get("v2", {})
    v2_storage = str(v2.get("storage", DEFAULT_STORAGE["v2"]))
    v4_storage = str(doc["v4"].get("storage", DEFAULT_STORAGE["v4"]))
    if v2_storage != v4_storage:
        notes.append(f"storage: {', '.join(moved)} now write(s) {v4_storage!r} ([v4] storage) "
                     f"instead of {v2_storage!r} ([v2] storage): each flavor stores with its "
                     f"own backend. Set [v4] storage = \"{v2_storage}\" to keep {v2_storage}.")
    if v2_off:
        notes.append(f"kept off: {', '.join(moved)} (enabled = false written into each "
                     "moved block: [v2] is disabled, so they did not run before the migration;"
                     " set enabled = true in a block to run it)")
    elif emptied:
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


def _arrays(doc: TOMLDocument, flavor: str) -> list[tuple[Table, AoT]]:
    """The flavor's arrays of ``[[<flavor>.instruments]]`` tables, each with the table that
    holds it, in file order: the [flavor] table, or a table of its own when other headers
    (or dotted keys) stand between; several when other tables split the array."""
    return [(item, sub) for key, item in doc.body
            if key is not None and key.key == flavor and isinstance(item, Table)
            for sub_key, sub in item.value.body
            if sub_key is not None and sub_key.key == "instruments" and isinstance(sub, AoT)]


def _own_tables(table: Table) -> list[Table]:
    """``table`` and its sub-tables (``[v2.instruments.restart]``) in file order: what moves
    with it."""
    return [table, *(t for t in _tables(table) if not t.is_super_table())]


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
    """Take ``table`` (with its sub-tables) out of the comment chain: the comments above its
    header go into the text before its header, the comments above the next header into the
    next table's. Returns the comments that ended the file after it (for the new end of the
    file)."""
    i = _index(order, table)
    leading = ""
    if aot.body[0] is table:  # the array's first table: its comments are in [v2], ahead of it
        at = _index([item for _, item in v2_body], aot)
        leading = _take_text(v2_body, _comment_block(v2_body, at), at)
    if not leading and i > 0:  # the comments end the body of the table before
        prev = order[i - 1].value.body
        leading = _take_text(prev, _comment_block(prev, len(prev)), len(prev))
    table.trivia.indent = leading + table.trivia.indent
    return _pass_on(_own_tables(table)[-1], order)


def _pass_on(table: Table, order: list[Table]) -> str:
    """Give the comments that end ``table``'s body, which stand above the next header in
    the file, to the table of that header; return them if no table follows."""
    body = table.value.body
    above_next = _take_text(body, _comment_block(body, len(body)), len(body))
    if not above_next:
        return ""
    after = _index(order, table) + 1
    if after < len(order):
        order[after].trivia.indent = above_next + order[after].trivia.indent
        return ""
    return above_next


def _gap(text: str) -> str:
    """What to write after ``text`` for one blank line before a header that follows."""
    return "\n" * max(0, 2 - len(text) + len(text.rstrip("\n")))


def _index(items: list[Any], item: Any) -> int:
    """Where ``item`` itself is (``list.index`` compares: two sub-tables alike are equal)."""
    return next(n for n, x in enumerate(items) if x is item)


def _rebase(doc: TOMLDocument, old: Path, new: Path) -> list[str]:
    """Rewrite the paths the lab gives relative to its file (output directories, simulation
    files of VISA backends, TLS files) from ``old``, its directory, to ``new``, the
    migrated file's, so that they name the same places (the default output directory is
    written out). Returns what changed, as ``key: 'was' -> 'is'``."""
    changes: list[str] = []

    def move(table: Any, key: str, given: str, suffix: str = "") -> None:
        was = lab_path(old, given)
        if was != lab_path(new, given):  # relative: "~/data" and "/data" stay as they are
            table[key] = os.path.relpath(was, new) + suffix
            changes.append(f"{key}: {given + suffix!r} -> {table[key]!r}")

    if "daqhub" not in doc:
        doc.add("daqhub", tomlkit.table())
    daq = doc["daqhub"]
    move(daq, "output_dir", str(daq.get("output_dir", DAQHUB_KEYS["output_dir"]["default"])))
    for key in ("tls_cert", "tls_key"):
        if isinstance(given := daq.get("serve", {}).get(key), str):
            move(daq["serve"], key, given)
    for flavor in FLAVORS:
        if isinstance(given := doc.get(flavor, {}).get("output_dir"), str):
            move(doc[flavor], "output_dir", given)
        for table in (t for _, aot in _arrays(doc, flavor) for t in aot.body):
            backend = table.get("visa_backend")
            if not isinstance(backend, str):
                continue
            resolved, why = resolve_visa_backend(backend, old)
            if not why and resolved != resolve_visa_backend(backend, new)[0]:  # file.yaml@sim
                move(table, "visa_backend", backend.removesuffix("@sim"), "@sim")
    return changes


def main(args: argparse.Namespace, host: PluginHost) -> int:
    """Exit 0: written (or printed); 1: the result does not validate, or cannot be written;
    2: the lab does not validate (its own problems), a layout migrate does not edit, or an
    output file it may not write."""
    path = Path(args.lab)
    offline = getattr(args, "offline", False)
    out_path = Path(args.output) if args.output else None
    problem = out_path and output_file_problem(out_path, force=getattr(args, "force", False))
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:  # the lab's own problems are said as the lab's, not as the migration's
        lab = runnable(load(path, host, offline=offline))
    except ConfigError as exc:
        print_problems(f"{path}: the lab to migrate has {len(exc.problems)} problem(s); nothing "
                  f"written", exc.problems)
        return 2
    try:
        doc = tomlkit.parse(lab.text)
        if len(_arrays(doc, "v4")):
            print(f"{path}: already has [[v4.instruments]]; migrating the v2 ones next to "
                  "them", file=sys.stderr)
        moved, kept, notes = migrate(doc, host)
    except (TOMLKitError, MigrateError) as exc:
        print(f"{path}: {exc}; nothing written", file=sys.stderr)
        return 2
    old_dir = path.resolve().parent
    new_dir = out_path.resolve().parent if out_path else old_dir
    if new_dir != old_dir and (changes := _rebase(doc, old_dir, new_dir)):
        notes.append(f"paths are relative to the lab file: rewritten for {new_dir}: "
                     + "; ".join(changes))
    out = tomlkit.dumps(doc)
    try:  # as it will be read: from where it is written
        runnable(parse(out, args.output or "<migrated>", host, new_dir, offline=offline))
    except ConfigError as exc:
        print_problems("the migrated lab does not validate; nothing written:", exc.problems)
        return 1
    if out_path is not None:
        try:
            write_whole(out_path, out)
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


