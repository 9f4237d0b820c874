"""A cross-process lock on a file being written, naming whoever holds it.

Two processes writing one HDF5 file or Arrow stream corrupt it silently, and
HDF5's own locking only says "unable to lock file". The storage backends take
this lock before they create a file, so a second writer is stopped with an
error that names the holder's pid, host, command and since when.

The lock is ``fcntl.flock`` on ``<file>.lock`` beside the protected file. The
kernel drops it when the holder dies, so a lock file left by a killed process
is stale and the next writer simply takes it over. The holder writes who it is
into the lock file; a waiter reads that to build its error message.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_SUFFIX = ".lock"
_POLL_S = 0.02


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

    def __str__(self) -> str:
        who = f"process {self.pid}" if self.pid is not None else "an unknown process"
        where = f" on {self.host}" if self.host else ""
        cmd = f" ({self.command})" if self.command else ""
        since = f" since {self.since}" if self.since else ""
        return f"{who}{where}{cmd}{since}"


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
                      fields.get("command", ""))


def is_held(lock_path: Path) -> bool:
    """Whether some process holds the lock right now (a probe that takes nothing)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
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
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return None
                raise
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
        assert self._fd is not None
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        command = " ".join([_program(), *sys.argv[1:4]])[:200]
        text = (f"pid={os.getpid()}\nhost={socket.gethostname()}\nsince={since}\n"
                f"command={command}\n").encode()
        if os.fstat(self._fd).st_size:  # a crashed holder's record: replace it
            # only then: ext4 flushes a file truncated to 0 when it is closed, which made
            # taking and dropping a lock 0.3 ms instead of 0.03
            os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

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
