"""Lab-file validation: every problem at once, each at its line, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daqhub.cli.run import load_lab
from daqhub.config import ConfigError, lab_schema, load, locate_keys, parse
from daqhub.lab import load_lab_config

VALID = """\
[daqhub]
output_dir = "out"

[v2]
storage = "hdf5"

[v4]
storage = "arrow"

[[v2.instruments]]
id = "power"
type = "acme.meter"
port = "sim://meter"
wavelength_nm = 800
poll_hz = 5

[[v4.instruments]]
id = "dmm"
type = "acme.dmm"
resource = "GPIB0::5::INSTR"
visa_backend = "@sim"
"""

# Each planted problem is marked with "# P:<text expected in the message>" on its line.
BROKEN = """\
[daqhub]
output_dir = "out"
colour = "blue"                 # P:unknown key 'colour'

[v2]
storage = "hdf55"               # P:unknown storage backend 'hdf55'

[v4]
output_dir = "out/v2/nested"    # P:must be separate

[[v2.instruments]]
id = "power"
type = "acme.meter"
port = "/dev/ttyNOPE99"         # P:does not exist
wavelenght_nm = 800             # P:unknown key 'wavelenght_nm'

[[v2.instruments]]
id = "power"                    # P:duplicate instrument id 'power'
type = "acme.metre"             # P:unknown instrument type 'acme.metre'
port = "sim://x"

[[v2.instruments]]
id = "dmm2"
type = "acme.dmm"               # P:has no v2 flavor
resource = "GPIB0::5::INSTR"

[[v4.instruments]]
id = "dmm"
type = "acme.dmm"
resource = "GPIB0::five::INSTR" # P:malformed VISA resource name

[[v4.instruments]]
id = "../escape"                # P:is not a plain name
type = "acme.meter"
port = "sim://m"
address = 99                    # P:address must be a whole number from 0 to 15

[[v4.instruments]]              # P:instrument has no 'id'
type = "acme.meter"
port = "sim://m"

