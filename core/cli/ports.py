"""``daqhub ports``: what serial ports and VISA resources this machine offers, and who holds
each serial port (a daqhub process from its lock record, another program from ``/proc``)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..resources.identity import serial_identity
from ..resources.ownership import held_devices, holder
from ..resources.visa import visa_error_text


def _openers(device: str) -> list[str]:
    """Processes with ``device`` open, as "pid N (command)" (Linux ``/proc``; other systems
    and other users' processes that cannot be read give nothing)."""
    out: list[str] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) != device:  # the kernel gives the resolved path
                    continue
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace").strip()
            except OSError:
                continue
            out.append(f"pid {entry.name} ({cmd[:80] or '?'})")
            break
    return out


def in_use(device: str) -> str:
    """Who holds a port: "" when nobody does."""
    identity = serial_identity(device)
    found = holder(identity)
    if found is not None:
        return f"daqhub {found}"
    return ", ".join(_openers(identity))


def serial_ports(extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    from serial.tools import list_ports

    out = []
    seen = set()
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        usb = (f"usb:{p.vid:04x}:{p.pid:04x}:{p.serial_number or ''}"
               if p.vid is not None and p.pid is not None else "")
        seen.add(serial_identity(p.device))
        out.append({"device": p.device, "description": p.description or "",
                    "usb_identity": usb, "manufacturer": p.manufacturer or "",
                    "serial_number": p.serial_number or "", "in_use": in_use(p.device)})
    # ports the system does not list (ptys, named ones) but a daqhub process holds or asked for
    for device in [*extra, *held_devices()]:
        if os.path.exists(device) and serial_identity(device) not in seen:
            seen.add(serial_identity(device))
            out.append({"device": device, "description": "", "usb_identity": "",
                        "manufacturer": "", "serial_number": "", "in_use": in_use(device)})
    return out


def visa_resources(backend: str) -> dict[str, Any]:
    """The resources a backend sees; ``backend`` as lab files write it (``pkg:file@sim`` too)."""
    import pyvisa

    from ..config import resolve_visa_backend

    resolved, why = resolve_visa_backend(backend, Path.cwd())
    if why:
        return {"backend": backend, "resources": [], "error": why}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rm = pyvisa.ResourceManager(resolved)
            try:
                found = list(rm.list_resources())
            finally:
                rm.close()
        return {"backend": backend, "resources": found, "error": ""}
    except Exception as exc:  # a missing VISA library is information, not a crash
        return {"backend": backend, "resources": [], "error": visa_error_text(exc)}


def not_a_device(path: str) -> str | None:
    """Why ``path`` cannot be a port (None: it exists; what kind of node is the system's to
    say when it is opened, and a test's stand-in device is a plain file)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be looked at: {exc}"
    return None


def list_ports(backends: list[str] | None, as_json: bool, devices: Sequence[str] = ()) -> int:
    """Exit status 0, or 1 when a device asked about is not one."""
    serial = serial_ports(devices)
    visa = [visa_resources(b) for b in (backends or ["@py", "@ivi"])]
    missing = {d: why for d in devices if (why := not_a_device(d)) is not None}
    if as_json:
        print(json.dumps({"serial": serial, "visa": visa, "not_devices": missing}, indent=2))
        return 1 if missing else 0
    print("serial ports:")
    if not serial:
        print("  (none found; simulators: sim://elliptec, sim://esp300, sim://newport1830c)")
    for p in serial:
        extra = f"  [{p['usb_identity']}]" if p["usb_identity"] else ""
        print(f"  {p['device']:<20} {p['description']}{extra}")
        print(f"  {'':<20} in use by {p['in_use']}" if p["in_use"] else f"  {'':<20} free")
    for device, why in missing.items():
        print(f"  {device:<20} {why}")
    for v in visa:
        print(f"VISA {v['backend']}:")
        if v["error"]:
            print(f"  not available: {v['error']}")
        elif not v["resources"]:
            print("  (no resources found)")
        for r in v["resources"]:
            print(f"  {r}")
    return 1 if missing else 0
