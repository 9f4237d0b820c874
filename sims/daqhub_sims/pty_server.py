"""Serve a simulated device on a pseudo-terminal, so any program can open ``/dev/pts/N``.

Unplugging the line closes the master: the client then gets the errors of a vanished USB
adapter (docs/architecture.md, "Library behaviour the code relies on"). Plugging it back
in creates a *new* pty, whose number the
kernel picks (it is often, not always, the same). Give ``link=`` to get a stable symlink that
always points at the current pty, like socat's ``link=``; it is removed while unplugged, so a
reopen fails with ``ENOENT`` as for a vanished ``/dev/ttyUSB0``. The link may replace an old
symlink (one a killed server left) but nothing else, and only a link pointing at this
server's pty is removed: a mistyped ``--link`` must not cost a user a file.

A pty server forwards every byte its line sends, whether or not a client holds the pty open
(the master cannot tell): another transport sharing the line (``sim://``, a TCP server) may
then miss replies. One host per line, as with real hardware.
"""

from __future__ import annotations

import errno
import os
import select
import tty
from pathlib import Path

from daqhub_sims.bridge import Bridge
from daqhub_sims.device import SimDevice
from daqhub_sims.endpoint import Endpoint

_READ_CHUNK = 4096


class PtyServer(Bridge):
    """``with PtyServer(device_or_endpoint) as pty: serial.Serial(pty.path)``."""

    def __init__(self, target: SimDevice | Endpoint, link: str | os.PathLike[str] | None = None):
        super().__init__(target, "pty-server")
        self.link = Path(link) if link is not None else None
        self.path = ""  # /dev/pts/N of the current (or last) pty
        self._master = -1
        self._slave = -1

    def __enter__(self) -> PtyServer:
        super().__enter__()
        return self

    def _link_up(self) -> None:
        master, slave = os.openpty()
        # A fresh pty echoes and maps \n to \r\n until the client's open sets raw mode; the
        # device must never see its own replies, so go raw before anything is written.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.path = os.ttyname(slave)
        self._label = f"pty-server {self.path}"
        if self.link is not None:
            try:
                _point(self.link, self.path)
            except BaseException:
                self._link_down()  # the pty: the link is not ours
                raise

    def _link_down(self) -> None:
        if self.link is not None and _points_at(self.link, self.path):
            self.link.unlink()
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def _poll_fds(self) -> list[tuple[int, int]]:
        if self._master < 0:
            return []
        mask = select.POLLIN | (select.POLLOUT if self._pending else 0)
        return [(self._master, mask)]

    def _on_event(self, fd: int, events: int) -> None:
        if events & select.POLLIN:
            try:
                data = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                data = b""
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: no slave open; we hold one, so unexpected
                    raise
                data = b""
            if data:
                self._deliver(data)
        if events & select.POLLOUT:
            self._pump_out()

    def _send(self, data: bytes) -> int:
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0  # the client is not reading; keep the rest until POLLOUT

    def _has_peer(self) -> bool:
        return self._master >= 0


def _point(link: Path, target: str) -> None:
    """Make ``link`` a symlink to ``target`` in one rename (a client never finds it missing
    while it moves); ValueError if ``link`` is something else, which it must not destroy."""
    if link.exists() and not link.is_symlink():
        raise ValueError(f"{link} exists and is not a symlink; the pty's link must be a new "
                         "path or an old link")
    tmp = link.with_name(f"{link.name}.{os.getpid()}.tmp")
    tmp.symlink_to(target)
    try:
        tmp.replace(link)
    except BaseException:
        tmp.unlink()
        raise


def _points_at(link: Path, target: str) -> bool:
    try:
        return os.readlink(link) == target
    except OSError:  # gone, or no symlink
        return False