[[v4.instruments]]
id = 7                          # P:instrument id must be a name in quotes, got 7
type = "acme.meter"
port = "sim://m"
"""


def planted(text: str) -> list[tuple[int, str]]:
    return [(n, line.split("# P:")[1].strip()) for n, line in enumerate(text.splitlines(), 1)
            if "# P:" in line]


def test_valid_file_has_no_problems(host, tmp_path: Path) -> None:
    lab = parse(VALID, "lab.toml", host, tmp_path)
    assert [i.id for i in lab.instruments()] == ["power", "dmm"]
    assert lab.flavors["v2"].output_dir == (tmp_path / "out" / "v2").resolve()
    assert lab.flavors["v4"].storage == "arrow"


def test_every_planted_problem_is_reported_at_its_line(host, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse(BROKEN, "lab.toml", host, tmp_path)
    got = info.value.problems
    expected = planted(BROKEN)
    assert len(expected) >= 8
    for line, text in expected:
        assert any(p.line == line and text in p.message for p in got), (
            f"line {line}: expected {text!r}; got:\n" + "\n".join(map(str, got)))
    assert all(str(p).startswith("lab.toml:") for p in got)


def test_suggestions(host, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse(BROKEN, "lab.toml", host, tmp_path)
    by_msg = {p.message: p.suggestion for p in info.value.problems}
    sugg = " ".join(by_msg.values())
    assert "'acme.meter'" in sugg          # closest type name
    assert "'wavelength_nm'" in sugg       # closest valid key
    assert "'hdf5'" in sugg                # closest backend
    assert "'power2' is free" in sugg      # a free id
    assert "move it to [[v4.instruments]]" in sugg


def test_toml_syntax_error_has_line(host) -> None:
    with pytest.raises(ConfigError) as info:
        parse('[daqhub]\noutput_dir = "x"\n[[v2.instruments]\n', "bad.toml", host)
    (p,) = info.value.problems
    assert p.line == 3 and "not valid TOML" in p.message


def test_unwritable_output_dir(host, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(ConfigError, match="cannot be created"):
        parse(VALID.replace('output_dir = "out"', f'output_dir = "{blocker}/sub"'), "l.toml",
              host, tmp_path)


def test_validate_refuses_an_output_dir_exactly_when_storage_does(host, tmp_path: Path) -> None:
    """/proc passes every permission test for root, but nothing can be created in it:
    validate and storage run the same probe, so both refuse it with the same reason."""
    from daqhub.storage import check_output_dirs

    target = Path("/proc/daqhub-test")
    [storage_says] = check_output_dirs(target / "v2", None)
    with pytest.raises(ConfigError) as info:
        parse(VALID.replace('output_dir = "out"', f'output_dir = "{target}"'), "l.toml", host,
              tmp_path)
    said = [p.message for p in info.value.problems if "output directory" in p.message]
    reason = storage_says.split(": ", 1)[1]  # "cannot be created: /proc is not writable (..)"
    assert reason.startswith("cannot be created: /proc is not writable")
    assert said and all(m.endswith(reason) for m in said), (said, storage_says)


def test_same_output_dirs_rejected(host, tmp_path: Path) -> None:
    text = VALID.replace('storage = "arrow"', 'storage = "arrow"\noutput_dir = "same"').replace(
        'storage = "hdf5"', 'storage = "hdf5"\noutput_dir = "same"')
    with pytest.raises(ConfigError, match="must be separate"):
        parse(text, "l.toml", host, tmp_path)


def test_load_reads_files_and_resolves_relative_to_them(host, tmp_path: Path) -> None:
    f = tmp_path / "lab.toml"
    f.write_text(VALID)
    lab = load(f, host)
    assert lab.output_dir == (tmp_path / "out").resolve()
    with pytest.raises(ConfigError, match=r"missing\.toml: the lab file does not exist"):
        load(tmp_path / "missing.toml", host)


def test_locate_keys_handles_multiline_values() -> None:
    text = 'a = """\nb = 1\n"""\nc = [\n  1,\n]\n[t]\nd = 2\n[[arr]]\ne = 1\n[[arr]]\ne = 2\n'
    where = locate_keys(text)
    assert where[("a",)] == 1 and ("b",) not in where
    assert where[("c",)] == 4 and where[("t", "d")] == 8
    assert where[("arr", 1, "e")] == 12


def test_schema_covers_plugin_blocks(host) -> None:
    schema = lab_schema(host)
    branches = schema["properties"]["v2"]["properties"]["instruments"]["items"]["oneOf"]
    meter = next(b for b in branches if b["properties"]["type"] == {"const": "acme.meter"})
    assert "wavelength_nm" in meter["properties"] and "port" in meter["required"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_random_bytes_never_traceback(host, data: bytes) -> None:
    try:
        parse(data, "fuzz.toml", host, Path(os.devnull).parent)
    except ConfigError as exc:
        assert exc.problems


toml_scalars = st.one_of(st.integers(), st.text(max_size=10), st.booleans(), st.floats(
    allow_nan=False))
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["id", "type", "port", "resource", "poll_hz", "storage", "enabled", "instruments", "x"]),
        inner, max_size=4)), max_leaves=12)


def _to_toml(d: dict) -> str:
    import json
    lines = []
    for k, v in d.items():
        lines.append(f"{json.dumps(k)} = {_inline(v)}")
    return "\n".join(lines)


def _inline(v) -> str:
    import json
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v) if not isinstance(v, float) or v == v and abs(v) != float("inf") else "0"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_inline(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_inline(x)}" for k, x in v.items()) + "}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["daqhub", "v2", "v4", "storage", "other"]), toml_values,
                       max_size=4))
def test_random_toml_never_tracebacks(host, tmp_path: Path, doc: dict) -> None:
    try:
        parse(_to_toml(doc), "fuzz.toml", host, tmp_path)
    except ConfigError as exc:
        assert all(p.line >= 1 for p in exc.problems)


def test_output_dir_override_keeps_line_numbers(host, tmp_path: Path) -> None:
    """`daqhub run --output-dir` replaces the file's output_dir without touching its text."""
    lab = parse(VALID, "lab.toml", host, tmp_path, output_dir=tmp_path / "elsewhere")
    assert lab.flavors["v2"].output_dir == (tmp_path / "elsewhere" / "v2").resolve()
    with pytest.raises(ConfigError) as info:
        parse(BROKEN, "lab.toml", host, tmp_path, output_dir=tmp_path / "elsewhere")
    assert any(p.line == 6 and "hdf55" in p.message for p in info.value.problems)


def test_plugin_problems_are_reported_at_the_line_they_name(host) -> None:
    import types

    from daqhub.hookspecs import hookimpl
    from daqhub.specs import ConfigProblem

    @hookimpl
    def daqhub_validate_config(config):
        return [ConfigProblem("wavelength outside the detector's range",
                              ("v2", "instruments", 0, "wavelength_nm")),
                "a sentence without a place",
                42]

    host.register(types.SimpleNamespace(daqhub_validate_config=daqhub_validate_config),
                  "checker", "checker-dist", "0.1")
    with pytest.raises(ConfigError) as info:
        parse(VALID, "lab.toml", host)
    lines = VALID.splitlines()
    found = {p.message: p.line for p in info.value.problems}
    assert found == {
        "wavelength outside the detector's range (from plugin checker-dist)":
            lines.index("wavelength_nm = 800") + 1,
        "a sentence without a place (from plugin checker-dist)": 1,
        # a check that returns garbage is broken: the lab must not read as checked
        "its lab check failed: hook daqhub_validate_config returned a int, expected "
        "ConfigProblem or str (from plugin checker-dist)": 1,
    }
    [bad] = [p for p in host.problems if p.distribution == "checker-dist"]
    assert "returned a int, expected ConfigProblem or str" in bad.error


