"""What the live data service (``daqhub run --serve``, ``[daqhub.serve]``) is told to do.

Kept apart from the service so that reading a lab file does not import gRPC. The token is never
written in the lab file (the lab file is stored with every session): the table names the
environment variable that holds it.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .outdir import lab_path

DEFAULT_ADDRESS = "127.0.0.1:8815"
DEFAULT_TOKEN_ENV = "DAQHUB_TOKEN"
#: live streams open at once (one per channel per client): each is a server thread sending
#: its channel's batches; on a 2-core PC 64 streams of a 200 Hz and a 500 Hz channel cost the
#: instruments a quarter of their polling rate, 200 streams two thirds
DEFAULT_LIVE_STREAMS = 256
#: of which one client host may hold (a dashboard opens one per channel of the run)
DEFAULT_LIVE_STREAMS_PER_CLIENT = 128

SERVE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "serve the run's live data and session files over Arrow Flight",
    "properties": {
        "address": {"type": "string", "default": DEFAULT_ADDRESS,
                    "description": "HOST:PORT to listen on (port 0: any free port); a host "
                                   "other than loopback requires a token"},
        "token_env": {"type": "string", "default": DEFAULT_TOKEN_ENV,
                      "description": "environment variable holding the bearer token clients "
                                     "must send"},
        "tls_cert": {"type": "string", "description": "PEM certificate: serve over TLS"},
        "tls_key": {"type": "string", "description": "PEM private key of tls_cert"},
        "actions": {"type": "boolean", "default": False,
                    "description": "allow remote commands (call, health); needs a token"},
        "queue_batches": {"type": "integer", "minimum": 1, "maximum": 1_000_000,
                          "default": 1000,
                          "description": "batches a live subscriber may fall behind before "
                                         "it loses its oldest (it is told how many)"},
        "live_streams": {"type": "integer", "minimum": 1, "maximum": 4096,
                         "default": DEFAULT_LIVE_STREAMS,
                         "description": "live streams served at once (one per channel per "
                                        "client); more are refused"},
        "live_streams_per_client": {"type": "integer", "minimum": 1, "maximum": 4096,
                                    "default": DEFAULT_LIVE_STREAMS_PER_CLIENT,
                                    "description": "live streams one client host may hold "
                                                   "open"},
    },
}


class ServeConfigError(ValueError):
    """The service cannot start as configured; the message says what to change."""


def split_address(address: str, name: str) -> tuple[str, int]:
    """``HOST:PORT`` as host and port; ``name``: where the address was given (``--serve``,
    the lab file's ``serve.address``), for the message."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ServeConfigError(f"{name} {address!r}: expected HOST:PORT, e.g. "
                               f"{DEFAULT_ADDRESS} (port 0 picks a free one)")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8815
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    actions: bool = False
    queue_batches: int = 1000
    live_streams: int = DEFAULT_LIVE_STREAMS
    live_streams_per_client: int = DEFAULT_LIVE_STREAMS_PER_CLIENT

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, address: str | None = None,
                   base_dir: Path | None = None,
                   environ: Mapping[str, str] | None = None) -> ServeConfig:
        """From ``[daqhub.serve]`` (``address`` overrides, as ``--serve`` does); checked."""
        cfg, problems = cls.checked(table, address=address, base_dir=base_dir, environ=environ)
        if cfg is None or problems:
            raise ServeConfigError("; ".join(why for _, why in problems))
        return cfg

    @classmethod
    def checked(cls, table: Mapping[str, Any], *, address: str | None = None,
                base_dir: Path | None = None, environ: Mapping[str, str] | None = None
                ) -> tuple[ServeConfig | None, list[tuple[str, str]]]:
        """The service ``table`` configures and why it cannot start, each reason with the
        key of ``[daqhub.serve]`` it is about: ``run`` refuses them all, and the validator
        reports each on its key's line (:func:`table_problems`). None: no address to read."""
        env = os.environ if environ is None else environ
        try:
            host, port = split_address(address or str(table.get("address", DEFAULT_ADDRESS)),
                                       "--serve" if address else "serve.address")
        except ServeConfigError as exc:
            return None, [("address", str(exc))]
        token_env = str(table.get("token_env", DEFAULT_TOKEN_ENV))
        base = base_dir or Path.cwd()

        def path(key: str) -> Path | None:
            return lab_path(base, str(table[key])) if key in table else None

        cfg = cls(host, port, env.get(token_env) or None, path("tls_cert"), path("tls_key"),
                  bool(table.get("actions", False)), int(table.get("queue_batches", 1000)),
                  int(table.get("live_streams", DEFAULT_LIVE_STREAMS)),
                  int(table.get("live_streams_per_client", DEFAULT_LIVE_STREAMS_PER_CLIENT)))
        return cfg, cfg.problems(token_env)

    def problems(self, token_env: str = DEFAULT_TOKEN_ENV) -> list[tuple[str, str]]:
        """Why this service cannot start, each reason with the key it is about."""
        out = []
        if not is_loopback(self.host) and not self.token:
            out.append(("address", f"serving on {self.host} (not loopback) needs a token: set "
                        f"{token_env} in the environment, or serve on 127.0.0.1"))
        if self.actions and not self.token:
            out.append(("actions", f"remote commands (actions = true) need a token: set "
                        f"{token_env}"))
        if (self.tls_cert is None) != (self.tls_key is None):
            out.append(("tls_cert" if self.tls_cert else "tls_key",
                        "TLS needs both tls_cert and tls_key"))
        missing = [(k, p) for k, p in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key))
                   if p is not None and not p.is_file()]
        out.extend((k, f"TLS file {p} does not exist") for k, p in missing)
        tls = None if missing else self.tls_problem()
        if tls:
            out.append(("tls_cert", tls))
        return out

    def tls_problem(self) -> str | None:
        """Why ``tls_cert`` and ``tls_key`` cannot serve TLS; None when they can (or no TLS).

        Loaded here as gRPC will load them: gRPC says only "Server did not start properly"
        of a file that is not PEM or a key that is not the certificate's, which was reported
        as the address being in use. An encrypted key is refused rather than asked for a
        passphrase on the terminal (gRPC takes none).
        """
        cert, key = self.tls_cert, self.tls_key
        if cert is None or key is None:
            return None
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                cert, key, password=_refuse_passphrase)
        except _EncryptedKey:
            why = f"{key} is encrypted; the service needs the key without a passphrase"
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                why = f"{key} is not the private key of {cert}"
            elif not _is_pem_certificate(cert):
                why = f"{cert} is not a PEM certificate"
            elif exc.reason is None:  # OpenSSL's "PEM lib": the key file is not PEM
                why = f"{key} is not a PEM private key"
            else:
                why = f"{cert} with {key}: {exc}"
        except OSError as exc:  # unreadable (permissions, a directory)
            why = f"cannot read {cert} or {key}: {exc}"
        else:
            return None
        return f"tls_cert/tls_key: {why}"

    @property
    def scheme(self) -> str:
        return "grpc+tls" if self.tls_cert else "grpc"

    def address(self, port: int | None = None) -> str:
        """``HOST:PORT`` with an IPv6 host in brackets, as URLs need (``grpc://::1:0`` is
        not one); ``port``: the one listened on, when the configured one is 0."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port if port is None else port}"


class _EncryptedKey(Exception):
    """The TLS key asked for a passphrase."""


def _refuse_passphrase() -> bytes:
    raise _EncryptedKey


def _is_pem_certificate(path: Path) -> bool:
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError):
        return False
    return True


def table_problems(table: Mapping[str, Any], base_dir: Path, *, offline: bool = False
                   ) -> list[tuple[str, str]]:
    """What ``daqhub run`` refuses in a lab file's ``[daqhub.serve]`` (one its schema accepts),
    each with the key it is about, so ``validate`` says what ``run`` will. ``offline``: only
    the address's form (the token's environment variable and the TLS files are the lab
    PC's)."""
    cfg, problems = ServeConfig.checked(table, base_dir=base_dir)
    return problems if cfg is None or not offline else []


def serve_config(table: Mapping[str, Any], address: str | None, lab_file: str
                 ) -> ServeConfig | None:
    """What ``daqhub run`` serves: ``--serve`` (``address``) or ``[daqhub.serve]``, else None."""
    if address is None and not table:
        return None
    base = Path(lab_file).parent if Path(lab_file).is_file() else Path.cwd()
    return ServeConfig.from_table(table, address=address, base_dir=base)
