"""ESP300 poll rate: one axis at 19,200 baud with wire-speed emulation (issue 17 item 7).

driver: ``read()`` of a v2 ``newport.esp300`` instrument (the generated toolkit class on the
        core's shared port): ``TP?`` and ``MD?``; the error FIFO only when an error can be
        waiting (see daqhub_newport.esp300_axis), so an idle poll is two exchanges.
raw:    the same two exchanges by hand on a pyserial ``serial_for_url`` of an identical
        simulated controller; ``raw+TB?`` adds the ``TB?`` read the driver used to do on
        every poll.
Both controllers emulate the wire (10 bit times per byte at 19,200 baud), so most of a poll
is bytes on the line. Prints polls per second and ``ratio=<driver time per poll / raw>`` as
its last line.

    python bench/esp300_poll_rate.py [--polls 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import serial

import daqhub_sims
from daqhub.host import default_host
from daqhub.resources import SerialPortManager
from daqhub_newport.esp300 import Esp300Axis
from daqhub_sims.scripted import scripted_instrument

URL = "sim://esp300?baud=1&name={}"  # two controllers: one per client


def timed(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    daqhub_sims.install()
    host = default_host()
    manager = SerialPortManager(host.serial_url_packages())
    axis = scripted_instrument(host, "newport.esp300", "v2",
                               manager.port(URL.format("driver"), **Esp300Axis.serial_settings),
                               {"axis": 1})
    axis.connect()
    raw = serial.serial_for_url(URL.format("raw"), baudrate=19200, timeout=1.0)

    def ask(command: bytes) -> None:
        raw.write(command)
        if not raw.read_until(b"\r\n").endswith(b"\r\n"):
            raise RuntimeError(f"no reply to {command!r}")

    def raw_poll() -> None:
        ask(b"1TP?\r")
        ask(b"1MD?\r")

    def raw_poll_tb() -> None:
        raw_poll()
        ask(b"TB?\r")

    driver_s, raw_s, old_s = [], [], []
    try:
        for _ in range(args.rounds):
            driver_s.append(timed(axis.read, args.polls))
            raw_s.append(timed(raw_poll, args.polls))
            old_s.append(timed(raw_poll_tb, args.polls))
    finally:
        axis.close()
        raw.close()
        manager.close_all()
    d, r, o = (statistics.median(x) for x in (driver_s, raw_s, old_s))
    print(f"driver poll: {d * 1e3:.1f} ms ({1 / d:.0f} Hz); raw TP?+MD?: {r * 1e3:.1f} ms "
          f"({1 / r:.0f} Hz); raw TP?+MD?+TB?: {o * 1e3:.1f} ms ({1 / o:.0f} Hz)")
    print(f"ratio={d / r:.2f}")


if __name__ == "__main__":
    main()