def test_one_visa_name_is_checked_as_a_lab_file_checks_it() -> None:
    """``daqhub new`` asks for one VISA name and must refuse what validate would refuse."""
    from daqhub.config import visa_resource_problem

    assert visa_resource_problem("GPIB0::5::INSTR") is None
    problem = visa_resource_problem("garbage name")
    assert problem is not None and "'garbage name'" in problem


def test_a_second_routine_of_one_instrument_is_refused_at_its_line(host, tmp_path: Path
                                                                   ) -> None:
    """Two routines of one instrument ran at once and interleaved their commands: rows were
    stored as done at positions the other routine had moved to. Routines of different
    instruments still run side by side."""
    routines = ('\n[[routines]]\ninstrument = "power"\nsteps = [["sleep", 1]]\n'
                '\n[[routines]]\ninstrument = "dmm"\nsteps = [["sleep", 1]]\n')
    lab = parse(VALID + routines, "lab.toml", host, tmp_path)
    assert [r["instrument"] for r in lab.routines] == ["power", "dmm"]
    text = VALID + routines + '\n[[routines]]\ninstrument = "power"\nsteps = [["sleep", 2]]\n'
    lines = [n for n, t in enumerate(text.splitlines(), 1) if t == 'instrument = "power"']
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host, tmp_path)
    [problem] = info.value.problems
    assert problem.line == lines[1]
    assert f"a second routine for 'power' (its first routine names it at line {lines[0]})" \
        in problem.message


def test_paths_in_the_lab_file_expand_the_home_directory(host, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """``~/data`` used to become a directory named ``~`` beside the lab file."""
    home = tmp_path / "home"
    (home / "sims").mkdir(parents=True)
    (home / "sims" / "dmm.yaml").write_text(
        "spec: '1.1'\ndevices: {dmm: {}}\nresources: {'GPIB0::5::INSTR': {device: dmm}}\n")
    monkeypatch.setenv("HOME", str(home))
    labdir = tmp_path / "lab"
    labdir.mkdir()
    text = VALID.replace('output_dir = "out"', 'output_dir = "~/daqhub-data"').replace(
        'storage = "arrow"', 'storage = "arrow"\noutput_dir = "~/v4-data"').replace(
        'visa_backend = "@sim"', 'visa_backend = "~/sims/dmm.yaml@sim"')
    lab = parse(text, "lab.toml", host, labdir)
    assert lab.output_dir == (home / "daqhub-data").resolve()
    assert lab.flavors["v2"].output_dir == (home / "daqhub-data" / "v2").resolve()
    assert lab.flavors["v4"].output_dir == (home / "v4-data").resolve()
    [dmm] = lab.flavors["v4"].instruments
    assert dmm.block["visa_backend"] == f"{(home / 'sims' / 'dmm.yaml').resolve()}@sim"
    assert list(labdir.iterdir()) == []


def test_an_output_dir_given_beside_the_lab_expands_the_home_directory(
        host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``open_lab(lab, output_dir="~/x")`` and ``daqhub run --output-dir`` (quoted, so no
    shell expands it) made a directory named ``~`` in the working directory."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    (work / "lab.toml").write_text(VALID)
    from_api = load_lab_config(str(work / "lab.toml"), host, "~/api-data")
    from_cli = load_lab(str(work / "lab.toml"), host, "~/cli-data")
    assert from_api.output_dir == (home / "api-data").resolve()
    assert from_cli.output_dir == (home / "cli-data").resolve()
    assert load_lab_config(str(work / "lab.toml"), host, "rel").output_dir == work / "rel"
    (home / "lab.toml").write_text(VALID)
    from_home = load_lab_config("~/lab.toml", host, None)  # a script's own "~" path
    assert from_home.output_dir == (home / "out").resolve()
    assert sorted(p.name for p in work.iterdir()) == ["lab.toml"]


@pytest.mark.parametrize("iid", ["run_id", "step", "repeat"])
def test_an_instrument_named_like_a_points_column_is_refused_at_its_id(host, tmp_path: Path,
                                                                       iid: str) -> None:
    """A mover named ``repeat`` put its setpoints in the points table's int ``repeat``
    column (two columns of one name, the run exiting 0); named ``step``, records.h5 could
    not be written at all, settings included."""
    text = VALID.replace('id = "power"', f'id = "{iid}"') + (
        f'\n[[routines]]\ninstrument = "{iid}"\nsteps = [["sleep", 1]]\n')
    line = text.splitlines().index(f'id = "{iid}"') + 1
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host, tmp_path)
    [problem] = info.value.problems  # the routine naming it is not "unknown" as well
    assert problem.line == line
    assert f"instrument id {iid!r} is reserved: every points table" in problem.message
    assert f"has a column {iid!r}" in problem.message
