"""Newport 1830-C optical power meter: the driver both flavors are made from.

Units: the ``power`` channel is declared in the lab file's ``units``. A script may still
change the meter's units (``set_units``: the front panel and :meth:`power` follow), but the
channel keeps its declared unit: while they differ, a poll switches the meter to the channel's
unit for its ``D?`` and back afterwards, all in one transaction. dB and REL depend on the
reference stored in the meter, so converting a reading afterwards would not be possible.

What the meter is set to is a fact about the meter, not about one instrument object: two
instruments may name the same meter (a v2 and a v4 one while a lab migrates, each with its
own channel unit). So it lives in a :class:`MeterState` shared per port. Such blocks must
agree on the :data:`METER_SETTINGS` they give: each would set them for both, so ``daqhub
validate`` refuses blocks that differ (:func:`.plugin.daqhub_validate_config`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Mapping
from typing import Any

from daqhub.driver import (
    Arg,
    Command,
    Parameter,
    Sample,
    Session,
    Transaction,
    command,
    parse_reply,
)
from daqhub.driver.lines import integer, number
from daqhub.measurement import ChannelSpec, MetaValue
from daqhub.specs import InstrumentContext

from .meter1830c_protocol import (
    FILTER_CODES,
    FILTER_NAMES,
    RANGES,
    UNIT_CODES,
    UNIT_NAMES,
    WAVELENGTH_NM,
    begin,
    clear_status,
    echo_off,
    filter_command,
    from_busy_spell,
    is_query,
    parse_reading,
    query,
    query_with_status,
    range_command,
    read_status,
    reading_flags,
    set_command,
    status_error,
    units_command,
    wavelength_command,
    whole_nm,
)

log = logging.getLogger(__name__)

#: The lab-file keys that set the meter itself on connect (``W``, ``R``, ``F``, ``A``), so
#: two blocks on one meter must agree on them. ``units`` is not one: it is a block's channel
#: unit, which each poll switches the meter to for its reading (:class:`MeterState`).
METER_SETTINGS = ("wavelength_nm", "range", "filter", "attenuator")


class MeterState:
    """What one physical meter is set to, shared by every instrument on its port.

    ``units`` is None when unknown (a raw command may have changed them); a poll then sets
    the channel's unit and leaves it. ``shown`` is the unit a poll switched to and could not
    switch back from (it failed in between): the next transaction switches back first, so a
    script's ``set_units`` is not undone by one bad reply. ``busy``: the last poll's reading
    dated from a spell without readings (the meter busy, or held until connect ran it), so
    the next is flagged too until the meter has a new reading
    (:func:`~.meter1830c_protocol.from_busy_spell`). Changed only inside
    transactions (under the port lock); the lock makes ``units`` visible across the threads
    that run them.
    """

    KEY = "daqhub_newport.1830c.state"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._units: str | None = None
        self.shown: str | None = None
        self.busy = False

    @property
    def units(self) -> str | None:
        with self._lock:
            return self._units

    @units.setter
    def units(self, value: str | None) -> None:
        with self._lock:
            self._units = value


def _flag(text: str) -> bool:
    return integer(0, 1)(text) == 1


def _channels(config: Mapping[str, Any]) -> list[ChannelSpec]:
    return [ChannelSpec("power", "scalar", config.get("units", "W"),
                        description="optical power reading (D?)")]


class Meter1830c(Session):
    """A Newport 1830-C (PowerMeter capability) on RS-232.

    Values: the wavelength is whole nanometres of at most four digits (``Wnnnn``), checked
    before sending (and by ``daqhub validate``); which of those the meter takes depends on
    its detector head (400-1100 nm for a silicon one): it refuses the rest itself, with a
    parameter error (status bit 0), raised as a DriverError.
    """

    type_name = "newport.1830c"
    description = "Newport 1830-C optical power meter (power in W, dB, dBm or REL)"
    channels = staticmethod(_channels)
    config_schema: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "units": {"type": "string", "enum": list(UNIT_CODES), "default": "W",
                      "description": "unit of the power channel, set on the meter on connect"},
            "wavelength_nm": {"type": "integer", "minimum": WAVELENGTH_NM[0],
                              "maximum": WAVELENGTH_NM[1],
                              "description": "calibration wavelength set on connect (W)"},
            "range": {"type": "integer", "minimum": RANGES.start, "maximum": RANGES.stop - 1,
                      "description": "0 = auto range, 1 (most gain) .. 8 (least), set on connect"},
            "filter": {"type": "string", "enum": list(FILTER_CODES),
                       "description": "averaging: slow (16 readings), medium (4), fast (none)"},
            "attenuator": {"type": "boolean", "description": "attenuator on/off (A1/A0)"},
            "reply_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 30,
                              "default": 1.0, "description": "seconds to wait for a reply line"},
        },
        "required": [],
    }
    capabilities = ("PowerMeter", "Readable")
    #: the meter's RS-232 link: 9600 8N1, no handshake
    serial_settings = {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1,
                       "rtscts": False, "read_timeout": 1.0}

    power = Parameter("D?", parse=number, setting=False,
                      doc="the reading in the meter's current units (see units)")
    units = Parameter("U?", parse=lambda t: UNIT_NAMES[integer(1, 4)(t)],
                      doc="the meter's units: W, dB, dBm or REL")
    wavelength = Parameter("W?", "W{}", parse=lambda t: float(integer(*WAVELENGTH_NM)(t)),
                           format=whole_nm, unit="nm", kind=float, range=WAVELENGTH_NM,
                           doc="calibration wavelength, a whole number")
    current_range = Parameter("R?", parse=integer(1, 8),
                              doc="the range in use (1..8), also while auto-ranging")
    filter_speed = Parameter("F?", parse=lambda t: FILTER_NAMES[integer(1, 3)(t)],
                             doc="averaging: slow (16 readings), medium (4) or fast (none)")
    attenuator = Parameter("A?", "A{}", parse=_flag, format=lambda on: str(int(on)), kind=bool)
    zero = Parameter("Z?", "Z{}", parse=_flag, format=lambda on: str(int(on)), kind=bool,
                     doc="on: the next reading becomes an offset subtracted from later ones")
    running = Parameter("G?", "G{}", parse=_flag, format=lambda on: str(int(on)), kind=bool,
                        doc="on: taking readings (G1, set on connect); off: hold (G0), the "
                            "reading frozen")
    store_reference = Command("S", doc="the current reading becomes the dB/REL reference")

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.channel_units = self.options.units
        self.state = self.resource.shared(MeterState.KEY, MeterState)
        self.identity = {"model": "1830-C"}

    @property
    def meter_units(self) -> str | None:
        """The units the meter is set to (what :meth:`power` returns); None if unknown."""
        return self.state.units

    def exchange(self, io: Any, command: str, reply: bool) -> str | None:
        """A query's reply, or a set command whose status byte is checked."""
        begin(io, self.options.reply_timeout, self.id, command)
        if reply:
            self.switch_back(io)
            return query(io, self.id, command)
        set_command(io, self.id, command)
        return None

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> Transaction[None]:
        """Echo off, check the meter answers, clear old errors, take it out of hold, set the
        lab's settings. A meter left in hold (``G0``) shows the reading of when it stopped:
        polls flag it ``busy`` until the meter has a new one."""
        s = self.options

        def connect(io: Any) -> None:
            begin(io, s.reply_timeout, self.id, "E0")
            if echo_off(io, self.id):
                log.info("%s: the meter was in echo mode (E1); switched it off (E0)", self.id)
            clear_status(io)
            parse_reply(integer(1, 4), query(io, self.id, "U?"), self.id, "U?")  # a 1830-C?
            if not parse_reply(_flag, query(io, self.id, "G?"), self.id, "G?"):
                log.info("%s: the meter was in hold (G0); set it running (G1)", self.id)
                set_command(io, self.id, "G1")
                self.state.busy = True
            set_command(io, self.id, units_command(s.units, self.id))
            if s.wavelength_nm is not None:
                set_command(io, self.id, wavelength_command(s.wavelength_nm, self.id))
            if s.range is not None:
                set_command(io, self.id, range_command(s.range, self.id))
            if s.filter is not None:
                set_command(io, self.id, filter_command(s.filter, self.id))
            if s.attenuator is not None:
                set_command(io, self.id, f"A{int(s.attenuator)}")
            self.state.units, self.state.shown = s.units, None

        return Transaction("connect", fn=connect)

    def poll(self) -> Generator[Any, Any, dict[str, Sample]]:
        """One ``power`` sample in the channel's unit, flagged as the status byte read just
        before says (``saturated``, ``over_range``, ``busy``: the reading dates from before
        the meter's auto-ranging, power-up or calibration)."""
        channel_cmd = units_command(self.channel_units, self.id)

        def poll(io: Any) -> tuple[float, dict[str, MetaValue]]:
            begin(io, self.options.reply_timeout, self.id, "D?")
            state = self.state
            meter_units = state.units
            if meter_units is None:
                set_command(io, self.id, channel_cmd)
                state.units = self.channel_units
            elif (state.shown or meter_units) != self.channel_units:
                state.shown = self.channel_units  # until switched back, below or next time
                set_command(io, self.id, channel_cmd)
            status = read_status(io, self.id)  # before D?, which clears its read-done bit
            err = status_error(self.id, "D?", status)
            if err is not None:
                clear_status(io)
                raise err
            state.busy = busy = from_busy_spell(status, state.busy)
            value = parse_reading(query(io, self.id, "D?"), self.id)
            self.switch_back(io)
            return value, reading_flags(status, busy)

        value, meta = yield Transaction("poll D?", fn=poll)
        return {"power": Sample(value, meta)}

    def switch_back(self, io: Any) -> None:
        """The meter back in the units a script or the lab set, if a poll left it in its
        channel's (in a transaction, under the port lock)."""
        state = self.state
        if state.shown is not None:
            if state.units is not None and state.shown != state.units:
                set_command(io, self.id, units_command(state.units, self.id))
            state.shown = None

    # ------------------------------------------------------------------ commands
    @command(units=Arg(str, choices=UNIT_CODES))
    def set_units(self, units: str) -> Transaction[None]:
        """``W``, ``dB``, ``dBm`` or ``REL`` for the display and :meth:`power`; the ``power``
        channel stays in the unit the lab file declares."""
        cmd = units_command(units, self.id)

        def set_units(io: Any) -> None:
            self.exchange(io, cmd, False)
            self.state.units, self.state.shown = units, None

        return Transaction(cmd, fn=set_units)

    @command(range_=Arg(int, range=(RANGES.start, RANGES.stop - 1)))
    def set_range(self, range_: int) -> Transaction[None]:
        """0 = auto range, 1 (most gain) .. 8 (least)."""
        return self.write(range_command(range_, self.id))

    @command(speed=Arg(str, choices=FILTER_CODES))
    def set_filter(self, speed: str) -> Transaction[None]:
        """``slow`` (16-reading average), ``medium`` (4) or ``fast`` (none)."""
        return self.write(filter_command(speed, self.id))

    @command
    def status(self) -> Transaction[int]:
        """The raw status byte (``Q?``), without clearing anything."""
        def status(io: Any) -> int:
            begin(io, self.options.reply_timeout, self.id, "Q?")
            return read_status(io, self.id)

        return Transaction("Q?", fn=status)

    @command
    def raw_command(self, text: str) -> Transaction[None]:
        """Send a command this driver does not wrap; raise what the status byte reports. One
        that may change the units makes them unknown (the next poll sets them again). Echo
        (``E1``) is refused: replies are read as the next line, which echo would take. So is
        a query (``?``): its reply would be read as the status byte (use raw_query)."""
        if text.replace(" ", "").upper().startswith("E1"):
            raise ValueError(f"{self.id}: the driver keeps echo off (E0); {text!r} refused")
        if is_query(text):
            raise ValueError(f"{self.id}: {text!r} is a query; send it with raw_query")

        def raw(io: Any) -> None:
            if text.lstrip()[:1].upper() == "U":
                self.state.units = self.state.shown = None
            self.exchange(io, text, False)

        return Transaction(text, fn=raw)

    @command
    def raw_query(self, text: str) -> Transaction[str]:
        """Send a query this driver does not wrap and return its reply line; raise what the
        status byte reports if the meter refuses it. A query ends with ``?``."""
        if not is_query(text):
            raise ValueError(f"{self.id}: {text!r} is no query (a query ends with ?); send it "
                             f"with raw_command")

        def raw(io: Any) -> str:
            begin(io, self.options.reply_timeout, self.id, text)
            self.switch_back(io)
            return query_with_status(io, self.id, text)

        return Transaction(text, fn=raw)
