"""A cross-process lock on a file being written, naming whoever holds it.

Two processes writing one HDF5 file or Arrow stream corrupt it silently, and
HDF5's own locking only says "unable to lock file". The storage backends take
this lock before they create a file, so a second writer is stopped with an
error that names the holder's pid, host, command and since when.

The lock is ``fcntl.flock`` on ``<file>.lock`` beside the protected file. The
kernel drops it when the holder dies, so a lock file left by a killed process
is stale and the next writer simply takes it over. The holder writes who it is
into the lock file; a waiter reads that to build its error message.

Who "it" is: a worker process of a ``daqhub run`` (``[daqhub] workers = N``) holds
the devices of its shard, but the process to name is the run, the one a user can
stop (a worker ignores SIGTERM, and a killed one is restarted and takes the device
again). So the run gives each worker :func:`holder_for_children` in its
environment, and the worker's record names the run (its pid and command) with
the worker as detail. A process without it names itself.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_SUFFIX = ".lock"
#: Set in a worker process's environment by the run that starts it: see holder_for_children.
HOLDER_ENV = "DAQHUB_LOCK_HOLDER"
_POLL_S = 0.02
#: How long an attempt waits out probes (shared locks, see is_held) before it gives up.
_PROBE_GRACE_S = 0.5
_PROBE_RETRY_S = 0.001
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


class FileLockError(RuntimeError):
    """Another process (or another writer in this one) holds the lock of a file."""

    def __init__(self, message: str, path: Path, holder: LockHolder | None) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder


class FileExistsRefusal(FileExistsError):
    """The file to create exists already: daqhub never overwrites recorded data."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a lock, as recorded in the lock file."""

    pid: int | None
    host: str
    since: str
    command: str
    #: the worker process that holds the lock for the run ``pid`` names, e.g.
    #: "worker 2 (pid 18827)"; "" when the holder is that process itself
    via: str = ""

    def __str__(self) -> str:
        who = f"process {self.pid}" if self.pid is not None else "an unknown process"
        where = f" on {self.host}" if self.host else ""
        cmd = f" ({self.command})" if self.command else ""
        via = f" through its {self.via}" if self.via else ""
        since = f" since {self.since}" if self.since else ""
        return f"{who}{where}{cmd}{via}{since}"


def lock_path_for(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


def read_holder(lock_path: Path) -> LockHolder | None:
    """The holder recorded in a lock file, or None when there is none (yet)."""
    try:
        text = lock_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip()
    if not fields.get("pid"):
        return None
    try:
        pid: int | None = int(fields["pid"])
    except ValueError:
        pid = None
    return LockHolder(pid, fields.get("host", ""), fields.get("since", ""),
                      fields.get("command", ""), fields.get("via", ""))


def is_held(lock_path: Path) -> bool:
    """Whether some process holds the lock right now.

    ``flock`` cannot be asked without asking for a lock, so the probe takes a shared lock
    for a few microseconds. Holders take only exclusive ones, so a holder that meets a shared
    lock knows it met a probe and tries again (:func:`_take`) rather than call the file held.
    """
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _BUSY:
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class FileLock:
    """Exclusive lock on ``path`` for as long as this object holds it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.lock_path = lock_path_for(self.path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float = 0.0) -> None:
        """Take the lock, waiting at most ``timeout`` seconds (0: fail at once)."""
        if self._fd is not None:
            raise FileLockError(f"lock on {self.path} is already held by this FileLock",
                                self.path, read_holder(self.lock_path))
        start = time.monotonic()
        deadline = start + max(0.0, timeout)
        while True:
            fd = self._try_once()
            if fd is not None:
                self._fd = fd
                self._record_holder()
                return
            if time.monotonic() >= deadline:
                holder = self._wait_for_holder_record()
                waited = time.monotonic() - start
                who = holder or "another process"
                raise FileLockError(
                    f"cannot write {self.path}: it is being written by {who}"
                    f" (lock file {self.lock_path}); waited {waited:.1f} s. Stop that process or "
                    "give this run its own output directory.", self.path, holder)
            time.sleep(_POLL_S)

    def _try_once(self) -> int | None:
        """One attempt: the fd holding the lock, or None when someone else has it."""
        probes_until = time.monotonic() + _PROBE_GRACE_S
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                taken = _take(fd, probes_until)
            except BaseException:
                os.close(fd)
                raise
            if not taken:
                os.close(fd)
                return None
            # A releaser unlinks the lock file: if we locked an unlinked inode, the lock
            # protects nothing, so try again on whatever file now has the name.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _record_holder(self) -> None:
        """Write who holds the lock into the lock file. When that fails (a full disk), the
        lock is dropped and its file removed, and the error names the lock file: it said
        only "No space left on device", and left the file locked until the process ended
        (a run that could not start left its session directory behind, holding it)."""
        assert self._fd is not None
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pid, command, via = _holder_of_this_process()
        text = (f"pid={pid}\nhost={socket.gethostname()}\nsince={since}\n"
                f"command={command}\n" + (f"via={via}\n" if via else "")).encode()
        try:
            if os.fstat(self._fd).st_size:  # a crashed holder's record: replace it
                # only then: ext4 flushes a file truncated to 0 when it is closed, which made
                # taking and dropping a lock 0.3 ms instead of 0.03
                os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)
        except OSError as exc:
            self.release()
            raise OSError(exc.errno, exc.strerror, str(self.lock_path)) from exc

    def _wait_for_holder_record(self) -> LockHolder | None:
        """The holder writes its record just after locking; give it a moment to appear."""
        deadline = time.monotonic() + 0.2
        while True:
            holder = read_holder(self.lock_path)
            if holder is not None or time.monotonic() >= deadline:
                return holder
            time.sleep(_POLL_S)

    def release(self) -> None:
        """Drop the lock and remove the lock file; a no-op when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.unlink(self.lock_path)
        except FileNotFoundError:
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)


