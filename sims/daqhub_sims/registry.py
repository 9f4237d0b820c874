"""Simulated device models by name, and the process-wide table of live endpoints.

A ``sim://`` URL names a *line*, not a connection: every ``serial_for_url`` of the same URL in
one process reaches the same endpoint and so the same device state, as every open of
``/dev/ttyUSB0`` reaches the same physical bus. A test gets that endpoint with
:func:`endpoint` to turn fault knobs or reach the device object.

URL form: ``sim://<model>?<option>=<value>&...``. Options are the device's own (e.g.
``devices=0:ELL14,1:ELL9``) except the line options below, which set the endpoint's fault
knobs whenever a URL carrying them is opened and are not part of the line's identity:

``latency``  seconds added before each reply;
``baud``     ``1``: emulate wire speed at the device's baud rate, ``0``: off;
``name``     names the instance: ``sim://elliptec?name=bench&devices=...`` and later
             ``sim://elliptec?name=bench`` reach the same line.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from daqhub_sims.device import Clock, SimDevice
from daqhub_sims.endpoint import Endpoint
from daqhub_sims.model_options import SimOption

DeviceFactory = Callable[[Mapping[str, str] | None, Clock | None], SimDevice]

#: Model name -> "module:attribute", imported on first use so a model module that is missing
#: or broken only affects its own name.
_MODELS: dict[str, str | DeviceFactory] = {
    "elliptec": "daqhub_sims.elliptec:ElliptecBus",
    "esp300": "daqhub_sims.esp300:ESP300",
    "newport1830c": "daqhub_sims.newport1830c:Newport1830C",
}
#: The models daqhub-sims itself ships (the others come through :data:`MODEL_GROUP`).
BUILT_IN_MODELS = tuple(sorted(_MODELS))

#: Options of the line rather than the device, taken by every model (see the module docstring).
LINE_OPTION_SPECS = (
    SimOption("latency", "0", "seconds added before each reply"),
    SimOption("baud", "0", "1: bytes travel at the device's baud rate, both ways"),
    SimOption("name", None, "names the line, so a later sim://MODEL?name=N reaches the same one"),
)
LINE_OPTIONS = frozenset(o.name for o in LINE_OPTION_SPECS)

_lock = threading.Lock()
_endpoints: dict[str, Endpoint] = {}
_identities: dict[str, dict[str, str]] = {}  # canonical URL -> device options it was made with


class UnknownModelError(LookupError):
    pass


#: Entry-point group through which other distributions add simulated models
#: (``acme = "daqhub_acme_sim:AcmeSim"``), so ``sim://acme`` works without importing them.
MODEL_GROUP = "daqhub_sims.models"
_discovered = False
#: model name -> every "module:attribute (distribution)" that claims it, when more than one
#: does: such a name makes no device (which one a user meant is anybody's guess)
_clashes: dict[str, list[str]] = {}


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    from importlib.metadata import entry_points

    claims: dict[str, set[str]] = {}
    for ep in entry_points(group=MODEL_GROUP):
        name = ep.name.lower()
        dist = ep.dist.name if ep.dist is not None else "?"
        claims.setdefault(name, set()).add(f"{ep.value} ({dist})")
        if name in BUILT_IN_MODELS:
            claims[name].add(f"{_MODELS[name]} (daqhub-sims)")
        _MODELS.setdefault(name, ep.value)
    _clashes.update({name: sorted(c) for name, c in claims.items() if len(c) > 1})


def models() -> list[str]:
    """Names accepted by :func:`create` and as the host part of a ``sim://`` URL."""
    _discover()
    return sorted(_MODELS)


def register_model(name: str, factory: str | DeviceFactory) -> None:
    """Add a model: a ``"module:attribute"`` path or a callable ``(options, clock)``."""
    _MODELS[name.lower()] = factory


def model_factory(name: str) -> DeviceFactory:
    """What makes a device of model ``name``: usually its :class:`SimDevice` subclass."""
    _discover()
    factory = _MODELS.get(name.lower())
    clash = _clashes.get(name.lower())
    if clash:
        raise UnknownModelError(
            f"simulated device {name!r} is registered more than once: {'; '.join(clash)}; "
            "uninstall one of these distributions or rename its model"
        )
    if factory is None:
        raise UnknownModelError(
            f"unknown simulated device {name!r}; known: {', '.join(models())}"
        )
    if isinstance(factory, str):
        module_name, _, attribute = factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UnknownModelError(
                f"simulated device {name!r} is registered as {factory} but its module "
                f"cannot be imported: {exc}"
            ) from exc
        factory = getattr(module, attribute)
    return factory


