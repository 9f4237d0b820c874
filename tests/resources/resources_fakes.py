"""Test-local fake hardware: a pty line device and pyvisa-sim YAML with many dialogues.

Written for these tests only (not from any driver): a request ``Q<token>\\n`` is answered
``R<token>\\n``, so every reply names the request it belongs to.
"""

from __future__ import annotations

import os
import select
import shutil
import threading
import tty
from collections.abc import Callable
from pathlib import Path


class PtyDevice:
    """A line-oriented fake device on the master side of a pseudo-terminal.

    ``on_request(line) -> bytes | None`` may override the reply (None = no reply). Setting
    ``disconnect_on`` makes the device vanish (both pty ends closed) when a request with that
    token arrives, before answering it: a cable pulled mid-transaction.
    """

    def __init__(self, link: Path | None = None,
                 on_request: Callable[[bytes], bytes | None] | None = None) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no \n -> \r\n, before any client opens it
        self.pty_path = os.ttyname(self._slave)
        self.link = link
        if link is not None:
            tmp = link.with_name(link.name + ".new")
            tmp.unlink(missing_ok=True)
            os.symlink(self.pty_path, tmp)
            os.replace(tmp, link)  # atomic re-point, like udev does
        self.path = str(link) if link is not None else self.pty_path
        self.on_request = on_request
        self.disconnect_on: bytes | None = None
        self.requests: list[bytes] = []
        self.gone = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True, name="pty-device")
        self._thread.start()

    def _serve(self) -> None:
        buf = b""
        try:
            while not self._stop:
                ready, _, _ = select.select([self._master, self._wake_r], [], [], 1.0)
                if self._wake_r in ready or self._stop:
                    return
                if not ready:
                    continue
                try:
                    chunk = os.read(self._master, 4096)
                except OSError:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.requests.append(line)
                    if self.disconnect_on is not None and line.endswith(self.disconnect_on):
                        self._vanish()
                        return
                    reply = self._reply(line)
                    if reply:
                        os.write(self._master, reply)
        finally:
            self._close_fds()

    def _reply(self, line: bytes) -> bytes | None:
        if self.on_request is not None:
            return self.on_request(line)
        if line.startswith(b"Q"):
            return b"R" + line[1:] + b"\n"
        return None

    def _vanish(self) -> None:
        self._close_fds()
        self.gone.set()

    def _close_fds(self) -> None:
        for attr in ("_master", "_slave"):
            fd = getattr(self, attr)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, attr, -1)

    def close(self) -> None:
        self._stop = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join(5.0)
        self._close_fds()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def sim_yaml(tmp: Path, dialogues: int = 64, resources: tuple[str, ...] = ("GPIB0::5::INSTR",)
             ) -> str:
    """A pyvisa-sim file with ``Q<n>?`` -> ``R<n>`` dialogues; returns ``path@sim``.

    pyvisa-sim keeps state per file path for the whole process, so every test gets its own copy.
    """
    lines = ['spec: "1.1"', "devices:"]
    for index, _ in enumerate(resources):
        lines += [f"  dev{index}:", "    eom:", "      GPIB INSTR:", '        q: "\\n"',
                  '        r: "\\n"', "      TCPIP INSTR:", '        q: "\\n"', '        r: "\\n"',
                  "    dialogues:",
                  '      - q: "*IDN?"', f'        r: "ACME,DMM{index},SN{index},1.0"']
        for n in range(dialogues):
            lines += [f'      - q: "Q{n}?"', f'        r: "R{n}"']
    lines.append("resources:")
    for index, name in enumerate(resources):
        lines += [f"  {name}:", f"    device: dev{index}"]
    path = tmp / "sim.yaml"
    path.write_text("\n".join(lines) + "\n")
    copy = tmp / f"sim-{os.getpid()}-{id(path)}.yaml"
    shutil.copy(path, copy)
    return f"{copy}@sim"