def _take(fd: int, probes_until: float) -> bool:
    """An exclusive lock on ``fd``; False when another holder has the file.

    A refusal may come from a probe (:func:`is_held`'s shared lock): then a shared lock can be
    had, and the attempt is repeated until ``probes_until``; a holder's exclusive lock refuses
    the shared one too, which ends the attempt at once.
    """
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        if time.monotonic() >= probes_until:
            return False
        time.sleep(_PROBE_RETRY_S)


def holder_for_children(role: str) -> dict[str, str]:
    """The environment to start a child process with (a worker, ``role`` "worker 2"): this
    process's, plus :data:`HOLDER_ENV` so that the locks the child takes name this process,
    the one a user can stop, with the child as detail."""
    me = {"pid": os.getpid(), "command": _command(), "role": role}
    return {**os.environ, HOLDER_ENV: json.dumps(me)}


def _holder_of_this_process() -> tuple[int, str, str]:
    """Pid, command and "via" detail of a lock record this process writes: its parent's,
    when the parent named itself in :data:`HOLDER_ENV` (see :func:`holder_for_children`).

    A value naming another process than the parent (inherited by a grandchild, or left
    in a shell) is ignored: the record would name a process that does not hold the lock.
    """
    try:
        parent = json.loads(os.environ.get(HOLDER_ENV) or "null")
        pid, command, role = int(parent["pid"]), str(parent["command"]), str(parent["role"])
    except (ValueError, TypeError, KeyError):
        return os.getpid(), _command(), ""
    if pid != os.getppid():
        return os.getpid(), _command(), ""
    return pid, command[:200], f"{role} (pid {os.getpid()})"[:200]


def _command() -> str:
    """What the record's ``command`` says: the program and its first arguments."""
    return " ".join([_program(), *sys.argv[1:4]])[:200]


def _program() -> str:
    """How this process was started, as its user typed it (``python -m daqhub``, not the
    ``__main__.py`` in argv)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name.endswith(".__main__"):
        return f"python -m {spec.name.removesuffix('.__main__')}"
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"


def claim_new_file(path: Path | str, timeout: float = 0.0) -> FileLock:
    """Lock ``path`` for writing and make sure it does not exist yet.

    The lock comes first: creating (and so truncating) a file another process is
    writing would destroy its data before any check could object.
    """
    lock = FileLock(path)
    lock.acquire(timeout)
    if lock.path.exists():
        lock.release()
        raise FileExistsRefusal(f"{lock.path} exists already; daqhub never overwrites recorded "
                                "data. Start a new session (or move the file away).")
    return lock


def remove_stale(lock_path: Path) -> bool:
    """Remove a lock file whose writer is gone; False when it is held (or already gone).

    The lock is taken before the file is removed, so a writer that starts meanwhile
    keeps its lock: only a lock nobody holds disappears.
    """
    if not lock_path.name.endswith(LOCK_SUFFIX) or not lock_path.exists():
        return False
    lock = FileLock(lock_path.with_name(lock_path.name[: -len(LOCK_SUFFIX)]))
    try:
        lock.acquire()
    except (FileLockError, OSError):
        return False
    lock.release()
    return True


def remove_stale_locks(flavor_dir: Path) -> list[Path]:
    """Stale lock files of killed runs in the sessions under a flavor's directory, removed.

    A killed writer leaves ``<file>.lock`` behind; nothing holds it any more, but a user
    who lists the directory cannot tell, so the next run (and ``daqhub inspect``) clears
    them. Sessions are ``<flavor_dir>/<session>/`` with files one or two levels below.
    """
    found = [*flavor_dir.glob(f"*/*{LOCK_SUFFIX}"), *flavor_dir.glob(f"*/*/*{LOCK_SUFFIX}")]
    return [p for p in found if remove_stale(p)]
