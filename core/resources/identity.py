"""One key per device, whatever the lab file calls it.

A lab may reach one device under several names: a ``/dev/serial/by-id/`` symlink and the
``/dev/ttyUSB0`` it points to, ``socket://LocalHost:4001`` and ``socket://127.0.0.1:4001``,
two spellings of one simulated bus, ``GPIB::5`` and ``GPIB0::5::INSTR``. Two names of one device
must share one resource (one gate, one lock record), or their transactions interleave on the
wire. The managers and the lab-file validator key resources by :func:`serial_identity` and
:func:`visa_identity`, and nothing else decides what "the same device" means. A VISA ``ASRL``
resource on a local device path is that device's serial port under another name
(:func:`visa_serial_identity`): it has the port's owner, and the port's worker process.

What a name is opened with stays the name the lab gave (a stable by-id symlink is how an
adapter that re-enumerates is found again); only the key is canonical.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import serial
from pyvisa import rname

if TYPE_CHECKING:
    from .serial import PortInfo

# Settings that describe the line itself; two users of one port must agree on them.
LINE_SETTINGS = ("baudrate", "bytesize", "parity", "stopbits", "rtscts", "xonxoff", "dsrdtr")
#: What a port is opened with when neither the instrument type nor the lab says otherwise.
LINE_DEFAULTS: dict[str, Any] = {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1,
                                 "rtscts": False, "xonxoff": False, "dsrdtr": False}


def line_settings(type_defaults: Mapping[str, Any], block: Mapping[str, Any]) -> dict[str, Any]:
    """What an instrument asks its port for: its type's serial settings, with the line
    settings its lab block gives instead."""
    settings = dict(type_defaults)
    settings.update({k: block[k] for k in LINE_SETTINGS if k in block})
    return settings


def line_of(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The line settings in effect (defaults filled in), for comparing two users of a port."""
    return {k: settings.get(k, LINE_DEFAULTS[k]) for k in LINE_SETTINGS}

_NETWORK_SCHEMES = ("socket", "rfc2217")


@dataclass(frozen=True)
class UsbIdentity:
    """A USB-serial adapter named by what it is rather than where the kernel put it."""

    vid: int
    pid: int
    serial_number: str | None = None

    @classmethod
    def parse(cls, name: str) -> UsbIdentity | None:
        """``usb:0403:6015[:SERIAL]`` -> identity; anything else -> None."""
        if not name.lower().startswith("usb:") or "://" in name:
            return None
        parts = name.split(":", 3)
        if len(parts) < 3:
            raise ValueError(f"USB port name {name!r}: expected usb:VID:PID[:SERIAL] (hex ids)")
        try:
            vid, pid = int(parts[1], 16), int(parts[2], 16)
        except ValueError:
            raise ValueError(f"USB port name {name!r}: VID and PID must be hex, "
                             f"e.g. usb:0403:6015:DK0AHAJZ") from None
        serial_number = parts[3] if len(parts) == 4 and parts[3] else None
        return cls(vid, pid, serial_number)

    def matches(self, info: PortInfo) -> bool:
        return (info.vid == self.vid and info.pid == self.pid
                and (self.serial_number is None or info.serial_number == self.serial_number))

    def __str__(self) -> str:
        tail = f":{self.serial_number}" if self.serial_number else ""
        return f"usb:{self.vid:04x}:{self.pid:04x}{tail}"


def is_local_path(name: str) -> bool:
    """A device node (``/dev/ttyUSB0``, ``COM3``) rather than a URL or a USB identity."""
    return "://" not in name and not name.lower().startswith("usb:")


