"""A real ser2net (Debian package) serving one serial device on a free loopback port.

Used by the tests that drive instruments over the network (``rfc2217://`` and ``socket://``)
and by the lab guide's recipe, whose configuration this writes. ser2net runs in the
foreground (``-d``) without UUCP locks (``-u``); ``chardelay: false`` stops it waiting a
character time before forwarding (60x fewer round-trips without it). Without
``kickolduser`` and with the default ``max-connections: 1``, a second client is refused while
one is connected: that is the exclusive ownership the server offers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

CONFIG = """%YAML 1.1
---
connection: &daqhub
  accepter: {accepter}tcp,127.0.0.1,{port}
  enable: on
  options:
    chardelay: false
  connector: serialdev,{device},{baud}n81,local
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (read from /proc: no probe connection,
    which would take ser2net's only connection slot)."""
    want = f"0100007F:{port:04X}"
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return any(f[1] == want and f[3] == "0A" for f in rows)


class Ser2net:
    """One ser2net process serving ``device``; ``stop()`` and ``start()`` again to restart it
    on the same port."""

    def __init__(self, device: str, directory: Path, *, rfc2217: bool = True,
                 baud: int = 9600) -> None:
        exe = shutil.which("ser2net") or shutil.which("ser2net", path="/usr/sbin:/sbin")
        if exe is None:
            raise RuntimeError("ser2net is not installed (apt-get install ser2net; .ci/run "
                               "installs it)")
        self.exe = exe
        self.device = device
        self.port = free_port()
        self.rfc2217 = rfc2217
        self.config = directory / f"ser2net-{self.port}.yaml"
        self.config.write_text(CONFIG.format(
            accepter="telnet(rfc2217)," if rfc2217 else "", port=self.port, device=device,
            baud=baud))
        self.log = directory / f"ser2net-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The pyserial URL; a pty has no modem lines, hence ``ign_set_control``."""
        if self.rfc2217:
            return f"rfc2217://127.0.0.1:{self.port}?ign_set_control"
        return f"socket://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Ser2net:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.exe, "-d", "-u", "-c", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"ser2net exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"ser2net did not listen on 127.0.0.1:{self.port} within "
                                   f"{timeout} s: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate (a second SIGTERM, then SIGKILL, if the first is ignored)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for signal_it in (proc.terminate, proc.terminate, proc.kill):
            signal_it()
            try:
                proc.wait(timeout / 3)
                return
            except subprocess.TimeoutExpired:
                continue
        proc.wait(timeout)

    def __enter__(self) -> Ser2net:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
