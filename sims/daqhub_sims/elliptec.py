"""Simulated Thorlabs Elliptec bus: several ELLx modules at their addresses on one serial line.

Written from the protocol reference only. Where the reference marks a behaviour unconfirmed
[U], the choice made here is stated next to the code so a driver author knows what a test
against this simulator does and does not prove.

Options: see :attr:`ElliptecBus.OPTIONS` (``daqhub sim models`` prints them). Two
``devices`` entries may share an address: both units then execute and their simultaneous
replies collide on the open-drain line (modelled as a bytewise wired-AND).

Choices where the reference is silent or unconfirmed [U]:

- A busy unit (moving, jogging, ``om``/``cm``/``s1``) answers every command with ``GS09``,
  ``gs`` and ``gp`` included, and executes none of them; only ``st`` is special. Busy is not
  sticky: ``gs`` after the move says ``GS00`` unless the move failed.
- Error replies (``GS03``, ``GS04``, ``GS0C``, ``GS02``) set the sticky code that the next
  ``gs`` returns and clears; ``GS00`` replies of set commands leave it alone.
- An unknown mnemonic is answered right after its two characters; following bytes start a
  new packet. A byte that cannot start a packet (not ``0``-``9``/``A``-``F``) is skipped.
- A dropped partial packet (2 s gap) sets ``01`` on the unit it was addressed to.
- ``ga``: the re-pointed unit answers only to the group address until it has handled one
  command there; its replies (and its deferred ``PO``) carry the group address.
- Rotary positions stay within one turn; ``ma`` to a target beyond travels the direct way.
- ``so`` is stored and reported by ``go`` but does not shift positions. ``fw`` at the last
  slot (``bw`` at the first) answers ``PO`` with the current slot without moving.
- ``ho`` on a multi-position slider (ELL6, ELL9) moves to slot 0 and answers ``PO00000000``
  when there, as independent clients written against real sliders expect (several agree [D];
  the manual's slider pages say ``ho`` does not apply). Its direction byte is ignored.
- ELL15 (iris): its travel, 10.5 or 11.5 mm in the reference, cannot be written in the
  whole-mm ``IN`` travel field; it reports 11 (``000B``) and moves over 0..11 mm [U].
  ``cm`` is refused (``GS03``) as on the real unit; ``ah`` (auto-home, ELL15 only) stores the
  flag and answers ``GS00``.
- Continuous jog (``sj00000000`` + ``fw``/``bw``, ELL14/16/21) answers ``PO`` when ``st``
  ends it, followed by ``st``'s ``GS00``.
- ``is`` isolates for the given minutes with no reply; the unit then reports ``06``.
- ``c1``/``c2`` (current-curve scan) are not simulated and answer ``GS03``.
- Speeds at 100 %: rotary 430 deg/s, linear 50 mm/s, sliders 100 units/s (~0.3 s a slot).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from daqhub_sims.device import Clock, SimDevice
from daqhub_sims.model_options import SimOption, with_defaults

CR = 0x0D
LF = 0x0A
ADDRESSES = "0123456789ABCDEF"
INTER_BYTE_TIMEOUT_S = 2.0

# Status codes (the protocol reference "Status / error codes").
OK = 0x00
COMM_TIMEOUT = 0x01
MECH_TIMEOUT = 0x02
COMMAND_ERROR = 0x03
VALUE_OUT_OF_RANGE = 0x04
OUT_OF_ISOLATION = 0x06
BUSY = 0x09
OUT_OF_TRAVEL = 0x0C

#: Data characters that follow each host mnemonic; the packet length is implied by it.
DATA_LENGTH: dict[str, int] = {
    "in": 0, "gs": 0, "us": 0, "ca": 1, "is": 2, "i1": 0, "i2": 0,
    "f1": 4, "b1": 4, "f2": 4, "b2": 4, "s1": 0, "s2": 0, "c1": 0, "c2": 0, "sk": 0,
    "ho": 1, "ma": 8, "mr": 8, "gp": 0, "go": 0, "so": 8, "gj": 0, "sj": 8,
    "fw": 0, "bw": 0, "gv": 0, "sv": 2, "st": 0, "ga": 1, "om": 0, "cm": 0, "ah": 1,
}

Kind = Literal["rotary", "linear", "slider", "iris"]


@dataclass(frozen=True)
class Model:
    """What the ``IN`` reply and the motion model need to know about one ELLx model."""

    name: str
    type_code: int
    kind: Kind
    travel: int  # IN travel field: mm or degrees
    pulses: int  # IN pulses field: per revolution (rotary) or per mm (linear); 0 for sliders
    motors: int
    full_speed: float  # position units per second at 100 % velocity (not in the manual [U])
    slots: int = 0
    continuous_jog: bool = False  # ELL14/16/21: `sj00000000` + `fw` jogs until `st`
    optimize: bool = True  # `om` supported
    clean: bool = True  # `cm` supported (not on ELL15)
    auto_home: bool = False  # `ah` supported (ELL15 only)

    def capabilities(self) -> list[str]:
        """What a lab can ask of this model beyond moves, in protocol mnemonics' terms."""
        found: list[str] = [self.kind]
        if self.kind == "slider":
            found.append(f"{self.slots} slots")
        if self.continuous_jog:
            found.append("continuous jog")
        if self.optimize:
            found.append("optimize (om)")
        if self.clean:
            found.append("clean (cm)")
        if self.auto_home:
            found.append("auto-home (ah)")
        found.append(f"{self.motors} motor{'s' if self.motors > 1 else ''}")
        return found

    @property
    def pulses_per_unit_range(self) -> int:
        """Pulses of the whole travel (linear) or of one turn (rotary)."""
        if self.kind == "rotary":
            return self.pulses
        return self.travel * self.pulses

    @property
    def units(self) -> str:
        """Unit of the ``IN`` travel field."""
        return "deg" if self.kind == "rotary" else "mm"


