"""``daqhub new``: build a lab file by answering questions.

Every answer is checked as it is given (against the installed types and their
config schemas), so the file written at the end validates. Reads plain lines
from standard input, so answers can be piped in tests and scripts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema

from ..config import (
    COMMON_INSTRUMENT_KEYS,
    DAQHUB_KEYS,
    TRANSPORT_KEYS,
    ConfigError,
    check_output_dir,
    closest,
    finite_problem,
    instrument_id_problem,
    parse,
    resolve_visa_backend,
    runnable,
    serial_port_problem,
    visa_resource_problem,
)
from ..host import PluginHost
from ..outdir import lab_path
from ..specs import InstrumentType
from ..tomlwrite import dumps
from .args import output_file_problem, print_problems, write_whole

MAX_TRIES = 5


class Aborted(Exception):
    pass


class Asker:
    def __init__(self, read: Callable[[], str], write: Callable[[str], None]) -> None:
        self.read = read
        self.write = write

    def ask(self, prompt: str, default: str = "",
            check: Callable[[str], str | None] | None = None) -> str:
        """Ask until ``check`` accepts (it returns None) or MAX_TRIES answers were refused."""
        for _ in range(MAX_TRIES):
            self.write(f"{prompt}{f' [{default}]' if default else ''}: ")
            line = self.read()
            if line == "":
                raise Aborted("no more answers (end of input)")
            answer = line.strip() or default
            problem = check(answer) if check else None
            if problem is None:
                return answer
            self.write(f"  {problem}\n")
        raise Aborted(f"gave up after {MAX_TRIES} refused answers to {prompt!r}")

    def yes(self, prompt: str, default: bool = False) -> bool:
        ans = self.ask(prompt + " (y/n)", "y" if default else "n",
                       lambda a: None if a.lower() in ("y", "yes", "n", "no") else "answer y or n")
        return ans.lower() in ("y", "yes")


def _convert(text: str, schema: Mapping[str, Any]) -> Any:
    t = schema.get("type")
    if t == "integer":
        return int(text)
    if t == "number":
        return float(text)
    if t == "boolean":
        if text.lower() in ("y", "yes", "true", "1"):
            return True
        if text.lower() in ("n", "no", "false", "0"):
            return False
        raise ValueError("answer yes or no")
    if t in ("array", "object"):
        return json.loads(text)
    if t == "string":  # shown as JSON ("\r\n"): typed so, it means what it shows
        if text.startswith('"'):
            return json.loads(text)
        if "\\" in text:  # \r\n typed bare would be 4 characters, never a line end
            raise ValueError('text with a backslash goes in double quotes, as JSON: "\\r\\n" '
                             'is CR LF, "C:\\\\data" one backslash')
        return text
    if t is None or isinstance(t, list):  # a union (an address as 0-15 or "0"-"F"; one DMM
        try:  # function or a list of them): a JSON value if it is one the key takes
            value = json.loads(text)
        except ValueError:
            return text
        if t is None or jsonschema.Draft202012Validator({"type": t}).is_valid(value):
            return value
        return text if "string" in t else value  # "5" for text or a list is text
    return text


def _typed_as(schema: Mapping[str, Any]) -> str:
    """How an answer for a key that takes a list or a table is typed: as JSON."""
    t = schema.get("type")
    kinds = t if isinstance(t, list) else [t]
    if "array" in kinds:
        return ("; several as a JSON list, e.g. " if len(kinds) > 1 else
                " - a JSON list, e.g. ") + '["a", "b"]'
    return ' - a JSON table, e.g. {"key": 1}' if "object" in kinds else ""


def _property_check(name: str, schema: Mapping[str, Any], out: dict[str, Any],
                    required: bool) -> Callable[[str], str | None]:
    def check(answer: str) -> str | None:
        if answer == "":
            return f"{name} is required" if required else None
        try:
            v = _convert(answer, schema)
            jsonschema.validate(v, dict(schema))
        except (ValueError, jsonschema.ValidationError) as exc:
            return f"not a valid {name}: {getattr(exc, 'message', exc)}"
        if problem := finite_problem(v, name):
            return problem
        out[name] = v
        return None
    return check


def _ask_instrument(a: Asker, host: PluginHost, used: set[str], base_dir: Path
                    ) -> tuple[str, dict[str, Any]]:
    types = host.instrument_types()
    names = sorted({n for n, _ in types})
    a.write("installed instrument types:\n")
    for n in names:
        flavors = sorted(f for (m, f) in types if m == n)
        a.write(f"  {n} ({', '.join(flavors)}): {types[(n, flavors[0])].description}\n")

    def check_type(t: str) -> str | None:
        if t in names:
            return None
        near = closest(t, names)
        return f"unknown type {t!r}" + (f"; did you mean {' or '.join(near)}?" if near else "")

    tname = a.ask("type", "", check_type)
    flavors = sorted(f for (m, f) in types if m == tname)
    flavor = a.ask(f"flavor ({'/'.join(flavors)})", "v4" if "v4" in flavors else flavors[0],
                   lambda f: None if f in flavors else f"choose one of {', '.join(flavors)}")
    itype: InstrumentType = types[(tname, flavor)]
    model = tname.split(".")[-1]  # an id starts with a letter: 1830c_1 would be refused
    base = (model if model[:1].isalpha() else tname.replace(".", "_"))[:58]
    default_id = next(f"{base}_{i}" for i in range(1, 1000) if f"{base}_{i}" not in used)

    def check_id(i: str) -> str | None:
        if (problem := instrument_id_problem(i)) is not None:
            return "; ".join(filter(None, problem))
        return f"id {i!r} is taken" if i in used else None

    block: dict[str, Any] = {"id": a.ask("id", default_id, check_id), "type": tname}
    if itype.transport == "serial":
        block["port"] = a.ask("serial port (device path, sim://..., socket://..., usb:VID:PID)",
                              "", lambda p: serial_port_problem(p, host.serial_url_packages())
                              if p else "a port is required")
    elif itype.transport == "visa":
        block["resource"] = a.ask("VISA resource", "", visa_resource_problem)
        block["visa_backend"] = a.ask("VISA backend (@py, @ivi, file.yaml@sim)", "@py",
                                      lambda b: resolve_visa_backend(b, base_dir)[1] or None)
    props = dict(itype.config_schema.get("properties", {}))
    required = set(itype.config_schema.get("required", []))
    for name, schema in props.items():
        if name in TRANSPORT_KEYS.get(itype.transport, {}):
            continue
        default = schema.get("default")
        desc = schema.get("description", "")
        if name in required:
            label = f"{name}" + (f" ({desc})" if desc else "") + _typed_as(schema)
        else:  # left empty: the key stays out of the file and the type's default applies
            shown = "" if default is None else f", default {json.dumps(default)}"
            if isinstance(default, str) and "\\" in shown:
                shown += " (escapes such as \\n: in quotes, as shown)"
            label = (f"{name}" + (f" ({desc})" if desc else "") + _typed_as(schema)
                     + f" - optional{shown}")
        a.ask(label, "", _property_check(name, schema, block, name in required))
    hz = a.ask("poll rate in Hz", "10", _poll_rate_problem)
    block["poll_hz"] = float(hz)
    return flavor, block


def _poll_rate_problem(text: str) -> str | None:
    """What the lab's own check says of a poll rate, asked when it is answered."""
    try:
        value = float(text)
    except ValueError:
        return "a number of polls per second, e.g. 10"
    rule = COMMON_INSTRUMENT_KEYS["poll_hz"]
    if not math.isfinite(value) or not rule["minimum"] <= value <= rule["maximum"]:
        return f"from {rule['minimum']:g} to {rule['maximum']:g} polls per second"
    return None


