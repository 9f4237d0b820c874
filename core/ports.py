"""``daqhub ports``: what serial ports and VISA resources this machine offers."""

from __future__ import annotations

import json
import warnings
from typing import Any


def serial_ports() -> list[dict[str, Any]]:
    from serial.tools import list_ports

    out = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        usb = (f"usb:{p.vid:04x}:{p.pid:04x}:{p.serial_number or ''}"
               if p.vid is not None and p.pid is not None else "")
        out.append({"device": p.device, "description": p.description or "",
                    "usb_identity": usb, "manufacturer": p.manufacturer or "",
                    "serial_number": p.serial_number or ""})
    return out


def visa_resources(backend: str) -> dict[str, Any]:
    import pyvisa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rm = pyvisa.ResourceManager(backend)
            try:
                found = list(rm.list_resources())
            finally:
                rm.close()
        return {"backend": backend, "resources": found, "error": ""}
    except Exception as exc:  # a missing VISA library is information, not a crash
        return {"backend": backend, "resources": [], "error": f"{type(exc).__name__}: {exc}"}


def list_ports(backends: list[str] | None, as_json: bool) -> int:
    serial = serial_ports()
    visa = [visa_resources(b) for b in (backends or ["@py", "@ivi"])]
    if as_json:
        print(json.dumps({"serial": serial, "visa": visa}, indent=2))
        return 0
    print("serial ports:")
    if not serial:
        print("  (none found; simulators: sim://elliptec, sim://esp300, sim://newport1830c)")
    for p in serial:
        extra = f"  [{p['usb_identity']}]" if p["usb_identity"] else ""
        print(f"  {p['device']:<20} {p['description']}{extra}")
    for v in visa:
        print(f"VISA {v['backend']}:")
        if v["error"]:
            print(f"  not available: {v['error'].splitlines()[0][:160]}")
        elif not v["resources"]:
            print("  (no resources found)")
        for r in v["resources"]:
            print(f"  {r}")
    return 0