def declared_options(factory: DeviceFactory) -> tuple[SimOption, ...]:
    """The options a model declares, for ``daqhub validate`` and ``daqhub sim models``: the
    ``OPTIONS`` of its class (where its devices check them), or of a factory function (set as
    its attribute: ``make.OPTIONS = Device.OPTIONS``). Read, never made: a factory is not
    called to see what its device declares (a device made there was never closed, and a
    factory that blocks hung validate). Empty: the model declares none and reads its own,
    as one written from the old ``daqhub new-plugin`` template does, so it takes what it is
    given."""
    return tuple(getattr(factory, "OPTIONS", ()))


def create(
    name: str, options: Mapping[str, str] | None = None, clock: Clock | None = None
) -> SimDevice:
    """A fresh device of model ``name`` (not registered anywhere)."""
    return model_factory(name)(options, clock)


@dataclass(frozen=True)
class SimUrl:
    """A parsed ``sim://`` URL."""

    model: str
    device_options: dict[str, str]
    line_options: dict[str, str]

    @property
    def canonical(self) -> str:
        """The line's identity: model plus either its name or its sorted device options."""
        name = self.line_options.get("name")
        query = {"name": name} if name else self.device_options
        text = urlencode(sorted(query.items()), safe=":,")
        return f"sim://{self.model}" + (f"?{text}" if text else "")


def parse_url(url: str) -> SimUrl:
    parts = urlsplit(url)
    if parts.scheme.lower() != "sim":
        raise ValueError(f"not a sim:// URL: {url!r}")
    model = (parts.netloc or parts.path.lstrip("/")).lower()
    if not model:
        raise ValueError(f"sim:// URL names no device: {url!r}; known: {', '.join(models())}")
    device: dict[str, str] = {}
    line: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        target = line if key in LINE_OPTIONS else device
        if key in target:
            raise ValueError(f"option {key!r} given twice in {url!r}")
        target[key] = value
    return SimUrl(model, device, line)


def canonical_url(url: str) -> str:
    return parse_url(url).canonical


def endpoint(url: str, clock: Clock | None = None) -> Endpoint:
    """The live endpoint behind ``url``, created on first use.

    ``clock`` is the device's clock; it must be given on first use (asking for a manual
    clock on a line that already runs on another one is an error). Line options in ``url``
    (``latency``, ``baud``) are applied to the endpoint's faults every time.
    """
    parsed = parse_url(url)
    key = parsed.canonical
    with _lock:
        found = _endpoints.get(key)
        if found is None:
            found = Endpoint(create(parsed.model, parsed.device_options, clock), key)
            _endpoints[key] = found
            _identities[key] = parsed.device_options
        elif parsed.device_options and parsed.device_options != _identities[key]:
            raise ValueError(
                f"{key} already exists with options {_identities[key]}; "
                f"{url!r} asks for {parsed.device_options}"
            )
        elif clock is not None and found.device.clock is not clock:
            raise ValueError(
                f"{key} already exists with another clock; pass the clock on first use "
                f"(or call registry.reset() first)"
            )
    _apply_line_options(found, parsed.line_options, url)
    return found


def endpoints() -> dict[str, Endpoint]:
    """A snapshot of the live endpoints by canonical URL."""
    with _lock:
        return dict(_endpoints)


def reset() -> None:
    """Forget every endpoint and fail its open handles (test isolation)."""
    with _lock:
        retired = list(_endpoints.values())
        _endpoints.clear()
        _identities.clear()
    for ep in retired:
        ep.close()


def _apply_line_options(ep: Endpoint, options: Mapping[str, str], url: str) -> None:
    if "latency" in options:
        try:
            ep.faults.latency = float(options["latency"])
        except ValueError as exc:
            raise ValueError(f"bad latency in {url!r}: {exc}") from None
    if "baud" in options:
        value = options["baud"].lower()
        if value not in ("0", "1", "true", "false", "on", "off"):
            raise ValueError(f"bad baud={options['baud']!r} in {url!r}; use baud=1 or baud=0")
        ep.faults.baud_emulation = value in ("1", "true", "on")
