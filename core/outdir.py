"""Paths a lab gives, and whether an output directory can be used: the one check
``validate`` and storage share.

Permission bits lie (root passes every ``os.access`` test; a read-only mount or a full
quota refuses what the bits allow), so the check creates and removes a temporary file in
the directory, or in its nearest existing ancestor when it is still to be created.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def resolved(p: Path) -> Path:
    """``p`` absolute, with ``~`` and symlinks resolved (it need not exist)."""
    return Path(os.path.abspath(p.expanduser())).resolve(strict=False)


def lab_path(base_dir: Path, given: str) -> Path:
    """A path a lab file gives (``output_dir``, a ``file.yaml@sim`` backend, a TLS file):
    ``~`` is the user's home, as in a shell; a relative path is relative to the lab file's
    directory. Joined unexpanded, ``~/data`` became a directory named ``~`` beside the lab
    file."""
    return base_dir / os.path.expanduser(given)  # Path.expanduser raises for ~nobody


def unwritable(d: Path) -> str | None:
    """Why ``d`` cannot be created or written, if it cannot (nothing is left behind)."""
    target = resolved(d)
    probe_dir = target
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            return "no part of the path exists"
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return (f"{probe_dir} is not a directory" if probe_dir == target else
                f"cannot be created: {probe_dir} is a file, not a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=".daqhub-probe-", dir=probe_dir)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return (f"is not writable ({reason})" if probe_dir == target else
                f"cannot be created: {probe_dir} is not writable ({reason})")
    os.close(fd)
    os.unlink(name)
    return None