def _host_key(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    if host in ("localhost", "localhost.localdomain"):
        return "127.0.0.1"  # what the resolver gives for it; resolving others could block
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def _network_identity(scheme: str, url: str) -> str:
    """Host and port only: the query (``?logging=debug``, ``?timeout=3``) changes how the
    link is driven, not which device it reaches."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r}: bad port number: {exc}") from None
    if not parts.hostname or port is None:
        raise ValueError(f"{url!r}: expected {scheme}://HOST:PORT")
    host = _host_key(parts.hostname)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _handler_identity(scheme: str, url: str, packages: Iterable[str]) -> str | None:
    """Ask the URL handler serving ``scheme`` which device ``url`` reaches.

    A package named by ``daqhub_serial_url_packages`` may give its ``protocol_<scheme>``
    module a ``canonical_url(url) -> str`` (daqhub-sims does, for ``sim://``); the core
    imports that module exactly as pyserial would, so it never imports a plugin by name.
    """
    for package in packages:
        try:
            module = importlib.import_module(f"{package}.protocol_{scheme}")
        except ImportError:
            continue
        canonical = getattr(module, "canonical_url", None)
        if callable(canonical):
            return str(canonical(url))
        return None
    return None


def serial_identity(name: str, packages: Iterable[str] | None = None) -> str:
    """The key of the device a serial port name reaches.

    Device paths are resolved (symlinks, ``/dev/serial/by-id``, ``by-path``); ``socket://``
    and ``rfc2217://`` keep host and port, the host lower-cased (``localhost`` counts as
    ``127.0.0.1``; other names are not resolved, which could block); other URLs are reduced
    by their handler when it can say (``packages`` defaults to pyserial's handler list), else
    kept with the scheme lower-cased. ``usb:VID:PID[:SERIAL]`` is its own key: which node it
    is depends on what is plugged in when the port opens.
    """
    name = name.strip()
    usb = UsbIdentity.parse(name)
    if usb is not None:
        return str(usb)
    if "://" in name:
        scheme, rest = name.split("://", 1)
        scheme = scheme.lower()
        url = f"{scheme}://{rest}"
        if scheme in _NETWORK_SCHEMES:
            return _network_identity(scheme, url)
        found = _handler_identity(scheme, url, serial.protocol_handler_packages
                                  if packages is None else packages)
        return found or url
    if os.sep in name or name.startswith("."):
        return os.path.realpath(name)
    return name  # COM3 and the like


def visa_identity(name: str) -> str:
    """pyvisa's normal form (``GPIB::5`` -> ``GPIB0::5::INSTR``), with a LAN host made
    canonical like a socket's and a serial device path resolved like a port's."""
    try:
        parsed = rname.parse_resource_name(name.strip())
    except rname.InvalidResourceName as exc:
        raise ValueError(f"malformed VISA resource name {name!r}: {exc}") from exc
    host = getattr(parsed, "host_address", None)
    if isinstance(host, str) and host:
        parsed.host_address = _host_key(host)  # type: ignore[attr-defined]
    board = getattr(parsed, "board", None)
    if parsed.interface_type == "ASRL" and isinstance(board, str) and board.startswith("/"):
        parsed.board = os.path.realpath(board)  # type: ignore[attr-defined]
    return str(parsed)


def normalize_backend(backend: str) -> str:
    """One spelling per VISA backend: ``@sim`` style names lower-cased, YAML paths made absolute.

    pyvisa-sim keeps its state per YAML path string, so two spellings of one file would be two
    simulated instruments; a bare ``x.yaml`` means ``x.yaml@sim``.
    """
    backend = backend.strip()
    if not backend:
        return ""
    if backend.startswith("@"):
        return backend.lower()
    path, at, library = backend.rpartition("@")
    if not at:
        path, library = backend, ("sim" if backend.endswith((".yaml", ".yml")) else "")
    path = os.path.normpath(os.path.abspath(path))
    return f"{path}@{library}" if library else path


def visa_serial_identity(name: str, backend: str) -> str | None:
    """The :func:`serial_identity` of the local device a VISA ``ASRL`` resource opens
    (``ASRL/dev/ttyUSB0::INSTR`` through ``@py``), else None.

    Such a resource is the serial port of that device under another name: a daqhub process
    that opens it through VISA and another that opens it as ``port = "/dev/ttyUSB0"`` would
    interleave on one line, so both take the port's ownership record and are placed as one
    device. None for other interfaces, for a numbered board (``ASRL1``: which device that is
    only the VISA library knows) and on a simulated backend (``@sim`` opens no device).
    """
    if normalize_backend(backend).endswith("@sim"):
        return None
    try:
        parsed = rname.parse_resource_name(name.strip())
    except rname.InvalidResourceName as exc:
        raise ValueError(f"malformed VISA resource name {name!r}: {exc}") from exc
    board = getattr(parsed, "board", None)
    if parsed.interface_type != "ASRL" or not isinstance(board, str) or not os.path.isabs(board):
        return None
    return serial_identity(board)
