"""Elliptec framing: commands the host sends and the reply lines it reads back.

Host -> module: address char, two lower-case letters, fixed-length hex data and
no terminator (the protocol reference, "Framing"). We append a lone ``<CR>``
to every command anyway: the manual says a lone ``<CR>`` resets a module's
receive state machine and Micro-Manager's driver sends one after every command
[M][D]. It costs one byte per command and means that a packet a module
received only in part (a byte lost on the wire, or a module whose length table
differs from ours, e.g. a slider ignoring the ``ho`` direction byte) is
discarded at once instead of swallowing the first bytes of our next command
or raising status 01 two seconds later.

Module -> host: address, two upper-case characters, data, ``<CR><LF>``. A line
is parsed strictly (known reply mnemonics have a fixed data length) so that a
line made of a truncated reply followed by a complete one can be split again:
the complete reply is kept and the truncated head is reported to the address it
names instead of being lost or misrouted, with line noise in front of it or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from daqhub.driver.bus import BadLine

ADDRESSES = "0123456789ABCDEF"
#: The Elliptec link (the protocol reference): 9600 8N1, no handshake of any kind.
SERIAL_SETTINGS: dict[str, Any] = {
    "baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1,
    "rtscts": False, "xonxoff": False, "dsrdtr": False,
}
TERMINATOR = b"\r"
_HEX = frozenset("0123456789ABCDEFabcdef")
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

#: Data characters of each reply mnemonic a module sends (IN: 30 per the manual; some
#: firmware is reported to send up to 33, the protocol reference [U]).
REPLY_LENGTHS: dict[str, tuple[int, ...]] = {
    "GS": (2,), "BS": (2,), "GV": (2,),
    "PO": (8,), "BO": (8,), "HO": (8,), "GJ": (8,),
    "I1": (22,), "I2": (22,),
    "IN": (30, 31, 32, 33),
}
#: Replies whose data is not all hex (IN carries a decimal year and a free-form serial).
_FREE_FORM = frozenset({"IN"})


def address_of(value: int | str) -> str:
    """Normalise a bus address given as 0-15 or one hex character to the wire character."""
    if isinstance(value, bool):
        raise ValueError(f"bus address must be 0-15 or 0-F, got {value!r}")
    if isinstance(value, int):
        if 0 <= value <= 15:
            return ADDRESSES[value]
        raise ValueError(f"bus address must be 0-15, got {value}")
    text = str(value).strip().upper()
    if len(text) == 1 and text in ADDRESSES:
        return text
    if text.isdigit() and 0 <= int(text) <= 15:
        return ADDRESSES[int(text)]
    raise ValueError(f"bus address must be 0-15 or 0-F, got {value!r}")


def hex32(value: int) -> str:
    """Signed 32-bit two's complement as the 8 upper-case hex characters a position takes."""
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"{value} pulses does not fit a signed 32-bit position")
    return f"{value & 0xFFFFFFFF:08X}"


def from_hex32(text: str) -> int:
    value = int(text, 16)
    return value - 2**32 if value >= 2**31 else value


@dataclass(frozen=True)
class Command:
    """One host command and what a correct answer to it looks like.

    ``reply`` is the mnemonic of a successful answer (``GS`` for setters, whose
    success is ``GS00``). ``deferred`` commands (moves) answer only when motion
    ends, so the bus must not be held while they run. ``reply_address`` is set
    for ``ca``, which answers from the new address.
    """

    address: str
    mnemonic: str
    data: str = ""
    reply: str = "GS"
    deferred: bool = False
    reply_address: str = ""

    def __post_init__(self) -> None:
        if len(self.address) != 1 or self.address not in ADDRESSES:
            raise ValueError(f"bad bus address {self.address!r}")
        if len(self.mnemonic) != 2 or self.mnemonic != self.mnemonic.lower():
            raise ValueError(f"bad mnemonic {self.mnemonic!r}")
        if any(c not in "0123456789ABCDEF" for c in self.data):
            raise ValueError(f"command data must be upper-case hex, got {self.data!r}")

    @property
    def text(self) -> str:
        """The command as sent, without the trailing CR (what error messages quote)."""
        return f"{self.address}{self.mnemonic}{self.data}"

    @property
    def answers_from(self) -> str:
        return self.reply_address or self.address

    def wire(self) -> bytes:
        return self.text.encode("ascii") + TERMINATOR


