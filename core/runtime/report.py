"""The shutdown report as text, printed by ``daqhub run`` and by ``Lab(report_to=...)``.

It lives beside the runtime that produces the report, not in the command line,
because the Lab API (a kernel module) prints the same report.
"""

from __future__ import annotations

from typing import TextIO

from .dual import DualRuntimeManager, ShutdownReport
from .outcome import report_line


def print_report(rt: DualRuntimeManager, report: ShutdownReport, out: TextIO) -> None:
    print("\nshutdown report", file=out)
    print(f"  took {report.duration_s:.2f} s; stopped cleanly: {', '.join(report.clean) or '-'}",
          file=out)
    print("instruments:", file=out)
    for o in report.instruments:
        print(f"  {report_line(o)}", file=out)
    for r in report.routines:
        print(f"  routine {r['instrument']}: {r['state']}, {r['cycles']} cycle(s)"
              + (f"  <- NOT OK: {r['problem']}" if r["problem"] else ""), file=out)
    for a in rt.alarms:
        print(f"  alarm: {a['message']}", file=out)
    for label, items in (("forced", report.forced), ("leaked", report.leaked),
                         ("resources not closed", report.unclosed_resources),
                         ("errors", report.errors)):
        for item in items:
            print(f"  {label}: {item}", file=out)
    print("measurements per instrument and channel:", file=out)
    for iid, chans in sorted(report.counts.items()):
        print(f"  {iid}: " + ", ".join(f"{ch}={n}" for ch, n in sorted(chans.items())), file=out)
    if report.failed:
        print(f"NOT OK: {'; '.join(report.failed)}", file=out)
    files = report.sink_results.get("storage") or {}
    if files:
        print("session files:", file=out)
        for flavor, paths in sorted(files.items()):
            for p in paths:
                print(f"  {flavor}: {p}", file=out)
