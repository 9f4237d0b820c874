"""``daqhub scan PORT``: the modules on an Elliptec bus, and lab-file blocks to paste.

Contributed through ``daqhub_cli_commands`` like any plugin's command. The scan itself is
:mod:`.discovery` (``in`` to every address); this module only opens the port through the
core's serial manager, as a run would, and prints. Two modules on one address both answer
and their replies collide on the open-drain line: when the collision leaves damaged bytes,
that address is reported as a collision (exit 1), with the manual's remedy, and gets no
block. Two modules of one model can merge into one well-formed reply instead, which no scan
can tell from one module (:mod:`.discovery`); an address 0 that answers gets a note saying
so, 0 being every module's factory address. A bus where nothing answers exits 1 too: an
unpowered bus, the wrong port or too short a ``--timeout`` look like that, and a script
must not take it for a clear bus.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from daqhub.cli.args import seconds
from daqhub.driver import DriverError
from daqhub.host import default_host
from daqhub.resources import ResourceError, SerialPortManager
from daqhub.specs import CliCommand
from daqhub.tomlwrite import value

from .discovery import DEFAULT_SCAN_TIMEOUT_S, BusScan, discover
from .frames import SERIAL_SETTINGS
from .models import DeviceInfo

#: 1: the bus is not as a lab needs it (an address collision, or no module answered)
EXIT_OK, EXIT_BUS, EXIT_PORT = 0, 1, 2
#: every module's address as it leaves the factory (the protocol reference, "Link")
FACTORY_ADDRESS = "0"


def blocks(scan: BusScan, port: str, flavor: str) -> str:
    """One ``[[<flavor>.instruments]]`` block per identified module of a known model."""
    out = []
    for address, info in sorted(scan.found.items()):
        if info.model is None:
            continue
        name = info.model_name.lower()
        out.append(f"[[{flavor}.instruments]]\n"
                   f"id = {value(f'{name}_{address.lower()}')}\n"
                   f"type = {value(f'elliptec.{name}')}\n"
                   f"port = {value(port)}\n"
                   f"address = {int(address, 16)}\n")
    return "\n".join(out)


def _travel(info: DeviceInfo) -> str:
    model = info.model
    if model is None:
        return str(info.travel)
    if model.kind == "slider":
        return f"{model.slots} slots"
    return f"{info.travel} {model.unit}"


def report(scan: BusScan, port: str, flavor: str, out: TextIO) -> int:
    """Print the table, the collisions and the blocks; the exit code."""
    print(f"{port}: {len(scan.found)} module(s) answered", file=out)
    if scan.found:
        print(f"  {'address':<8}{'model':<24}{'serial':<10}travel", file=out)
        for address, info in sorted(scan.found.items()):
            print(f"  {address:<8}{info.model_name:<24}{info.serial:<10}{_travel(info)}",
                  file=out)
    for address, owner in sorted(scan.in_use.items()):
        print(f"  address {address}: in use by instrument {owner!r} (not asked)", file=out)
    for address, what in sorted(scan.damaged.items()):
        print(f"  COLLISION at address {address}: {what}. Two or more modules answer on this "
              f"address; connect them one at a time and give each its own address "
              f"(change_address, then save_user_data)", file=out)
    if FACTORY_ADDRESS in scan.found:
        print(f"  note: address {FACTORY_ADDRESS} is every module's factory address; two "
              f"modules of one model left on it can answer as one (their replies merge), so "
              f"give each its address with only that module connected", file=out)
    nothing = not (scan.found or scan.damaged or scan.in_use)
    if nothing:
        print("  no module answered: check that the modules have power, that this is the "
              "port of their bus, and --timeout (a slow link may need more)", file=out)
    text = blocks(scan, port, flavor)
    if text:
        print(f"\n# lab-file blocks for the modules above ({flavor}); ids are suggestions\n",
              file=out)
        print(text, file=out, end="")
    return EXIT_BUS if scan.damaged or nothing else EXIT_OK


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="daqhub scan",
        description="Ask every address (0-F) of an Elliptec bus who is there: prints address, "
                    "model, serial and travel of each module and lab-file blocks ready to "
                    "paste. Two modules on one address are flagged when their replies collide "
                    "into damaged bytes; two of the same model often answer as one module "
                    "(their replies merge, with a serial neither has), which no scan can tell "
                    "apart: set addresses with one module connected at a time. Exit 0: "
                    "modules answered, no collision; 1: an address collision, or no module "
                    "answered; 2: bad arguments, or the port could not be used.")
    parser.add_argument("port", help="serial port, socket:// or rfc2217:// URL, or sim:// URL")
    parser.add_argument("--flavor", choices=("v2", "v4"), default="v4",
                        help="flavor of the printed blocks (default v4)")
    parser.add_argument("--timeout", type=seconds, default=DEFAULT_SCAN_TIMEOUT_S, metavar="S",
                        help=f"seconds to wait for each address, above 0 (default "
                             f"{DEFAULT_SCAN_TIMEOUT_S})")
    args = parser.parse_args(argv)
    manager = SerialPortManager(default_host().serial_url_packages())
    try:
        result = discover(manager.port(args.port, **SERIAL_SETTINGS), args.timeout)
    except (DriverError, ResourceError, OSError, ValueError) as exc:
        print(f"daqhub scan: {args.port}: {exc}", file=sys.stderr)
        return EXIT_PORT
    finally:
        manager.close_all()
    return report(result, args.port, args.flavor, sys.stdout)


def command() -> CliCommand:
    return CliCommand("scan", "list the modules on an Elliptec bus and print lab-file blocks "
                              "for them (daqhub scan --help)", main)

