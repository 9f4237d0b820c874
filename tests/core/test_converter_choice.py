"""One converter per (source, target): a plugin's never replaces daqhub's own without a word,
and a clash is reported as storage backends' and instrument types' clashes are."""

from __future__ import annotations

import types

import pytest

import daqhub.plugins.converters as converters_plugin
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginError, PluginHost
from daqhub.plugins.converters import rows_to_batch
from daqhub.specs import Converter


def converter_plugin(*converters: Converter) -> types.SimpleNamespace:
    return types.SimpleNamespace(daqhub_converters=hookimpl(lambda: list(converters)))


def with_rival(strict: bool = False) -> PluginHost:
    """A plugin that registers before daqhub's converters ("aaudit-plugin" sorts before
    "daqhub", as installed entry points load) and converts v2 to Arrow too."""
    host = PluginHost(strict=strict)
    host.register(converter_plugin(Converter("rival-v2-to-arrow", "v2", "arrow", rows_to_batch)),
                  "rival:conv", "aaudit-plugin", "0.1")
    host.register(converters_plugin, "daqhub:converters", "daqhub", "0.1")
    return host


def test_daqhubs_own_converter_is_used_and_the_plugins_is_reported() -> None:
    """The first registered used to be taken: the plugin's, and `daqhub --strict plugins`
    said nothing."""
    host = with_rival()
    assert host.converter("v2", "arrow").name == "v2-to-arrow"
    owner = host.converter_owner("v2", "arrow")
    assert (owner.distribution, owner.version) == ("daqhub", "0.1")
    [problem] = host.problems
    assert (problem.distribution, problem.version) == ("aaudit-plugin", "0.1")
    assert problem.error == ("converter 'rival-v2-to-arrow' (v2 -> arrow) is declared by daqhub "
                             "too (aaudit-plugin 0.1, daqhub 0.1); daqhub's own is used, not "
                             "this one")
    listed = {d["name"]: [c["name"] for c in d["converters"]]
              for d in host.describe()["distributions"]}
    assert "rival-v2-to-arrow" not in listed.get("aaudit-plugin", [])
    assert "v2-to-arrow" in listed["daqhub"]


def test_strict_mode_fails_on_a_converter_clash() -> None:
    with pytest.raises(PluginError, match="rival-v2-to-arrow"):
        with_rival(strict=True).converters()


def test_a_pair_only_plugins_convert_and_several_declare_is_used_from_none() -> None:
    host = PluginHost()
    for dist in ("conv-a", "conv-b"):
        host.register(converter_plugin(Converter(f"{dist}-arrow-to-v2", "arrow", "v2",
                                                 lambda batch: [])), f"{dist}:conv", dist, "1")
    with pytest.raises(LookupError, match="no converter from 'arrow' to 'v2'"):
        host.converter("arrow", "v2")
    assert sorted(p.distribution for p in host.problems) == ["conv-a", "conv-b"]
    assert all("none of them is used" in p.error for p in host.problems)


def test_a_malformed_converter_is_refused_at_load() -> None:
    host = PluginHost()
    odd = Converter("odd", "v3", "arrow", "not a function")  # type: ignore[arg-type]
    host.register(converter_plugin(odd), "odd:conv", "odd-conv", "1")
    assert host.converters() == []
    [problem] = host.problems
    assert "invalid converter 'odd' (v3 -> arrow): source 'v3' is not one of v2, unified, " \
        "arrow; convert is not callable" == problem.error
