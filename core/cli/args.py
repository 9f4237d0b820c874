"""Argument types the commands share: a number argparse refuses with a clear message, so a
value that cannot mean anything (``--duration 0``, ``nan``, a negative interval) never
starts a run that behaves as if it had not been given; and the output file a command
writes (``migrate -o``, ``new -o``): whether it can be written, and writing it whole."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..outdir import unwritable

if TYPE_CHECKING:
    from ..config import Problem


def number_above(lowest: float, what: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number greater than ``lowest``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value <= lowest:
            raise argparse.ArgumentTypeError(f"{what} must be a finite number above "
                                             f"{lowest:g}, got {text}")
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


#: a length of time in seconds, > 0
seconds = number_above(0.0, "seconds")


def path_named(what: str) -> Callable[[str], str]:
    """An argparse ``type``: a path that is not empty. ``Path("")`` is the current
    directory, so an empty argument (an unset shell variable, ``""``) would quietly mean
    "here" instead of the file the user meant to name."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"an empty string is no {what}; give its path")
        return text
    parse.__name__ = what
    return parse


def output_file_problem(path: Path, *, force: bool = False) -> str | None:
    """Why a command cannot write its output file at ``path`` (None: it can), asked before
    the command does its work, so nothing is done for a file that cannot be written."""
    if path.is_dir():
        return f"{path} is a directory; give a file name"
    if path.exists() and not force:
        return f"{path} exists; use --force to overwrite it (nothing written)"
    if not path.parent.is_dir():
        return f"{path.parent} is not an existing directory (nothing written)"
    # where write_whole makes its temporary file; a file made and removed there is the
    # answer (os.access says yes to root in /proc, where no file can be made)
    folder = Path(os.path.realpath(path)).parent
    if why := unwritable(folder):
        return f"directory {folder} {why} (nothing written)"
    return None


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: into a temporary file beside it,
    synced, then renamed over it. Written in place, a full disk part way through left the
    user's file truncated (``migrate -o lab.toml --force`` destroyed the lab it read); now
    a failure leaves ``path`` as it was and raises the OSError. A symlink is written
    through, as writing in place did."""
    from ..storage import replace_whole  # the rule, written once; imported when writing

    target = Path(os.path.realpath(path))

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:  # the text as it is
            if target.exists():  # keep the file's permissions, as writing in place did
                shutil.copymode(target, tmp)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    replace_whole(target, write)


def print_problems(heading: str, problems: Sequence[Problem], out: TextIO | None = None
                   ) -> None:
    """A lab's problems as the commands print them: the heading, then one per line."""
    out = out or sys.stderr
    print(heading, file=out)
    for p in problems:
        print(f"  {p}", file=out)
