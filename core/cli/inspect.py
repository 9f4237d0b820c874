"""``daqhub inspect PATH``: what a session (or one data file) holds, and a plot of it.

The summary lists, per file, its instruments and channels with their kind,
dtype, shape and unit, the number of rows, the time span and rate, and gaps
(intervals between samples much larger than the channel's median spacing),
then the versions and the lab file the run used. Files are read by
:mod:`daqhub.datafiles`, which says what a killed writer left behind.

``--plot out.png`` draws each channel headless (matplotlib's Agg canvas, no
display needed): scalars over time, spectra as their mean over time (the
last spectrum when lengths vary), images as the mean of the last frames.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..datafiles import (
    DATA_SUFFIXES,
    DEFAULT_GAP_FACTOR,
    MAX_PLOTTED_CHANNELS,
    ChannelReport,
    FileReport,
    find_data_files,
    iso_time,
    read_file,
    session_dirs,
)
from ..records import is_record_file
from .args import number_above, output_file_problem, path_named

PLOT_DPI = 90
#: the least room, in pixels, left of every axis's tick labels and unit
PLOT_EDGE_PX = 4

# --- the summary --------------------------------------------------------------------


def summarize(path: Path, dirs: Sequence[Path] | None = None) -> list[FileReport]:
    """Every data file ``path`` names, read; ``dirs``: its session's directories when the
    caller has them already. Each session is placed once, not once per file."""
    located: dict[Path, Any] = {}
    return [read_file(p, located) for p in find_data_files(path, dirs)]


def to_json(path: Path, reports: Sequence[FileReport], gap_factor: float) -> dict[str, Any]:
    sessions: dict[str, dict[str, Any]] = {}
    for r in reports:
        s = sessions.setdefault(r.session_id, {"session_id": r.session_id, "versions": {},
                                               "lab_config": "", "instruments": {}, "files": []})
        s["versions"].update(r.versions)
        s["lab_config"] = s["lab_config"] or r.lab_config
        s["instruments"].update(r.instruments)
        s["files"].append(r.to_dict(gap_factor))
    return {"path": str(path), "sessions": list(sessions.values())}


def format_text(summary: dict[str, Any], root: Path) -> str:
    lines: list[str] = []
    for s in summary["sessions"]:
        lines.append(f"session {s['session_id'] or '(unknown)'}")
        lines.append(f"  files ({len(s['files'])}):")
        channels: list[dict[str, Any]] = []
        for f in s["files"]:
            lines.append(f"    {_relative(Path(f['path']), root)}  {f['format']}  {f['status']}")
            lines.extend(f"      ! {n}" for n in f["notes"])
            channels.extend({**c, "flavor": f["flavor"] or "-"} for c in f["channels"])
        if channels:
            lines.extend(_channel_table(channels))
        if s["versions"]:
            lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in
                                                    sorted(s["versions"].items())))
        if s["instruments"]:
            lines.append("  instruments:")
            lines.extend(f"    {iid}: {json.dumps(block)}" for iid, block in
                         sorted(s["instruments"].items()))
        if s["lab_config"]:
            lines.append("  lab file:")
            lines.extend(f"    | {line}" for line in s["lab_config"].rstrip("\n").splitlines())
        lines.append("")
    return "\n".join(lines)


def _relative(p: Path, root: Path) -> str:
    base = root if root.is_dir() else root.parent
    try:
        return str(p.relative_to(base))
    except ValueError:
        return str(p)


def _channel_table(channels: list[dict[str, Any]]) -> list[str]:
    header = ["flavor", "instrument", "channel", "kind", "dtype", "shape", "unit", "rows",
              "first (UTC)", "span s", "rate Hz", "gaps"]
    rows = []
    for c in sorted(channels, key=lambda c: (c["flavor"], c["instrument"], c["channel"])):
        shape = "x".join("?" if d is None else str(d) for d in c["shape"]) or "-"
        rate = f"{c['rate_hz']:.4g}" if c["rate_hz"] else "-"
        rows.append([c["flavor"], c["instrument"], c["channel"], c["kind"], c["dtype"], shape,
                     c["unit"] or "-", str(c["rows"]), c["first"] or "-",
                     f"{c['span_s']:.3f}", rate, str(c["gap_count"])])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]
    for c in channels:
        name = f"{c['flavor']} {c['instrument']}.{c['channel']}".lstrip("- ")
        for g in c["gaps"]:
            out.append(f"    gap in {name}: {g['duration_s']:.3f} s from {g['start']} "
                       f"(after row {g['after_row']})")
        if c["gap_count"] > len(c["gaps"]):
            out.append(f"    ... {c['gap_count'] - len(c['gaps'])} more gap(s) in {name}")
        if c["out_of_order"]:
            out.append(f"    {name}: {c['out_of_order']} timestamp(s) earlier than the one "
                       "before")
        out.extend(f"    {name}: {n}" for n in c["notes"])
    return out


# --- the plot -----------------------------------------------------------------------


def plot_path_problem(out: Path) -> str | None:
    """Why a plot cannot be written to ``out`` (None: it can), asked before any file is
    read: a format matplotlib does not write, or a place no file can be written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    formats = FigureCanvasAgg.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in formats:
        return (f"the file name must end in one of {', '.join('.' + f for f in sorted(formats))}"
                f", not {out.suffix or 'nothing'!r}")
    return output_file_problem(out, force=True)


