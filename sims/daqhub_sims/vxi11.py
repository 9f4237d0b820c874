"""Serve a simulated SCPI instrument over VXI-11 (``TCPIP::host::INSTR``), with a portmapper.

Written from the VXI-11 specification (TCP/IP Instrument Protocol, rev 1.0, the core channel
of its Appendix C), ONC RPC version 2 (RFC 5531: call and reply messages, record marking on
TCP) and the portmapper (RFC 1833, program 100000 version 2). It serves the same instrument
model as :mod:`daqhub_sims.scpi_tcp` (:class:`~daqhub_sims.scpi.ScpiInstrument`), so a driver
meets one device whichever way it is reached.

* The portmapper listens on TCP port 111 of :attr:`Vxi11Server.host` (a VISA client asks
  there for the core channel's port) and answers ``GETPORT`` (and ``NULL``); binding port 111
  needs root or ``CAP_NET_BIND_SERVICE``. :func:`serve_on_loopback` starts one on a loopback
  address whose port 111 is free (127.0.0.1 may have a real rpcbind).
* The core channel (program 0x0607AF, version 1) answers ``create_link`` (device ``inst0``),
  ``device_write``, ``device_read``, ``device_readstb``, ``device_clear``, ``destroy_link``;
  other procedures get error 8, "operation not supported". The abort channel is not served.
* Written bytes are SCPI messages ending at ``\\n`` (or at a write with the END flag); each
  reply waits in its link's output queue with one ``\\n`` until a ``device_read`` takes it
  (error 15, I/O timeout, after ``io_timeout`` ms when there is none).
* :meth:`Vxi11Server.disconnect` takes the instrument off the network (listeners closed,
  connections dropped); :meth:`Vxi11Server.reconnect` serves again on the same ports.

Command line: ``python -m daqhub_sims.vxi11 --host 127.0.0.5`` prints the resource name and
serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Callable, Sequence

from daqhub_sims.scpi import PROFILES, ScpiInstrument, make_instrument
from daqhub_sims.scpi_tcp import serve_until_signalled

PORTMAPPER_PORT = 111
PMAP_PROG, PMAP_VERS, PMAPPROC_NULL, PMAPPROC_GETPORT = 100000, 2, 0, 3
IPPROTO_TCP = 6
CORE_PROG, CORE_VERS = 0x0607AF, 1
CREATE_LINK, DEVICE_WRITE, DEVICE_READ, DEVICE_READSTB = 10, 11, 12, 13
DEVICE_CLEAR, DESTROY_LINK = 15, 23
# RFC 5531 message and status values
CALL, REPLY, MSG_ACCEPTED, MSG_DENIED, RPC_MISMATCH = 0, 1, 0, 1, 0
SUCCESS, PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL, GARBAGE_ARGS = 0, 1, 2, 3, 4
LAST_FRAGMENT = 0x80000000
# VXI-11 flags, read reasons and error codes
FLAG_END, FLAG_TERMCHR = 0x08, 0x80
REASON_REQCNT, REASON_CHR, REASON_END = 1, 2, 4
ERR_NONE, ERR_SYNTAX, ERR_NOT_ACCESSIBLE, ERR_INVALID_LINK = 0, 1, 3, 4
ERR_NOT_SUPPORTED, ERR_IO_TIMEOUT = 8, 15
MAX_RECV_SIZE = 1 << 20
#: a record bigger than this is not VXI-11 traffic: the connection is dropped
MAX_RECORD_BYTES = 4 << 20


class XdrError(ValueError):
    """The arguments of a call do not decode (GARBAGE_ARGS)."""


class Xdr:
    """Reads XDR (RFC 4506) items from a buffer: 4-byte big-endian units, padded opaques."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise XdrError("arguments end early")
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def i32(self) -> int:
        value = self.u32()
        return value - (1 << 32) if value >= 1 << 31 else value

    def opaque(self) -> bytes:
        n = self.u32()
        if self.pos + n > len(self.data):
            raise XdrError(f"an opaque of {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += (n + 3) & ~3
        return out


def u32s(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *(v & 0xFFFFFFFF for v in values))


def opaque(data: bytes) -> bytes:
    return u32s(len(data)) + data + b"\0" * (-len(data) % 4)


def read_record(conn: socket.socket) -> bytes | None:
    """One RPC record (its fragments joined); None when the peer closed the connection."""
    parts: list[bytes] = []
    size = 0
    while True:
        header = _recv_exact(conn, 4)
        if header is None:
            return None
        (mark,) = struct.unpack(">I", header)
        n = mark & ~LAST_FRAGMENT
        size += n
        if size > MAX_RECORD_BYTES:
            raise ConnectionError(f"an RPC record of more than {MAX_RECORD_BYTES} bytes")
        body = _recv_exact(conn, n)
        if body is None:
            return None
        parts.append(body)
        if mark & LAST_FRAGMENT:
            return b"".join(parts)


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = conn.recv(n - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


#: (program, version, procedure, arguments) -> results; raises XdrError on bad arguments
Program = Callable[[int, int, Xdr], bytes | None]


def rpc_reply(call: bytes, programs: dict[int, tuple[int, Program]]) -> bytes:
    """The reply record to one call record (RFC 5531 section 9)."""
    args = Xdr(call)
    xid, mtype = args.u32(), args.u32()
    if mtype != CALL:
        raise XdrError("not a call")
    head = u32s(xid, REPLY)
    if args.u32() != 2:
        return head + u32s(MSG_DENIED, RPC_MISMATCH, 2, 2)
    prog, vers, proc = args.u32(), args.u32(), args.u32()
    args.u32(), args.opaque()  # credentials (any flavor is accepted)
    args.u32(), args.opaque()  # verifier
    accepted = head + u32s(MSG_ACCEPTED, 0, 0)  # verifier AUTH_NONE, empty
    if prog not in programs:
        return accepted + u32s(PROG_UNAVAIL)
    version, program = programs[prog]
    if vers != version:
        return accepted + u32s(PROG_MISMATCH, version, version)
    try:
        results = program(vers, proc, args)
    except XdrError:
        return accepted + u32s(GARBAGE_ARGS)
    if results is None:
        return accepted + u32s(PROC_UNAVAIL)
    return accepted + u32s(SUCCESS) + results


class _RpcHandler(socketserver.BaseRequestHandler):
    server: _RpcServer

    def handle(self) -> None:
        conn: socket.socket = self.request
        self.server.owner._track(conn, True)
        try:
            while True:
                record = read_record(conn)
                if record is None:
                    return
                try:
                    reply = rpc_reply(record, self.server.programs)
                except XdrError:
                    return  # not ONC RPC: nothing sensible to answer
                conn.sendall(u32s(LAST_FRAGMENT | len(reply)) + reply)
        except OSError:
            return  # dropped (disconnect(), or the client went away)
        finally:
            self.server.owner._track(conn, False)


class _RpcServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: Vxi11Server,
                 programs: dict[int, tuple[int, Program]]) -> None:
        self.owner = owner
        self.programs = programs
        super().__init__(address, _RpcHandler)


class _Link:
    def __init__(self) -> None:
        self.pending = bytearray()  # written, not yet a whole message
        self.output = bytearray()  # replies not read yet
        self.ready = threading.Condition()


class Vxi11Server:
    """A VXI-11 instrument (core channel + portmapper) around one simulated SCPI device."""

    def __init__(self, profile: str | ScpiInstrument = "dmm", host: str = "127.0.0.1", *,
                 seed: int = 0, portmapper_port: int = PORTMAPPER_PORT) -> None:
        self.instrument: ScpiInstrument = (
            profile if isinstance(profile, ScpiInstrument) else make_instrument(profile, seed=seed))
        self.host = host
        self.portmapper_port = portmapper_port
        self.core_port = 0
        self._instrument_lock = threading.Lock()
        self._state = threading.Lock()
        self._links: dict[int, _Link] = {}
        self._next_link = 1
        self._servers: list[_RpcServer] = []
        self._conns: set[socket.socket] = set()

    @property
    def resource(self) -> str:
        return f"TCPIP::{self.host}::INSTR"

    def __repr__(self) -> str:
        return f"Vxi11Server({self.resource}, core port {self.core_port})"

    # --- serving -------------------------------------------------------------------------

    def start(self) -> Vxi11Server:
        """Listen (the portmapper on its port, the core channel on a free or the same port).

        Starting a started server (``with`` on :func:`serve_on_loopback`'s) does nothing.
        """
        if self._servers:
            return self
        core = _RpcServer((self.host, self.core_port), self, {CORE_PROG: (CORE_VERS,
                                                                         self._core)})
        try:
            pmap = _RpcServer((self.host, self.portmapper_port), self,
                              {PMAP_PROG: (PMAP_VERS, self._portmapper)})
        except OSError:
            core.server_close()
            raise
        self.core_port = core.server_address[1]
        self._servers = [core, pmap]
        for s in self._servers:
            threading.Thread(target=s.serve_forever, args=(0.1,), daemon=True,
                             name=f"vxi11-{s.server_address[1]}").start()
        return self

    def disconnect(self) -> None:
        """Off the network: stop listening and drop every connection (links are forgotten)."""
        servers, self._servers = self._servers, []
        for s in servers:
            s.shutdown()
            s.server_close()
        with self._state:
            conns = list(self._conns)
            self._links.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reconnect(self) -> None:
        """Back on the network, on the same ports."""
        self.start()

    close = disconnect

    def __enter__(self) -> Vxi11Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._state:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # --- programs ------------------------------------------------------------------------

    def _portmapper(self, vers: int, proc: int, args: Xdr) -> bytes | None:
        if proc == PMAPPROC_NULL:
            return b""
        if proc != PMAPPROC_GETPORT:
            return None
        prog, prog_vers, prot, _ = args.u32(), args.u32(), args.u32(), args.u32()
        found = prog == CORE_PROG and prog_vers == CORE_VERS and prot == IPPROTO_TCP
        return u32s(self.core_port if found else 0)

    def _core(self, vers: int, proc: int, args: Xdr) -> bytes | None:
        if proc == CREATE_LINK:
            args.i32(), args.u32(), args.u32()  # clientId, lockDevice, lock_timeout
            device = args.opaque().decode("latin-1")
            if device != "inst0":
                return u32s(ERR_NOT_ACCESSIBLE, 0, 0, 0)
            with self._state:
                lid, self._next_link = self._next_link, self._next_link + 1
                self._links[lid] = _Link()
            return u32s(ERR_NONE, lid, 0, MAX_RECV_SIZE)  # abortPort 0: no abort channel
        if proc == DESTROY_LINK:
            with self._state:
                found = self._links.pop(args.i32(), None)
            return u32s(ERR_NONE if found else ERR_INVALID_LINK)
        if proc not in (DEVICE_WRITE, DEVICE_READ, DEVICE_READSTB, DEVICE_CLEAR):
            return u32s(ERR_NOT_SUPPORTED)  # every Device_*Resp starts with its error
        with self._state:
            link = self._links.get(args.i32())
        if link is None:
            return u32s(ERR_INVALID_LINK, 0) + (opaque(b"") if proc == DEVICE_READ else b"")
        if proc == DEVICE_WRITE:
            return self._write(link, args)
        if proc == DEVICE_READ:
            return self._read(link, args)
        args.u32(), args.u32(), args.u32()  # flags, lock_timeout, io_timeout
        if proc == DEVICE_CLEAR:
            with link.ready:
                link.pending.clear()
                link.output.clear()
            return u32s(ERR_NONE)
        with self._instrument_lock:
            stb = self.instrument.status_byte()
        return u32s(ERR_NONE, stb)

    def _write(self, link: _Link, args: Xdr) -> bytes:
        args.u32(), args.u32()  # io_timeout, lock_timeout
        flags, data = args.u32(), args.opaque()
        with link.ready:
            link.pending += data
            messages = [bytes(m) for m in link.pending.split(b"\n")]
            link.pending = bytearray(messages.pop())
            if flags & FLAG_END and link.pending:
                messages.append(bytes(link.pending))
                link.pending.clear()
        for message in messages:
            with self._instrument_lock:
                reply = self.instrument.handle(message.rstrip(b"\r").decode("latin-1"))
            if reply is not None:
                with link.ready:
                    link.output += reply.encode("latin-1") + b"\n"
                    link.ready.notify_all()
        return u32s(ERR_NONE, len(data))

    def _read(self, link: _Link, args: Xdr) -> bytes:
        size, io_timeout, _lock_timeout, flags = args.u32(), args.u32(), args.u32(), args.u32()
        term = args.u32() & 0xFF
        with link.ready:
            if not link.ready.wait_for(lambda: bool(link.output), io_timeout / 1000):
                return u32s(ERR_IO_TIMEOUT, 0) + opaque(b"")
            end = link.output.index(b"\n") + 1  # one reply per read, at most
            take = min(size, end)
            reason = 0
            if flags & FLAG_TERMCHR and term in link.output[:take]:
                take = link.output.index(term) + 1
                reason |= REASON_CHR
            data = bytes(link.output[:take])
            del link.output[:take]
            if take == end:
                reason |= REASON_END
            elif not reason & REASON_CHR:
                reason |= REASON_REQCNT
        return u32s(ERR_NONE, reason) + opaque(data)


#: where :func:`serve_on_loopback` tries to listen (127.0.0.1:111 may be a real rpcbind's)
LOOPBACK_HOSTS = ("127.0.0.1", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8")


def serve_on_loopback(profile: str | ScpiInstrument = "dmm", *, seed: int = 0
                      ) -> Vxi11Server | None:
    """A started server on the first loopback address whose port 111 can be bound (None when
    none can: not root, or every one taken)."""
    for host in LOOPBACK_HOSTS:
        try:
            return Vxi11Server(profile, host, seed=seed).start()
        except OSError:
            continue
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m daqhub_sims.vxi11",
        description="Serve a simulated SCPI instrument over VXI-11 (with a portmapper on "
                    "port 111) until SIGINT/SIGTERM.")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="dmm")
    parser.add_argument("--host", default=None,
                        help="address to serve on (default: a loopback address whose port "
                             "111 is free)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reading noise")
    args = parser.parse_args(argv)
    if args.host is not None:
        server: Vxi11Server | None = Vxi11Server(args.profile, args.host, seed=args.seed)
    else:
        server = serve_on_loopback(args.profile, seed=args.seed)
        if server is None:
            print("no loopback address with a free port 111 (binding it needs root)",
                  file=sys.stderr)
            return 2
    serve_until_signalled(server)
    return 0

if __name__ == "__main__":
    sys.exit(main())
