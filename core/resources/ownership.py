"""Who owns a device across processes: the lock record a daqhub process keeps for each port.

The operating system refuses a second exclusive open of a serial port (pyserial's
``exclusive=True`` takes ``flock`` on the device; ``TIOCEXCL`` makes the kernel refuse any
further ``open`` by an unprivileged process), but its refusal does not say who holds the port.
So a daqhub process also holds a :class:`~.filelock.FileLock` on a record named for the
device's identity (:mod:`.identity`); the record says pid, host, command and since when (a
worker's names the ``daqhub run`` that started it: :mod:`.filelock`), and the kernel drops the
lock when the process dies, so a record left by a killed process is stale and simply taken
over. A VISA ``ASRL`` resource on a local device takes the record of that device's port.

Where the record lives: beside the device when its directory is writable and is not under
``/dev`` (daqhub never writes into ``/dev``), else in the runtime directory
``$DAQHUB_LOCK_DIR`` (default ``<tmp>/daqhub-locks``, world-writable with the sticky bit so
the processes of every user of the machine see each other), as ``<identity, %-quoted>.lock``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

from .errors import ResourceBusyError
from .filelock import LOCK_SUFFIX, FileLock, FileLockError, LockHolder, is_held, read_holder

LOCK_DIR_ENV = "DAQHUB_LOCK_DIR"


def lock_dir(create: bool = True) -> Path:
    """The runtime directory of port records (created world-writable and sticky)."""
    path = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "daqhub-locks")
    if create and not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        try:
            path.chmod(0o1777)
        except OSError:  # made by someone else meanwhile, or a file system without modes
            pass
    return path


def record_path(identity: str) -> Path:
    """Where the lock record of the device with this identity lives (see the module doc)."""
    if identity.startswith(os.sep):
        parent = os.path.dirname(identity)
        if not (parent + os.sep).startswith("/dev/") and os.access(parent, os.W_OK):
            return Path(identity + LOCK_SUFFIX)
    return lock_dir() / (quote(identity, safe="") + LOCK_SUFFIX)


def claim(identity: str, port: str, what: str = "serial port") -> FileLock:
    """Hold the record of ``identity`` for this process, or raise naming who holds it.

    ``port`` is the name this process asked for and ``what`` the kind of resource it named
    (a VISA ``ASRL`` resource claims its device's record too: :mod:`.visa`)."""
    target = record_path(identity)
    lock = FileLock(target.with_name(target.name.removesuffix(LOCK_SUFFIX)))
    try:
        lock.acquire()
    except FileLockError as exc:
        holder = str(exc.holder) if exc.holder else None
        device = f" (device {identity})" if identity != port else ""
        raise ResourceBusyError(
            f"{what} {port}{device} is in use by {holder or 'another daqhub process'} "
            f"(lock record {lock.lock_path}); stop that process or give this lab another port",
            resource=port, holder=holder) from None
    return lock


def holder(identity: str) -> LockHolder | None:
    """The daqhub process that holds the device now, if one does."""
    path = record_path(identity)
    return read_holder(path) if is_held(path) else None


def held_devices() -> dict[str, LockHolder | None]:
    """Identity -> holder for every live record in the runtime directory."""
    directory = lock_dir(create=False)
    out: dict[str, LockHolder | None] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob(f"*{LOCK_SUFFIX}")):
        if is_held(path):
            out[unquote(path.name.removesuffix(LOCK_SUFFIX))] = read_holder(path)
    return out
