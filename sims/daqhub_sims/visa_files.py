"""Locate the packaged pyvisa-sim YAML files and make private copies for tests.

pyvisa-sim keeps one device state per YAML *path* for the whole process
(``ResourceManager("x.yaml@sim")`` hands back the same devices even after
``close()``; docs/architecture.md, "Library behaviour the code relies on"). A test that
changes a setting would leak it into
every later test that opens the same file, so tests open a fresh copy instead.
"""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

#: The SCPI DMM, power supply and shared contention device (see the file's header).
DMM_PSU_YAML = "dmm_psu.yaml"

# Resource names in dmm_psu.yaml, as pyvisa-sim lists them (canonical form).
DMM_RESOURCE = "GPIB0::5::INSTR"
DMM_TCPIP_RESOURCE = "TCPIP0::127.0.0.1::inst0::INSTR"
DMM_SOCKET_RESOURCE = "TCPIP0::127.0.0.1::5025::SOCKET"
PSU_RESOURCE = "GPIB0::6::INSTR"
PSU_SERIAL_RESOURCE = "ASRL7::INSTR"
PSU_TCPIP_RESOURCE = "TCPIP0::127.0.0.1::inst1::INSTR"
#: Answers ``ID<n>?`` with ``R<n>`` for n in ``range(SHARED_DIALOGUES)``.
SHARED_RESOURCE = "GPIB0::20::INSTR"
SHARED_DIALOGUES = 64

#: Read and write termination of every resource above.
TERMINATION = "\n"


def shared_dialogue(n: int) -> tuple[str, str]:
    """Query and reply of dialogue ``n`` on :data:`SHARED_RESOURCE`."""
    if not 0 <= n < SHARED_DIALOGUES:
        raise ValueError(f"the shared device has dialogues 0..{SHARED_DIALOGUES - 1}, not {n}")
    return f"ID{n}?", f"R{n}"


def yaml_names() -> list[str]:
    """Names of the YAML files shipped in ``daqhub_sims/visa``."""
    folder = resources.files("daqhub_sims").joinpath("visa")
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def packaged_yaml(name: str = DMM_PSU_YAML) -> Path:
    """Path of a shipped YAML file; opening it directly shares its state process-wide."""
    entry = resources.files("daqhub_sims").joinpath("visa", name)
    path = Path(str(entry))
    if not path.is_file():
        raise FileNotFoundError(
            f"no pyvisa-sim file {name!r} in daqhub_sims/visa (shipped: {yaml_names()})"
        )
    return path


def fresh_copy(directory: str | os.PathLike[str], name: str = DMM_PSU_YAML) -> Path:
    """Copy a shipped YAML file to a new, unique path in ``directory`` and return it.

    Every call gives a new path, hence fresh instrument state, even twice in one
    directory.
    """
    text = resources.files("daqhub_sims").joinpath("visa", name).read_text(encoding="utf-8")
    folder = Path(directory)
    stem = name.removesuffix(".yaml")
    fd, path = tempfile.mkstemp(prefix=f"{stem}-", suffix=".yaml", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return Path(path)


def sim_library(path: str | os.PathLike[str]) -> str:
    """The ``ResourceManager`` argument that opens ``path`` with pyvisa-sim.

    The path is made absolute so that the same file is one state however it was named.
    """
    return f"{Path(path).resolve()}@sim"
