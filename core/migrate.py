"""``daqhub migrate``: move a v2-only lab to v4 wherever a v4 flavor exists.

A lab migrates instrument by instrument: what has a v4 flavor (and whose block
the v4 flavor accepts) moves; the rest stays v2 and is listed with the reason,
so the lab keeps running through the migration.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema

from .config import ConfigError, instrument_schema, parse
from .host import PluginHost
from .tomlwrite import dumps


def migrate(data: dict[str, Any], host: PluginHost) -> tuple[dict[str, Any], list[str], list[str]]:
    """Return (new document, ids moved to v4, reasons for each instrument kept on v2)."""
    doc = {k: v for k, v in data.items()}
    v2 = dict(doc.get("v2", {}))
    items = list(v2.get("instruments", []))
    existing_v4 = list(dict(doc.get("v4", {})).get("instruments", []))
    moved: list[str] = []
    kept: list[str] = []
    stay: list[dict[str, Any]] = []
    for block in items:
        iid = block.get("id", "?")
        tname = block.get("type", "?")
        target = host.instrument_type(tname, "v4")
        if target is None:
            has_v2 = host.instrument_type(tname, "v2") is not None
            kept.append(f"{iid} ({tname}): " + ("no v4 flavor is installed for this type"
                                                 if has_v2 else "type is not installed"))
            stay.append(block)
            continue
        errors = list(jsonschema.Draft202012Validator(
            instrument_schema(target)).iter_errors(block))
        if errors:
            kept.append(f"{iid} ({tname}): the v4 flavor does not accept this block: "
                        f"{errors[0].message}")
            stay.append(block)
            continue
        existing_v4.append(block)
        moved.append(iid)
    if stay:
        v2["instruments"] = stay
    else:
        v2.pop("instruments", None)
    if moved:
        v4 = dict(doc.get("v4", {}))
        v4.setdefault("enabled", True)
        v4.setdefault("storage", "arrow")
        v4["instruments"] = existing_v4
        doc["v4"] = v4
    if not stay and "v2" in doc:
        v2["enabled"] = False
    doc["v2"] = v2
    # keep table order readable: daqhub, v2, v4, storage, routines
    order = ["daqhub", "v2", "v4", "storage", "routines"]
    return ({k: doc[k] for k in order if k in doc} | {k: v for k, v in doc.items()
                                                         if k not in order}), moved, kept


def main(args: argparse.Namespace, host: PluginHost) -> int:
    path = Path(args.lab)
    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        print(f"{path}: cannot read the lab file: {exc}", file=sys.stderr)
        return 2
    if data.get("v4", {}).get("instruments"):
        print(f"{path}: already has [[v4.instruments]]; migrating the v2 ones next to them",
              file=sys.stderr)
    doc, moved, kept = migrate(data, host)
    out = dumps(doc)
    try:
        parse(out, args.output or "<migrated>", host, path.resolve().parent)
    except ConfigError as exc:
        print("the migrated lab does not validate; nothing written:", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(out)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(out)
    print(f"moved to v4: {', '.join(moved) or 'none'}", file=sys.stderr)
    for reason in kept:
        print(f"kept on v2: {reason}", file=sys.stderr)
    return 0
