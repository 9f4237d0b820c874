"""Reference tables of instrument types: ``daqhub plugins TYPE`` and docs/instrument-types.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daqhub.cli import main as daqhub
from daqhub.typeref import document

pytestmark = pytest.mark.timeout(60)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "instrument-types.md"


def test_docs_tables_are_the_ones_the_code_renders(daqhub_host: Any) -> None:
    rendered = document(daqhub_host)
    assert DOCS.read_text() == rendered, (
        "docs/instrument-types.md is stale; regenerate it with "
        "`python -m daqhub.typeref > docs/instrument-types.md`")


def test_plugins_type_json_lists_channels_keys_and_commands_with_arguments(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert daqhub(["plugins", "newport.esp300", "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert ref["name"] == "newport.esp300" and ref["flavors"] == ["v2", "v4"]
    assert [c["name"] for c in ref["channels"]] == ["position"]
    keys = {k["key"]: k for k in ref["config"]}
    assert keys["axis"]["required"] and keys["units"]["default"] == "mm"
    commands = {c["name"]: c["arguments"] for c in ref["commands"]}
    assert commands["define_position"] == ["position"]
    assert commands["set_limits"] == ["left", "right"]
    assert commands["home"] == ["timeout=30.0"]
    assert "connect" not in commands and "close" not in commands


def test_plugins_type_as_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert daqhub(["plugins", "elliptec.ell17"]) == 0
    out = capsys.readouterr().out
    assert "| position | scalar | mm | float64 |" in out
    assert "| address (required) | integer or string |" in out
    assert "| set_frequency | forward_hz, backward_hz, motor=1 |" in out


def test_an_unknown_type_is_exit_2_naming_the_installed_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert daqhub(["plugins", "acme.nope"]) == 2
    err = capsys.readouterr().err
    assert "no instrument type 'acme.nope'" in err and "newport.esp300" in err