SLOT_PITCH = 0x1F
_ROTARY_DEG_S = 430.0  # ELL14 spec max speed [U]
_LINEAR_MM_S = 50.0  # no source; a plausible piezo-linear figure
_SLIDER_UNITS_S = 100.0  # ~0.3 s per slot; no source


def _rotary(name: str, code: int, pulses: int, continuous: bool) -> Model:
    return Model(name, code, "rotary", 360, pulses, 2, _ROTARY_DEG_S * pulses / 360.0,
                 continuous_jog=continuous)


def _linear(name: str, code: int, travel: int) -> Model:
    return Model(name, code, "linear", travel, 1024, 2, _LINEAR_MM_S * 1024)


#: Every model of the protocol reference's scaling table, by the name a lab writes.
MODELS: dict[str, Model] = {
    # Sliders: pulses field 0, positions are multiples of the 31-unit slot pitch.
    # Motor counts of the sliders are not in the reference [U]: ELL6 1, ELL9 2.
    "ELL6": Model("ELL6", 0x06, "slider", 31, 0, 1, _SLIDER_UNITS_S, slots=2, optimize=False),
    "ELL6B": Model("ELL6B", 0x06, "slider", 31, 0, 1, _SLIDER_UNITS_S, slots=2,
                   optimize=False),
    "ELL9": Model("ELL9", 0x09, "slider", 31, 0, 2, _SLIDER_UNITS_S, slots=4, optimize=False),
    # ELL14: 143360 pulses/rev as seen on real units (the manual table says 262144).
    "ELL14": _rotary("ELL14", 0x0E, 143360, True),
    # ELL15 iris: 1000 pulses per mm; travel 10.5/11.5 mm reported as 11 [U]; motor count [U].
    "ELL15": Model("ELL15", 0x0F, "iris", 11, 1000, 1, _LINEAR_MM_S * 1000, clean=False,
                   auto_home=True),
    "ELL16": _rotary("ELL16", 0x10, 65536, True),
    "ELL17": _linear("ELL17", 0x11, 28),
    "ELL18": _rotary("ELL18", 0x12, 262144, False),  # manual value; one driver says 143360 [U]
    "ELL20": _linear("ELL20", 0x14, 60),
    "ELL21": _rotary("ELL21", 0x15, 65536, True),
}

_FACTORY_PERIODS = (0x00BD, 0x008B)  # I1 example of the manual: ~78 kHz fwd, ~106 kHz back


def hex32(value: int) -> str:
    """Signed 32-bit two's complement as 8 upper-case hex characters."""
    return f"{value & 0xFFFFFFFF:08X}"


