"""Mistakes in a custom variable dictionary: one ConfigError (exit 2) naming the file, the
variable and the key, never a traceback and never a silently different dictionary."""

from __future__ import annotations

import re

import pytest

from medae.ehr.dictionary import load_dictionary
from medae.errors import ConfigError

HR = ("name: heart_rate, code: VITAL//HR, unit: bpm, units: {bpm: [1, 0]}, "
      "itemids: {mimic4: [220045]}, range: [0, 0, 350, 390]")


def _dictionary(tmp_path, *entries: str, head: str = "version: 1\n") -> str:
    path = tmp_path / "my_vars.yaml"
    path.write_text(head + "variables:\n" + "".join(f"  - {{{e}}}\n" for e in entries))
    return str(path)


def _refused(path: str, *parts: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_dictionary(path)
    message = str(info.value)
    assert info.value.exit_code == 2
    assert message.startswith(f"{path}: "), message
    for part in parts:
        assert part in message, message
    return message


def test_a_valid_custom_dictionary_loads(tmp_path):
    loaded = load_dictionary(_dictionary(tmp_path, HR))
    assert loaded.by_code()["VITAL//HR"].itemids["mimic4"] == (220045,)


@pytest.mark.parametrize(("entry", "key", "why"), [
    (HR.replace("bpm: [1, 0]", "bpm: [one, 0]"), "units.bpm[0]", "valid number"),
    (HR.replace("mimic4: [220045]", "carevue: [2l1]"), "itemids.carevue[0]", "valid integer"),
    (HR.replace("{mimic4: [220045]}", "[220045]"), "itemids", "expected a mapping"),
    (HR.replace("bpm: [1, 0]", "bpm: 1"), "units.bpm", "valid tuple"),
    (HR + ", item_units: {x220045: bpm}", "item_units.x220045", "valid integer"),
    (HR + ", value_rules: [{above: high, scale: 0.01}]", "value_rules[0].above", "valid number"),
    (HR + ", agg: median", "agg", "'mean', 'sum', 'last', 'min' or 'max'"),
])
def test_a_value_of_the_wrong_type_names_file_variable_and_key(tmp_path, entry, key, why):
    _refused(_dictionary(tmp_path, entry), "variable 'heart_rate'", f"key '{key}'", why)


def test_an_unclosed_brace_names_the_file_and_line(tmp_path):
    path = tmp_path / "my_vars.yaml"
    path.write_text("variables:\n  - {name: heart_rate, code: VITAL//HR\n  - {name: x}\n")
    message = _refused(str(path), "not valid YAML", "line ", "started at line 2")
    assert "unicode string" not in message


def test_a_missing_or_unreadable_file_is_a_config_error(tmp_path):
    _refused(str(tmp_path / "nope.yaml"), "variable dictionary not found")
    (tmp_path / "latin1.yaml").write_bytes(b"variables: [\xff]\n")
    _refused(str(tmp_path / "latin1.yaml"), "cannot read the variable dictionary")


@pytest.mark.parametrize(("text", "why"), [
    ("variables: 3\n", "key 'variables': expected a list"),
    ("- a\n- b\n", "expected a mapping with 'version' and 'variables'"),
    ("version: one\nvariables: []\n", "key 'version'"),
    ("variables:\n  - just a string\n", "variables[0]: expected a mapping"),
])
def test_a_wrong_top_level_is_a_config_error(tmp_path, text, why):
    path = tmp_path / "my_vars.yaml"
    path.write_text(text)
    _refused(str(path), why)


def test_messages_do_not_quote_the_values(tmp_path):
    entry = HR.replace("range: [0, 0, 350, 390]", "range: [0, 0, 350, secret9]")
    message = _refused(_dictionary(tmp_path, entry), "key 'range[3]'")
    assert not re.search("secret9", message)
