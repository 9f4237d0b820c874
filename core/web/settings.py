"""Where the dashboard listens, who may read it and who may command: ``[daqhub.web]``.

One rule decides when a token is needed, so the server, the CLI and the docs agree:
anything but ``127.0.0.1``, ``::1`` or ``localhost`` is reachable by other users or
machines and needs a token, and so does every command, whatever the address.
"""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOOPBACK_NAMES = frozenset({"127.0.0.1", "::1", "localhost"})
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8640
#: the longest the run's dashboard serves its last update once the run has ended (two page
#: refreshes, and no more than this: ``daqhub run`` exits that much later, with a page open)
LAST_WORD_S = 1.0
#: how long a stopping dashboard waits for the requests it is answering
HANDLER_GRACE_S = 1.0

WEB_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "the live dashboard in the browser (daqhub run --web overrides listen)",
    "properties": {
        "enabled": {"type": "boolean", "default": True,
                    "description": "serve the dashboard whenever this lab runs"},
        "listen": {"type": "string",  # its form: parse_listen's, through table_problems
                   "default": f"{DEFAULT_HOST}:{DEFAULT_PORT}",
                   "description": "[HOST:]PORT; anything but 127.0.0.1/::1/localhost "
                                  "needs a token"},
        "token": {"type": "string", "minLength": 8,
                  "description": "secret the page must present (default: a random one is "
                                 "made and printed when a token is needed)"},
        "commands": {"type": "boolean", "default": False,
                     "description": "let the page send commands to instruments "
                                    "(always token-guarded)"},
        "rate_hz": {"type": "number", "minimum": 0.2, "maximum": 20, "default": 4,
                    "description": "how often the page refreshes"},
        "history_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                      "default": 60, "description": "seconds of scalar history plotted"},
    },
}


#: the modules of the web extra the dashboard's server imports: aiohttp's server, and plotly's
#: offline bundle for the plotly.js every page loads
WEB_EXTRA = ("aiohttp.web", "plotly.offline")


def web_extra_problem() -> str | None:
    """What to install when a module of :data:`WEB_EXTRA` cannot be imported, else None:
    ``run``, ``view`` (:func:`~.runweb.dashboard_server`) and ``validate`` (for a lab with
    ``[daqhub.web]`` only) ask this before a dashboard, so they agree. Imported, not found
    with ``find_spec``: an installed plotly whose own dependency is missing (narwhals) was
    found, ``validate`` called the lab valid, and ``run`` refused it."""
    for module in WEB_EXTRA:
        package = module.partition(".")[0]
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken install raises what it raises: no dashboard
            absent = isinstance(exc, ImportError) and (exc.name or "").partition(".")[0] == package
            why = f"{package} is missing" if absent else f"{package} cannot be imported: {exc}"
            return f"the dashboard needs the web extra ({why}): pip install 'daqhub[web]'"
    return None


class ListenError(ValueError):
    """A ``[HOST:]PORT`` that cannot be used."""


def parse_listen(text: str) -> tuple[str, int]:
    """``8640`` -> (127.0.0.1, 8640); ``0.0.0.0:80``; ``[::1]:8640``; ``host:0`` (any port)."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    elif host.startswith("["):
        if not host.endswith("]"):
            raise ListenError(f"{text!r}: an IPv6 address is written [addr]:PORT")
        host = host[1:-1]
    elif ":" in host:
        raise ListenError(f"{text!r}: write an IPv6 address as [addr]:PORT")
    if not host:
        raise ListenError(f"{text!r}: empty host (write PORT alone for {DEFAULT_HOST})")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ListenError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def table_problems(table: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What ``daqhub run`` refuses in a lab file's ``[daqhub.web]`` (one its schema accepts),
    each with the key it is about, so ``validate`` says what ``run`` will: the one rule is
    :func:`parse_listen`."""
    try:
        parse_listen(str(table.get("listen", f"{DEFAULT_HOST}:{DEFAULT_PORT}")))
    except ListenError as exc:
        return [("listen", f"web.listen {exc}")]
    return []


def needs_token(host: str) -> bool:
    return host not in LOOPBACK_NAMES


@dataclass(frozen=True)
class WebSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str = ""
    commands: bool = False
    rate_hz: float = 4.0
    history_s: float = 60.0

    @property
    def token_required(self) -> bool:
        """A read needs the token; commands need it in any case."""
        return needs_token(self.host)

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?token={self.token}" if self.token else ""
        return f"http://{host}:{self.port if port is None else port}/{query}"


def web_settings(table: Mapping[str, Any] | None, listen: str | None) -> WebSettings | None:
    """The dashboard's settings from the lab's ``[daqhub.web]`` and ``--web``; None: no page.

    A token is made up (and shown in the printed URL) when the address or the commands
    need one and the lab gave none, so a dashboard is never open without one where the
    rule asks for it.
    """
    table = dict(table or {})
    if listen is None and (not table or table.get("enabled", True) is False):
        return None
    host, port = parse_listen(listen or str(table.get("listen", f"{DEFAULT_HOST}:"
                                                                f"{DEFAULT_PORT}")))
    commands = bool(table.get("commands", False))
    token = str(table.get("token", ""))
    if not token and (needs_token(host) or commands):
        token = secrets.token_urlsafe(18)
    return WebSettings(host, port, token, commands, float(table.get("rate_hz", 4.0)),
                       float(table.get("history_s", 60.0)))