def _signed32(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


@dataclass(eq=False)
class _Job:
    """A timed operation of one unit: a move, a continuous jog or a maintenance routine."""

    kind: Literal["move", "jog", "maintenance"]
    start: float
    end: float | None  # None: continuous jog, runs until `st`
    start_pos: int
    end_pos: int
    rate: float = 0.0  # signed units/s, continuous jog only
    failed: int | None = None  # status code the job ends with (e.g. mechanical time-out)
    reply_address: str = "0"
    outputs: list[_Output] = field(default_factory=list)


@dataclass(order=True)
class _Output:
    due: float
    seq: int
    data: bytes = field(compare=False)
    cancelled: bool = field(compare=False, default=False)


class ElliptecUnit:
    """One module on the bus: its identity, its settings and its motion state."""

    def __init__(self, model: Model, address: str, index: int) -> None:
        self.model = model
        self.address = address  # volatile (changed by `ca`)
        self.saved_address = address  # persisted by `us`
        self.serial = f"1{model.type_code:03d}{index:04d}"
        self.year = 2023
        self.firmware = "17"
        self.hardware = 0x01
        self.position = 0
        self.home_offset = 0
        self.jog_step = self._default_jog()
        self.velocity = 100
        self.periods: list[list[int]] = [list(_FACTORY_PERIODS) for _ in range(model.motors)]
        self.status = OK
        self.group_address: str | None = None
        self.isolated_until: float | None = None
        self.stalled = False
        self.auto_home = False
        self.job: _Job | None = None

    def _default_jog(self) -> int:
        if self.model.kind == "rotary":
            return self.model.pulses // 36  # 10 degrees
        if self.model.kind in ("linear", "iris"):
            return self.model.pulses  # 1 mm
        return SLOT_PITCH

    def listens_to(self) -> str:
        """Address this unit answers to now (a `ga` group address replaces its own for one op)."""
        return self.group_address if self.group_address is not None else self.address

    def busy(self, now: float) -> bool:
        return self.job is not None and (self.job.end is None or now < self.job.end)

    def position_at(self, now: float) -> int:
        job = self.job
        if job is None:
            return self.position
        if job.end is None:
            return self._wrap(job.start_pos + round(job.rate * (now - job.start)))
        if job.failed is not None or job.end <= job.start:
            return job.end_pos if now >= job.end else job.start_pos
        frac = min(1.0, max(0.0, (now - job.start) / (job.end - job.start)))
        return job.start_pos + round((job.end_pos - job.start_pos) * frac)

    def _wrap(self, pos: int) -> int:
        if self.model.kind == "rotary" and self.model.pulses:
            return pos % self.model.pulses
        return pos

    def info(self) -> str:
        m = self.model
        return (f"{m.type_code:02X}{self.serial}{self.year:04d}{self.firmware}"
                f"{self.hardware:02X}{m.travel:04X}{m.pulses:08X}")


class ElliptecBus(SimDevice):
    """The bus: a byte-stream receiver shared by all units, and the replies they schedule."""

    baudrate = 9600
    summary = "Thorlabs Elliptec ELLx bus: several modules at their addresses on one line"
    OPTIONS = (
        SimOption("devices", "0:ELL14", "ADDR:MODEL pairs, e.g. 0:ELL14,1:ELL9,2:ELL20 "
                  "(models in the table below)"),
        SimOption("speed_scale", "1", "multiplies every motion speed and divides every timed "
                  "operation (om, cm, s1)"),
        SimOption("drive_timeout", "2.5", "seconds a stalled motor drives before status 02 "
                  "(the ELL18K manual's thermal drive time-out)"),
        SimOption("stall", "", "comma-separated addresses whose moves end in a mechanical "
                  "time-out (GS02)"),
        SimOption("interim_busy", "0", "1: a timed move first answers GS09, then PO"),
        SimOption("lowercase_hex", "0", "1: accept a-f in data (default: GS04, as one driver "
                  "author reports of real units)"),
    )

    @classmethod
    def reference_tables(cls) -> list[tuple[str, list[str], list[list[str]]]]:
        rows = [[m.name, f"{m.type_code:02X}", m.kind, f"{m.travel} {m.units}", str(m.pulses),
                 ", ".join(m.capabilities())] for m in MODELS.values()]
        return [("Elliptec models (`devices=ADDR:MODEL`)",
                 ["model", "IN type", "kind", "travel", "pulses field", "capabilities"], rows)]

    def __init__(
        self, options: Mapping[str, str] | None = None, clock: Clock | None = None
    ) -> None:
        super().__init__(options, clock)
        opts = with_defaults(self.OPTIONS, self.options)
        self.speed_scale = _positive_float(opts["speed_scale"], "speed_scale")
        self.drive_timeout = _positive_float(opts["drive_timeout"], "drive_timeout")
        self.interim_busy = _flag(opts["interim_busy"], "interim_busy")
        self.lowercase_hex = _flag(opts["lowercase_hex"], "lowercase_hex")
        self.units: list[ElliptecUnit] = list(_parse_devices(opts["devices"]))
        for addr in _split(opts["stall"]):
            for unit in self._units_at(addr.upper()):
                unit.stalled = True
        self._rx = bytearray()
        self._rx_last = 0.0
        self._out: list[_Output] = []
        self._seq = itertools.count()

    # -- SimDevice contract --------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        now = self.clock.now()
        if self._rx and now - self._rx_last > INTER_BYTE_TIMEOUT_S:
            self._drop_partial(now)
        for byte in data:
            self._receive(byte, now)
        self._rx_last = now

    def read(self) -> bytes:
        out = self._out
        if not out:
            return b""
        now = self.clock.now()
        parts: list[bytes] = []
        while out and out[0].due <= now:
            item = heapq.heappop(out)
            if item.cancelled:
                continue
            parts.append(item.data)
        return b"".join(parts)

    def next_output_in(self) -> float | None:
        out = self._out
        while out and out[0].cancelled:
            heapq.heappop(out)
        if not out:
            return None
        return max(0.0, out[0].due - self.clock.now())

    # -- test helpers -------------------------------------------------------------------
    def unit(self, address: str) -> ElliptecUnit:
        """The unit whose own (volatile) address is ``address``."""
        for u in self.units:
            if u.address == address.upper():
                return u
        have = ", ".join(f"{u.address}:{u.model.name}" for u in self.units)
        raise KeyError(f"no Elliptec unit at address {address!r}; the bus has {have}")

    def power_cycle(self) -> None:
        """Units forget everything not saved with `us`: volatile addresses, jobs, errors."""
        for u in self.units:
            u.address = u.saved_address
            u.group_address = None
            u.isolated_until = None
            u.status = OK
            if u.job is not None:
                u.position = u.position_at(self.clock.now())
                u.job = None
        self._out.clear()
        self._rx.clear()

    # -- receiver -----------------------------------------------------------------------
    def _receive(self, byte: int, now: float) -> None:
        rx = self._rx
        if byte == CR or byte == LF:
            rx.clear()  # a lone <CR> resets the receive state machine; <LF> likewise
            return
        if not rx:
            if chr(byte) in ADDRESSES:
                rx.append(byte)
            return  # anything that cannot start a packet is line noise
        rx.append(byte)
        if len(rx) < 3:
            return
        mnemonic = rx[1:3].decode("latin-1")
        need = DATA_LENGTH.get(mnemonic)
        if need is None or len(rx) == 3 + need:
            address = chr(rx[0])
            data = rx[3:].decode("latin-1")
            rx.clear()
            self._dispatch(address, mnemonic, data, now)

    def _drop_partial(self, now: float) -> None:
        address = chr(self._rx[0])
        self._rx.clear()
        for unit in self._targets(address, now):
            unit.status = COMM_TIMEOUT

    def _units_at(self, address: str) -> list[ElliptecUnit]:
        return [u for u in self.units if u.address == address]

    def _targets(self, address: str, now: float) -> list[ElliptecUnit]:
        found = []
        for u in self.units:
            if u.isolated_until is not None:
                if now < u.isolated_until:
                    continue  # an isolated unit ignores the bus
                u.isolated_until = None
                u.status = OUT_OF_ISOLATION  # [U] code 06 exists; when it shows is a guess
            if u.listens_to() == address:
                found.append(u)
        # Serialised by address priority: 0 first, F last.
        found.sort(key=lambda u: ADDRESSES.index(u.address))
        return found

    def _dispatch(self, address: str, mnemonic: str, data: str, now: float) -> None:
        targets = self._targets(address, now)
        sharing = [u for u in targets if u.group_address is None]
        colliding: list[_Replies] = []
        for unit in targets:
            self._settle(unit, now)
            via_group = unit.group_address is not None
            unit.group_address = None  # a group address lasts for one operation
            replies = self._execute(unit, address, mnemonic, data, now)
            if len(sharing) > 1 and not via_group:
                colliding.append(replies)
                continue
            for due, reply_address, payload in replies:
                self._emit(due, _frame(reply_address, payload), unit.job)
        self._emit_collisions(colliding)

    def _emit_collisions(self, replies_per_unit: list[_Replies]) -> None:
        """Units sharing one address answer at once; equal-time replies garble each other."""
        for index in range(max((len(r) for r in replies_per_unit), default=0)):
            by_due: dict[float, bytes] = {}
            for replies in replies_per_unit:
                if index < len(replies):
                    due, reply_address, payload = replies[index]
                    frame = _frame(reply_address, payload)
                    by_due[due] = _wired_and(by_due[due], frame) if due in by_due else frame
            for due, frame in by_due.items():
                self._emit(due, frame, None)

    def _emit(self, due: float, frame: bytes, job: _Job | None) -> None:
        item = _Output(due, next(self._seq), frame)
        heapq.heappush(self._out, item)
        if job is not None and due > self.clock.now():
            job.outputs.append(item)

    def _settle(self, unit: ElliptecUnit, now: float) -> None:
        """Finish a job whose end time has passed."""
        job = unit.job
        if job is None or job.end is None or now < job.end:
            return
        unit.position = job.end_pos
        if job.failed is not None:
            unit.status = job.failed
        unit.job = None

    # -- commands -----------------------------------------------------------------------
    def _execute(
        self, unit: ElliptecUnit, address: str, mnemonic: str, data: str, now: float
    ) -> _Replies:
        """Replies as (due time, reply address, payload without the address)."""
        if mnemonic not in DATA_LENGTH:
            return _error(unit, address, now, COMMAND_ERROR)
        if mnemonic == "st":
            return self._stop(unit, address, now)
        if unit.busy(now):
            return [(now, address, f"GS{BUSY:02X}")]
        if data and mnemonic not in ("ca", "ga", "ho") and not self._is_hex(data):
            return _error(unit, address, now, VALUE_OUT_OF_RANGE)
        if mnemonic in ("ho", "ma", "mr", "fw", "bw"):
            return self._motion(unit, address, mnemonic, data, now)
        if mnemonic in ("f1", "b1", "f2", "b2"):
            return self._set_period(unit, address, mnemonic, data, now)
        if mnemonic in ("s1", "s2", "om", "cm"):
            return self._maintenance(unit, address, mnemonic, now)
        if mnemonic in ("ca", "ga"):
            if data not in ADDRESSES:
                return _error(unit, address, now, VALUE_OUT_OF_RANGE)
            if mnemonic == "ca":
                unit.address = data
            else:
                unit.group_address = data
            return [(now, data, "GS00")]  # answered from the new (or group) address
        if mnemonic == "is":
            minutes = int(data, 16)
            unit.isolated_until = now + 60.0 * minutes if minutes else None
            return []  # no reply while isolated [U]
        payload = self._setting(unit, mnemonic, data)
        if isinstance(payload, int):
            return _error(unit, address, now, payload)
        return [(now, address, payload)]

    def _setting(self, unit: ElliptecUnit, mnemonic: str, data: str) -> str | int:
        """Immediate commands: the reply payload, or the status code of a refusal."""
        if mnemonic == "in":
            return "IN" + unit.info()
        if mnemonic == "gs":
            code, unit.status = unit.status, OK
            return f"GS{code:02X}"
        if mnemonic == "us":
            unit.saved_address = unit.address
            return "GS00"
        if mnemonic in ("i1", "i2"):
            motor = int(mnemonic[1])
            if motor > unit.model.motors:
                return COMMAND_ERROR
            fwd, back = unit.periods[motor - 1]
            # loop on, motor off, 0x428 current counts, ramps undefined, then both periods
            return f"I{motor}10" + "0428" + "FFFF" + "FFFF" + f"{fwd:04X}{back:04X}"
        if mnemonic == "sk":
            return "GS00"
        if mnemonic == "gp":
            return "PO" + hex32(unit.position)
        if mnemonic == "go":
            return "HO" + hex32(unit.home_offset)
        if mnemonic == "so":
            unit.home_offset = _signed32(int(data, 16))  # stored only; motion ignores it [U]
            return "GS00"
        if mnemonic == "gj":
            return "GJ" + hex32(unit.jog_step)
        if mnemonic == "sj":
            step = _signed32(int(data, 16))
            if step < 0:
                return VALUE_OUT_OF_RANGE
            unit.jog_step = step
            return "GS00"
        if mnemonic == "gv":
            return f"GV{unit.velocity:02X}"
        if mnemonic == "sv":
            percent = int(data, 16)
            if percent > 100:
                return VALUE_OUT_OF_RANGE
            unit.velocity = percent
            return "GS00"
        if mnemonic == "ah" and unit.model.auto_home:
            if data not in ("0", "1"):
                return VALUE_OUT_OF_RANGE
            unit.auto_home = data == "1"
            return "GS00"
        # c1/c2 (current-curve scan) are not simulated; ah (auto-home) exists on ELL15 only.
        return COMMAND_ERROR

    def _is_hex(self, data: str) -> bool:
        digits = "0123456789ABCDEFabcdef" if self.lowercase_hex else "0123456789ABCDEF"
        return all(c in digits for c in data)

    def _set_period(
        self, unit: ElliptecUnit, address: str, mnemonic: str, data: str, now: float
    ) -> _Replies:
        motor = int(mnemonic[1])
        if motor > unit.model.motors:
            return _error(unit, address, now, COMMAND_ERROR)
        value = int(data, 16)
        index = 0 if mnemonic[0] == "f" else 1
        period = _FACTORY_PERIODS[index] if value == 0x8FFF else value & 0x0FFF
        if value >> 12 != 0x8 or period == 0:
            return _error(unit, address, now, VALUE_OUT_OF_RANGE)  # the top nibble must be 8
        unit.periods[motor - 1][index] = period
        return [(now, address, "GS00")]

    def _maintenance(self, unit: ElliptecUnit, address: str, mnemonic: str, now: float) -> _Replies:
        model = unit.model
        if mnemonic[0] == "s" and int(mnemonic[1]) > model.motors:
            return _error(unit, address, now, COMMAND_ERROR)
        if (mnemonic == "om" and not model.optimize) or (mnemonic == "cm" and not model.clean):
            return _error(unit, address, now, COMMAND_ERROR)
        # Frequency search takes seconds, optimise/clean minutes.
        seconds = (3.0 if mnemonic[0] == "s" else 60.0) / self.speed_scale
        unit.job = _Job("maintenance", now, now + seconds, unit.position, unit.position,
                        reply_address=address)
        replies: _Replies = [(now + seconds, address, "GS00")]
        if mnemonic in ("om", "cm"):
            replies.insert(0, (now, address, f"GS{BUSY:02X}"))
        return replies

    def _stop(self, unit: ElliptecUnit, address: str, now: float) -> _Replies:
        if not unit.model.continuous_jog:
            return _error(unit, address, now, COMMAND_ERROR)
        job = unit.job
        busy = unit.busy(now)
        if job is None or not busy or job.kind == "move":
            # A bounded move cannot be stopped; it still finishes with its PO.
            return [(now, address, f"GS{BUSY if busy else OK:02X}")]
        for item in job.outputs:
            item.cancelled = True
        unit.position = unit.position_at(now)
        unit.job = None
        replies: _Replies = [(now, address, "GS00")]
        if job.kind == "jog":
            # The jog's own answer comes when its motion ends; then `st` is acknowledged [U].
            replies.insert(0, (now, job.reply_address, "PO" + hex32(unit.position)))
        return replies

    def _motion(
        self, unit: ElliptecUnit, address: str, mnemonic: str, data: str, now: float
    ) -> _Replies:
        model = unit.model
        pos = unit.position
        if mnemonic == "ho":
            if model.kind != "rotary":
                # Linear stages, the iris and sliders (slot 0) home to position 0 [D].
                return self._start_move(unit, address, now, pos, 0)
            if data not in ("0", "1"):
                return _error(unit, address, now, VALUE_OUT_OF_RANGE)
            distance = (model.pulses - pos) % model.pulses if data == "0" else pos
            return self._start_move(unit, address, now, distance, 0)
        if mnemonic in ("fw", "bw"):
            sign = 1 if mnemonic == "fw" else -1
            if model.kind == "slider":
                slot = pos // SLOT_PITCH + sign
                if not 0 <= slot < model.slots:
                    return [(now, address, "PO" + hex32(pos))]  # already at the end [U]
                return self._start_move(unit, address, now, SLOT_PITCH, slot * SLOT_PITCH)
            if unit.jog_step == 0 and model.continuous_jog:
                rate = sign * model.full_speed * self._speed_factor(unit)
                unit.job = _Job("jog", now, None, pos, pos, rate=rate, reply_address=address)
                return []
            target = pos + sign * unit.jog_step
        elif mnemonic == "ma":
            target = _signed32(int(data, 16))
        else:  # mr
            target = pos + _signed32(int(data, 16))
        if model.kind == "rotary":
            # Rotary stages turn without end: positions are kept within one turn [U].
            return self._start_move(unit, address, now, abs(target - pos), target % model.pulses)
        if model.kind == "slider":
            slot = target // SLOT_PITCH if target >= 0 else -1
            if not 0 <= slot < model.slots:
                return _error(unit, address, now, OUT_OF_TRAVEL)
            target = slot * SLOT_PITCH  # the slider snaps to the slot at or below the target
        elif not 0 <= target <= model.pulses_per_unit_range:
            return _error(unit, address, now, OUT_OF_TRAVEL)
        return self._start_move(unit, address, now, abs(target - pos), target)

    def _speed_factor(self, unit: ElliptecUnit) -> float:
        return unit.velocity / 100.0 * self.speed_scale

    def _start_move(
        self, unit: ElliptecUnit, address: str, now: float, distance: int, target: int
    ) -> _Replies:
        speed = unit.model.full_speed * self._speed_factor(unit)
        replies: _Replies
        if distance > 0 and (unit.stalled or speed <= 0):
            # The motor drives until its thermal time-out, then the unit reports 02.
            end = now + self.drive_timeout
            unit.job = _Job("move", now, end, unit.position, unit.position,
                            failed=MECH_TIMEOUT, reply_address=address)
            replies = [(end, address, f"GS{MECH_TIMEOUT:02X}")]
        else:
            end = now + (distance / speed if distance else 0.0)
            unit.job = _Job("move", now, end, unit.position, target, reply_address=address)
            replies = [(end, address, "PO" + hex32(target))]
        if self.interim_busy and end > now:
            replies.insert(0, (now, address, f"GS{BUSY:02X}"))
        return replies


_Replies = list[tuple[float, str, str]]


def _error(unit: ElliptecUnit, address: str, now: float, code: int) -> _Replies:
    unit.status = code  # sticky until read with `gs`
    return [(now, address, f"GS{code:02X}")]


def _frame(address: str, payload: str) -> bytes:
    return f"{address}{payload}\r\n".encode("ascii")


def _wired_and(a: bytes, b: bytes) -> bytes:
    """Two transmitters on an open-drain line: a 0 bit from either wins; idle is all ones."""
    n = max(len(a), len(b))
    a = a.ljust(n, b"\xff")
    b = b.ljust(n, b"\xff")
    return bytes(x & y for x, y in zip(a, b, strict=True))


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_devices(spec: str) -> Iterable[ElliptecUnit]:
    entries = _split(spec)
    if not entries:
        raise ValueError("elliptec option devices= is empty; expected e.g. devices=0:ELL14,1:ELL9")
    for index, entry in enumerate(entries):
        address, sep, model_name = entry.partition(":")
        address = address.strip().upper()
        model = MODELS.get(model_name.strip().upper())
        if not sep or len(address) != 1 or address not in ADDRESSES:
            raise ValueError(f"bad elliptec device {entry!r}: expected ADDRESS:MODEL with an "
                             f"address 0-9 or A-F, e.g. 0:ELL14")
        if model is None:
            raise ValueError(f"unknown Elliptec model {model_name!r} in {entry!r}; "
                             f"known: {', '.join(MODELS)}")
        yield ElliptecUnit(model, address, index)


def _positive_float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"elliptec option {name}={text!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"elliptec option {name}={text!r} must be > 0")
    return value


def _flag(text: str, name: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"elliptec option {name}={text!r} is not a flag (use 1 or 0)")