@dataclass(frozen=True)
class Frame:
    """A well-formed reply line."""

    address: str
    mnemonic: str
    data: str
    raw: bytes

    @property
    def status(self) -> int | None:
        """The status code of a ``GS``/``BS`` frame, else None."""
        return int(self.data, 16) if self.mnemonic in ("GS", "BS") else None

    @property
    def text(self) -> str:
        return f"{self.address}{self.mnemonic}{self.data}"


Line: TypeAlias = Frame | BadLine


def _is_head(text: str) -> bool:
    """Starts like a reply: address char and two upper-case alphanumerics."""
    return (len(text) >= 3 and text[0] in ADDRESSES and text[1:3].isalnum()
            and text[1:3] == text[1:3].upper())


def _starts_like_reply(text: str, at: int = 0) -> bool:
    """Whether a reply starts at ``at``, however short: an address char and an upper-case
    letter (every reply mnemonic starts with one), then a head as :func:`_is_head` says. A
    reply cut to its first two bytes (``0P``) is still known to be address 0's."""
    left = len(text) - at
    return (left >= 2 and text[at] in ADDRESSES and "A" <= text[at + 1] <= "Z"
            and (left == 2 or _is_head(text[at:at + 3])))


def _reply_start(text: str) -> int | None:
    """Where the reply in damaged bytes starts: at their start, or past line noise in front
    of it (``\\xfe\\x00~\\x81`` then a cut ``0P``: bytes no reply holds), or None. The
    one rule that says whose damaged bytes are, for a line (:func:`parse_line`) and for
    bytes that fell silent without an end (:func:`truncated`) alike: noise alone names
    nobody, and the cut reply's waiter must hear of it now, not at the end of its timeout.
    Only noise is skipped: a reply's own data is full of address-and-capital pairs
    (``0pO00002EAB``, one mnemonic byte damaged, read as address 2's), so letters and digits
    before a reply start make the bytes nobody's, not the next pair's."""
    for i in range(len(text) - 1):
        if _starts_like_reply(text, i):
            return i
        if text[i] in _ALNUM:
            return None
    return None


def _frame(text: str, raw: bytes, strict: bool) -> Frame | None:
    if not _is_head(text):
        return None
    address, mnemonic, data = text[0], text[1:3], text[3:]
    lengths = REPLY_LENGTHS.get(mnemonic)
    if lengths is None:
        # An unknown reply (e.g. C1 scan data): accepted as a whole line only, never
        # when splitting a damaged line, where it would match too easily.
        if strict or not all(c in _ALNUM for c in data):
            return None
        return Frame(address, mnemonic, data, raw)
    if len(data) not in lengths:
        return None
    allowed = _ALNUM if mnemonic in _FREE_FORM else _HEX
    if not all(c in allowed for c in data):
        return None
    return Frame(address, mnemonic, data, raw)


def parse_line(raw: bytes) -> list[Line]:
    """Parse one line read up to ``<LF>`` into replies and damaged pieces.

    A line is one reply of a known mnemonic, or else is split at the leftmost position
    from which the rest is one (the head becomes a :class:`BadLine`: ``truncated`` for the
    address whose reply starts in it, past any line noise in front (:func:`_reply_start`),
    else ``garbled``). Only then is a line taken whole as a reply of a
    mnemonic this driver does not know: a reply cut to its first bytes followed by another
    module's complete one (``0P`` + ``1PO0000001F``) reads as one such reply (``0P1...``),
    which would swallow the good reply and hide the damage. Otherwise the whole line is
    ``garbled``.
    """
    body = raw.rstrip(b"\r\n")
    if not body:
        return []
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        text = body.decode("ascii", errors="replace")
    whole = _frame(text, raw, strict=True)
    if whole is not None:
        return [whole]
    for i in range(1, len(text) - 2):
        found = _frame(text[i:], body[i:] + b"\r\n", strict=True)
        if found is not None:
            head = text[:i]
            return [_damaged(head, body[:i], "truncated"), found]
    unknown = _frame(text, raw, strict=False)
    if unknown is not None:
        return [unknown]
    return [_damaged(text, body, "garbled")]


def _damaged(text: str, raw: bytes, reason: str) -> BadLine:
    start = _reply_start(text)
    if start is not None:
        return BadLine(text[start], raw, reason)
    return BadLine(None, raw, "garbled")


def truncated(raw: bytes) -> BadLine:
    """Bytes left without an end of line once the line fell silent: the address whose
    reply starts in them (:func:`_reply_start`) is told its reply was cut."""
    text = raw.decode("ascii", errors="replace")
    return _damaged(text, raw, "truncated")
