"""What an ELLx module is, from its `IN` reply, and how its pulses become user units.

Scaling comes from the module itself (the `IN` pulses field) because the manual
and real units disagree for some models (ELL14: manual 262144 per turn, units
report 143360; the protocol reference, "Scaling per model"). The table below
only fills in what a module leaves out: sliders report 0 pulses and move in
slots of 0x1F pulses, and a rotary or linear unit reporting 0 falls back to the
documented value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["rotary", "linear", "slider"]

#: Pulses between two slider slots (ELL6: 0x00, 0x1F; ELL9: 0x00, 0x1F, 0x3E, 0x5D) [D].
SLOT_PITCH = 0x1F


@dataclass(frozen=True)
class Model:
    name: str
    type_code: int
    kind: Kind
    #: rotary: pulses per turn; linear: pulses per mm; used only if the module reports 0
    default_pulses: int = 0
    slots: int = 0
    #: ``st`` ends a continuous jog on these models (ELL14/16/21); others answer GS03
    can_stop: bool = False

    @property
    def unit(self) -> str:
        return {"rotary": "deg", "linear": "mm", "slider": "slot"}[self.kind]


MODELS: dict[int, Model] = {m.type_code: m for m in (
    Model("ELL6", 0x06, "slider", slots=2),
    Model("ELL9", 0x09, "slider", slots=4),
    Model("ELL14", 0x0E, "rotary", default_pulses=143360, can_stop=True),
    Model("ELL15", 0x0F, "linear", default_pulses=1000),
    Model("ELL16", 0x10, "rotary", default_pulses=65536, can_stop=True),
    Model("ELL17", 0x11, "linear", default_pulses=1024),
    Model("ELL18", 0x12, "rotary", default_pulses=262144),
    Model("ELL20", 0x14, "linear", default_pulses=1024),
    Model("ELL21", 0x15, "rotary", default_pulses=65536, can_stop=True),
)}
BY_NAME: dict[str, Model] = {m.name: m for m in MODELS.values()}


@dataclass(frozen=True)
class DeviceInfo:
    """The fields of an `IN` reply (layout from the protocol reference, 30 data characters)."""

    type_code: int
    serial: str
    year: str
    firmware: str
    hardware: int
    travel: int
    pulses: int

    @property
    def model(self) -> Model | None:
        return MODELS.get(self.type_code)

    @property
    def model_name(self) -> str:
        m = self.model
        return m.name if m else f"unknown ELLx type 0x{self.type_code:02X}"

    @property
    def imperial(self) -> bool:
        return bool(self.hardware & 0x80)


#: How long a module takes to answer ``in``: a few ms, plus ~36 ms of wire time for the reply.
IN_REPLY_S = 0.1


def parse_info(data: str) -> DeviceInfo:
    """Fields of the `IN` data; raises ValueError naming the field that does not parse."""
    if len(data) < 30:
        raise ValueError(f"IN data has {len(data)} characters, the manual layout has 30")
    fields = {"type": data[0:2], "hardware": data[16:18], "travel": data[18:22],
              "pulses": data[22:30]}
    values: dict[str, int] = {}
    for name, text in fields.items():
        try:
            values[name] = int(text, 16)
        except ValueError:
            raise ValueError(f"IN field {name} {text!r} is not hex") from None
    return DeviceInfo(type_code=values["type"], serial=data[2:10], year=data[10:14],
                      firmware=data[14:16], hardware=values["hardware"],
                      travel=values["travel"], pulses=values["pulses"])


#: Motor periods are counts of this clock: frequency = 14 740 000 / period (``I1`` layout).
MOTOR_CLOCK_HZ = 14_740_000
#: ``f1``/``b1`` data: the period in the low 12 bits, top nibble 8; ``8FFF`` = factory value.
PERIOD_FLAG, FACTORY_PERIOD, MAX_PERIOD = 0x8000, 0xFFF, 0xFFE


def parse_motor_info(data: str) -> dict[str, Any]:
    """Fields of an ``I1``/``I2`` reply: loop(1) motor(1) current(4) ramp up(4) ramp down(4)
    forward period(4) backward period(4), all hex; ``FFFF`` = undefined (None here)."""
    if len(data) != 22 or any(c not in "0123456789ABCDEFabcdef" for c in data):
        raise ValueError(f"motor info {data!r} is not 22 hex characters")
    words = [int(data[i:i + 4], 16) for i in range(2, 22, 4)]
    current, up, down, forward, backward = (None if w == 0xFFFF else w for w in words)

    def hz(period: int | None) -> float | None:
        return MOTOR_CLOCK_HZ / period if period else None

    return {"loop": data[0] == "1", "motor_on": data[1] == "1",
            "current_a": None if current is None else current / 1866,
            "ramp_up": up, "ramp_down": down,
            "forward_hz": hz(forward), "backward_hz": hz(backward)}


def period_data(hz: float | None) -> str:
    """``f1``/``b1`` data for a frequency in Hz (None: the factory value, ``8FFF``)."""
    if hz is None:
        return f"{PERIOD_FLAG | FACTORY_PERIOD:04X}"
    low, high = MOTOR_CLOCK_HZ / MAX_PERIOD, float(MOTOR_CLOCK_HZ)
    if (isinstance(hz, bool) or not isinstance(hz, int | float) or not math.isfinite(hz)
            or not low <= hz <= high):
        raise ValueError(f"frequency must be {low:.0f}..{high:.0f} Hz (or None for the "
                         f"factory value), got {hz!r}")
    return f"{PERIOD_FLAG | min(MAX_PERIOD, round(MOTOR_CLOCK_HZ / hz)):04X}"


@dataclass(frozen=True)
class Scale:
    """Conversion between pulses and the axis unit (deg, mm or slot index)."""

    model: Model
    pulses_per_unit: float
    travel: int

    @classmethod
    def for_info(cls, info: DeviceInfo) -> Scale:
        model = info.model
        if model is None:
            raise ValueError(f"{info.model_name} is not a model this driver knows")
        if model.kind == "slider":
            return cls(model, float(SLOT_PITCH), model.slots)
        pulses = info.pulses or model.default_pulses
        per_unit = pulses / 360.0 if model.kind == "rotary" else float(pulses)
        return cls(model, per_unit, info.travel)

    @property
    def unit(self) -> str:
        return self.model.unit

    def to_pulses(self, value: float) -> int:
        return round(value * self.pulses_per_unit)

    def to_units(self, pulses: int) -> float:
        if self.model.kind == "slider":
            # A slider snaps to the slot whose range holds the position (0x00-0x1E -> 0, ...).
            slot = pulses // SLOT_PITCH
            return float(min(max(slot, 0), self.model.slots - 1))
        return pulses / self.pulses_per_unit

    def slot_pulses(self, slot: float) -> int:
        """Pulses of a slot index; refuses what is not a slot of this slider."""
        index = int(slot)
        if index != slot or not 0 <= index < self.model.slots:
            raise ValueError(f"{self.model.name} has slots 0..{self.model.slots - 1}, "
                             f"not {slot!r}")
        return index * SLOT_PITCH
