"""Self-signed certificate and key pairs for the TLS tests, made with the openssl command.

A module with a unique name rather than conftest.py (several test folders have one). A test
that needs a pair is skipped where openssl is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def make_pair(directory: Path, name: str = "lab") -> tuple[Path, Path]:
    """``NAME.pem`` (a certificate for localhost and 127.0.0.1) and its key ``NAME.key``."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate to test TLS with")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,"
                    "IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return cert, key
