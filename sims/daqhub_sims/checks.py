"""``daqhub check [DISTRIBUTION ...]``: the conformance kit from the command line.

A driver distribution says how to check its types against its simulators with an entry
point in the group ``daqhub_sims.conformance``: a function returning plain dictionaries
(so the driver package needs nothing of daqhub-sims to declare them)::

    [project.entry-points."daqhub_sims.conformance"]
    daqhub-acme = "daqhub_acme.plugin:conformance"

    def conformance() -> list[dict]:
        return [{"type": "acme.tc1", "sim": "acmetemp", "options": {"tau": 0},
                 "block": {"setpoint_k": 80.0}, "steps": [["set_setpoint", 350.0]],
                 "garbage": "\\x00??\\r\\n"}]

``sim``/``options`` make the ``port`` of a fresh simulated device for each block; ``block``
adds the type's own keys; ``steps`` are commands run in both flavors before the reads;
``garbage`` (optional) is a reply the device sends before the next one (instead of it with
``"replace_reply": true``), which must raise instead of hanging. VISA instruments name their
simulator instead of ``sim``: ``"visa": "dmm_psu.yaml"`` gives each block the
``visa_backend`` of a fresh copy of that pyvisa-sim file of daqhub-sims (``block`` names the
``resource``), ``"scpi_tcp": "dmm"`` its own :class:`~daqhub_sims.scpi_tcp.ScpiTcpServer`
of that profile as ``resource`` (pyvisa-py), whose next reply ``garbage`` spoils. Simulated
readings with noise compare within ``"rel_tol"`` across the flavors; ``"rare_channels"``
lists declared channels that may stay empty in the short run (one that reports only on an
event). The same dictionaries
serve the distribution's own tests (:func:`case`). With ``--junit-xml PATH`` the outcome is
also written as JUnit XML, for CI.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import math
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from daqhub import firstparty
from daqhub.host import dist_key
from daqhub.measurement import UnifiedMeasurement
from daqhub_sims.conformance import ConformanceCase, ConformanceKit

GROUP = "daqhub_sims.conformance"
_names = itertools.count()
#: Servers and file copies of cases made without a ``stack`` live until the process ends.
_process_stack = ExitStack()
atexit.register(_process_stack.close)


def close_values(rel: float) -> Callable[[UnifiedMeasurement, UnifiedMeasurement], bool]:
    """Noisy simulated readings: same channel, dtype and unit, values within ``rel``."""
    def same(a: UnifiedMeasurement, b: UnifiedMeasurement) -> bool:
        return (a.data.unit == b.data.unit and type(a.data.value) is type(b.data.value)
                and math.isclose(float(a.data.value), float(b.data.value), rel_tol=rel))
    return same


def label(spec: Mapping[str, Any]) -> str:
    """What a case is called in reports: its type, and the simulator when that is not ``sim``."""
    where = (f" on pyvisa-sim {spec['visa']}" if "visa" in spec else
             f" on scpi_tcp {spec['scpi_tcp']}" if "scpi_tcp" in spec else "")
    return f"{spec.get('type', '?')}{where}"


def case(spec: Mapping[str, Any], url: Callable[..., str] | None = None,
         endpoint: Callable[[str], Any] | None = None,
         stack: ExitStack | None = None) -> ConformanceCase:
    """A :class:`ConformanceCase` from one declared dictionary (see the module docstring).

    ``url``/``endpoint`` default to daqhub-sims' registry with a fresh line name per device,
    as the ``sim_url``/``sim_endpoint`` fixtures make them. TCP servers and pyvisa-sim file
    copies are closed and removed with ``stack`` (default: at process exit).
    """
    from daqhub_sims import install, registry, visa_files
    from daqhub_sims.scpi_tcp import ScpiTcpServer

    install()
    keep = _process_stack if stack is None else stack
    visa, tcp = spec.get("visa"), spec.get("scpi_tcp")
    servers: dict[str, ScpiTcpServer] = {}
    folders: list[str] = []
    if url is None:
        def url(model: str, **options: Any) -> str:
            query = "&".join(f"{k}={v}" for k, v in
                             {"name": f"check{next(_names)}", **options}.items())
            return f"sim://{model}?{query}"
    find = endpoint or registry.endpoint
    sim, options = spec.get("sim"), dict(spec.get("options", {}))

    def block() -> dict[str, Any]:
        place: dict[str, Any] = {"port": url(sim, **options)} if sim else {}
        if visa:
            if not folders:
                folders.append(keep.enter_context(tempfile.TemporaryDirectory(
                    prefix="daqhub-check-")))
            copy = visa_files.fresh_copy(folders[0], visa)  # pyvisa-sim state is per path
            place = {"visa_backend": visa_files.sim_library(copy)}
        if tcp:
            server = keep.enter_context(ScpiTcpServer(tcp))
            servers[server.resource] = server
            place = {"resource": server.resource, "visa_backend": "@py"}
        return {**place, **dict(spec.get("block", {}))}

    garbage = spec.get("garbage")
    inject = None
    if garbage is not None:
        data = garbage.encode("latin-1") if isinstance(garbage, str) else bytes(garbage)

        if visa:
            raise ValueError(f"{label(spec)}: pyvisa-sim cannot send garbage; use scpi_tcp")

        def inject(b: Mapping[str, Any]) -> None:
            if tcp:
                servers[b["resource"]].garbage_next_reply(data, terminate=False)
                return
            faults = find(b["port"]).faults
            if spec.get("replace_reply"):
                faults.truncate_next(0)  # the device's own next reply never arrives
            faults.inject_garbage(data)

    return ConformanceCase(spec["type"], block, steps=[tuple(s) for s in spec.get("steps", [])],
                           reads=int(spec.get("reads", 3)), garbage=inject,
                           same=close_values(spec["rel_tol"]) if "rel_tol" in spec else None,
                           timeout_s=float(spec.get("timeout_s", 10.0)),
                           rare_channels=tuple(spec.get("rare_channels", ())))


def declared() -> dict[str, list[dict[str, Any]]]:
    """Distribution name -> its declared conformance dictionaries, for every installed one.

    A distribution whose entry point fails to load or to run (or returns no list) is in
    the result with one dictionary ``{"error": why}``: it fails its own check, and every
    other distribution is still checked.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.name
        try:
            specs = ep.load()()
            if not isinstance(specs, list):
                raise TypeError(f"returned {type(specs).__name__}, not a list of dictionaries")
        except Exception as exc:  # another distribution's bug must not stop this check
            specs = [{"error": f"its conformance entry point {ep.name} = {ep.value!r} "
                               f"failed: {type(exc).__name__}: {exc}"}]
        out.setdefault(dist, []).extend(specs)
    return out