def plot(reports: Sequence[FileReport], out: Path) -> list[str]:
    """Draw every channel with data into one PNG; return notes on what was left out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    channels = [(r, c) for r in reports for c in r.channels if c.rows > 0]
    notes = []
    if len(channels) > MAX_PLOTTED_CHANNELS:
        notes.append(f"plotted the first {MAX_PLOTTED_CHANNELS} of {len(channels)} channels")
        channels = channels[:MAX_PLOTTED_CHANNELS]
    starts = [int(c.timestamps.min()) for _, c in channels]
    t0 = min(starts) if starts else 0
    cols = 1 if len(channels) <= 4 else 2
    rows = max(1, math.ceil(len(channels) / cols))
    height = 2.8 * rows + 0.8
    width = 7 * cols + 3 * (cols == 1)
    # measured and saved at one dpi: a label placed while drawing at another dpi is off by
    # the ratio, so a fit measured at 100 dpi could still cut a unit saved at 90
    fig = Figure(figsize=(width, height), dpi=PLOT_DPI)
    # fixed margins in inches (room for tick labels and the unit on the y axis): constrained
    # layout took two thirds of the time of a 20-channel plot
    fig.subplots_adjust(left=1.0 / width, right=1 - 0.3 / width, top=1 - 0.95 / height,
                        bottom=0.45 / height, hspace=0.6, wspace=1.2 / 7)
    FigureCanvasAgg(fig)
    if not channels:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no data", ha="center", va="center")
        ax.set_axis_off()
    for i, (report, channel) in enumerate(channels):
        ax = fig.add_subplot(rows, cols, i + 1)
        _draw(ax, fig, report, channel, t0)
    sessions = sorted({r.session_id for r in reports if r.session_id})
    fig.suptitle(f"session {', '.join(sessions) or '(unknown)'}"
                 + (f"\nt = 0 at {iso_time(t0)}" if t0 else ""), y=1 - 0.15 / height, va="top")
    _fit_left_margin(fig)
    fig.savefig(out, dpi=PLOT_DPI)
    return notes


def _fit_left_margin(fig: Any) -> None:
    """Widen the left margin when wide tick labels push a unit off the figure: the fixed
    margin suits most values, and measuring once is far cheaper than constrained layout."""
    renderer = fig.canvas.get_renderer()
    short = max((PLOT_EDGE_PX - box.x0 for ax in fig.axes
                 if (box := ax.get_tightbbox(renderer)) is not None and box.x0 < PLOT_EDGE_PX),
                default=0.0)
    if short:
        width_px = fig.get_figwidth() * fig.dpi
        fig.subplots_adjust(left=min(0.45, fig.subplotpars.left + short / width_px))


def _draw(ax: Any, fig: Any, report: FileReport, channel: ChannelReport, t0: int) -> None:
    spec = channel.spec
    data = channel.load()
    title = f"{report.flavor + ' ' if report.flavor else ''}{channel.instrument}.{spec.name}" \
        + (f" [{spec.unit}]" if spec.unit else "")
    if spec.kind == "scalar":
        assert data.t_ns is not None and data.y is not None
        t = (data.t_ns - t0) / 1e9
        if spec.dtype == "bool":
            ax.step(t, data.y.astype(np.int8), where="post", linewidth=0.8)
        else:
            ax.plot(t, data.y, linewidth=0.8)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(spec.unit or spec.name)
    elif spec.kind == "spectrum":
        assert data.axis is not None and data.spectrum is not None
        ax.plot(data.axis, data.spectrum, linewidth=0.8)
        ax.set_xlabel(spec.axis_unit or "axis")
        ax.set_ylabel(spec.unit or spec.name)
        title += f" ({data.note})"
    else:
        assert data.image is not None
        im = ax.imshow(data.image, aspect="auto", interpolation="nearest")
        fig.colorbar(im, ax=ax, label=spec.unit or spec.name)
        title += f" ({data.note})"
    ax.set_title(title, fontsize=9)


# --- command line -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daqhub inspect",
        description="Summarize a session directory or one data file (HDF5, Arrow stream, "
                    "Parquet): instruments, channels, counts, time span, units, gaps and the "
                    "lab file used. Files left by a killed writer are read as far as they go.",
        epilog="Exit status: 0 every file read (some perhaps recovered after a crash), 1 "
               "nothing found, or a file unreadable or damaged (a channel of it unreadable), "
               "2 bad arguments.")
    parser.add_argument("path", type=path_named("path"),
                        help="a session id (looked up under ./data), either flavor's session "
                             "directory (both flavors are read), any directory above "
                             "sessions, or one data file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--plot", type=path_named("plot file"), metavar="OUT.png",
                        help="also draw every channel over time into this PNG (headless)")
    parser.add_argument("--gap-factor", type=number_above(1.0, "gap factor"),
                        default=DEFAULT_GAP_FACTOR, metavar="F",
                        help="a gap is an interval F times the median spacing or more, F > 1 "
                             f"(default {DEFAULT_GAP_FACTOR:g})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 all files read (possibly recovered), 1 nothing found or a file
    unreadable or damaged (a channel of it unreadable), 2 bad arguments."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help or a usage error: the caller decides how to exit
        return int(exc.code or 0)
    path = Path(args.path)
    plot_to = None if args.plot is None else Path(args.plot)
    problem = plot_to and plot_path_problem(plot_to)
    if problem:
        print(f"daqhub inspect: --plot {args.plot}: {problem}", file=sys.stderr)
        return 2
    if path.is_file():
        what = ("the session's records (metadata, settings snapshots, points tables)"
                if is_record_file(path) else "" if path.suffix in DATA_SUFFIXES
                else f"not a data file ({', '.join(DATA_SUFFIXES)})")
        if what:
            print(f"daqhub inspect: {path} is {what}; inspect its session directory "
                  f"({path.parent}) or a data file in it", file=sys.stderr)
            return 2
    dirs = session_dirs(path)
    if not path.exists() and not dirs:
        print(f"daqhub inspect: {path} does not exist (give a data file, a session directory "
              "or a session id found under ./data)", file=sys.stderr)
        return 1
    reports = summarize(path, dirs)
    if not reports:
        print(f"daqhub inspect: no data files ({', '.join(DATA_SUFFIXES)}) under {path}",
              file=sys.stderr)
        return 1
    summary = to_json(path, reports, args.gap_factor)
    if plot_to is not None:
        summary["plot"] = str(plot_to)
        summary["plot_notes"] = plot([r for r in reports if r.status != "unreadable"], plot_to)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_text(summary, dirs[0].parent.parent if dirs else path))
        if plot_to is not None:
            print(f"plot written to {plot_to}")
            for note in summary["plot_notes"]:
                print(f"  ! {note}")
    return 1 if any(r.status in ("unreadable", "damaged") for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