def build(a: Asker, host: PluginHost, base_dir: Path | None = None) -> dict[str, Any]:
    """The lab's content; ``base_dir``: the directory the lab file goes to (relative paths
    are read from there; default: the working directory)."""
    base = base_dir or Path.cwd()
    output_dir = a.ask("output directory", DAQHUB_KEYS["output_dir"]["default"],
                       lambda d: check_output_dir(lab_path(base, d)))
    doc: dict[str, Any] = {"daqhub": {"output_dir": output_dir}}
    backends = sorted(host.storage_backends())
    flavors: dict[str, list[dict[str, Any]]] = {"v2": [], "v4": []}
    used: set[str] = set()
    while a.yes("add an instrument?", default=not used):
        flavor, block = _ask_instrument(a, host, used, base)
        used.add(block["id"])
        flavors[flavor].append(block)
    for flavor, default in (("v2", "hdf5"), ("v4", "arrow")):
        if not flavors[flavor]:
            continue
        storage = a.ask(f"storage for {flavor} ({', '.join(backends)})",
                        default if default in backends else (backends[0] if backends else ""),
                        lambda s: None if s in backends else f"choose one of {backends}")
        doc[flavor] = {"enabled": True, "storage": storage, "instruments": flavors[flavor]}
    return doc


def main(args: argparse.Namespace, host: PluginHost) -> int:
    out = Path(args.output)
    problem = output_file_problem(out, force=args.force)
    if problem:  # before the questions: their answers would be lost
        print(problem, file=sys.stderr)
        return 2
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    a = Asker(sys.stdin.readline, write)
    try:
        doc = build(a, host, out.resolve().parent)
    except Aborted as exc:
        print(f"\nnothing written: {exc}", file=sys.stderr)
        return 2
    text = dumps(doc)
    try:
        runnable(parse(text, str(out), host, out.resolve().parent))
    except ConfigError as exc:  # the answers are not lost: the lab to fix and save by hand
        print_problems("the lab does not validate; nothing written:", exc.problems)
        print(f"the lab was:\n{text}", file=sys.stderr)
        return 1
    try:
        write_whole(out, text)
    except OSError as exc:
        print(f"cannot write {out}: {exc} (nothing written); the lab was:\n{text}",
              file=sys.stderr)
        return 1
    print(f"\nwrote {out}; run it with: daqhub run {out}")
    return 0