@dataclass
class Outcome:
    distribution: str
    type: str
    seconds: float
    error: str = ""
    detail: str = ""


def not_checked(name: str, declaring: Sequence[str]) -> str:
    """Why distribution ``name``, asked for, has no cases to check: not installed (with what
    to install, for a first-party one), or declaring none (``declaring``: the installed
    distributions that do)."""
    if not firstparty.is_installed(name):
        key = dist_key(name)
        return f"{name} declares no conformance cases: it is not installed" + (
            f"; {firstparty.install_command(key)}" if key in firstparty.DISTRIBUTIONS else "")
    return (f"{name} declares no conformance cases (entry point group {GROUP!r}); installed: "
            f"{', '.join(declaring) or 'none'}")


def run_checks(distributions: Sequence[str]) -> list[Outcome]:
    """Check each case of ``distributions`` (all declared when empty), one outcome each;
    a name is taken as pip takes it (``daqhub_newport``, ``Daqhub-Newport``)."""
    specs = declared()
    declaring = {dist_key(d): d for d in specs}
    asked = [declaring.get(dist_key(d), d) for d in distributions]
    names = asked or sorted(specs)
    kit = ConformanceKit()
    outcomes = [Outcome(d, "-", 0.0, not_checked(d, sorted(specs)))
                for d in asked if d not in specs]
    for dist in names:
        for spec in specs.get(dist, []):
            t0 = time.monotonic()
            if "error" in spec:
                outcomes.append(Outcome(dist, "-", 0.0, spec["error"]))
                continue
            try:
                with ExitStack() as stack:
                    kit.check(dist, [case(spec, stack=stack)])
                outcomes.append(Outcome(dist, label(spec), time.monotonic() - t0))
            except Exception as exc:  # every failure is reported, then the next case runs
                outcomes.append(Outcome(dist, label(spec), time.monotonic() - t0,
                                        f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    return outcomes


def junit_xml(outcomes: Sequence[Outcome]) -> bytes:
    failed = [o for o in outcomes if o.error]
    suite = ET.Element("testsuite", name="daqhub check", tests=str(len(outcomes)),
                       failures=str(len(failed)), errors="0",
                       time=f"{sum(o.seconds for o in outcomes):.3f}")
    for o in outcomes:
        tc = ET.SubElement(suite, "testcase", classname=o.distribution, name=o.type,
                           time=f"{o.seconds:.3f}")
        if o.error:
            ET.SubElement(tc, "failure", message=o.error).text = o.detail or o.error
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="daqhub check",
        description="Run the conformance kit on installed driver plugins against their "
                    "simulators. Exit 0 when every case passes, 1 when one fails or a named "
                    "distribution declares none.")
    parser.add_argument("distributions", nargs="*", metavar="DISTRIBUTION",
                        help="distributions to check (default: every one that declares cases)")
    parser.add_argument("--junit-xml", metavar="PATH", help="also write the outcome as JUnit XML")
    args = parser.parse_args(argv)
    outcomes = run_checks(args.distributions)
    for o in outcomes:
        print(f"{'FAIL' if o.error else 'ok  '} {o.distribution} {o.type} ({o.seconds:.1f} s)"
              + (f"\n     {o.error}" if o.error else ""))
    failed = sum(1 for o in outcomes if o.error)
    print(f"{len(outcomes) - failed} passed, {failed} failed")
    if args.junit_xml:
        with open(args.junit_xml, "wb") as f:
            f.write(junit_xml(outcomes))
    return 1 if failed or not outcomes else 0
