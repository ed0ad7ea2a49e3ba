"""Mistakes in clean_ehr's configuration: in a custom variable dictionary, one ConfigError
(exit 2) naming the file, the variable and the key, never a traceback and never a silently
different dictionary; split fractions that do not fit, refused with the params."""

from __future__ import annotations

import re

import pytest

from medae.config import load_params
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


@pytest.mark.parametrize(("entry", "expected"), [
    (HR + ", agregation: max", "unknown key 'agregation' (did you mean 'agg'?)"),
    (HR + ", valu_rules: [{above: 1, scale: 2}]", "unknown key 'valu_rules' (did you mean "
                                                   "'value_rules'?)"),
    (HR.replace("mimic4:", "mimic:"), "unknown key 'itemids.mimic' (did you mean 'mimic4'?)"),
    (HR + ", value_rules: [{abov: 1, scale: 2}]", "unknown key 'value_rules[0].abov' (did you "
                                                   "mean 'above'?)"),
    (HR + ", colour: red", "unknown key 'colour' (known: name, code, description"),
])
def test_an_unknown_key_is_refused_with_the_closest_known_one(tmp_path, entry, expected):
    _refused(_dictionary(tmp_path, entry), f"variable 'heart_rate': {expected}")


def test_an_unknown_top_level_key_is_refused(tmp_path):
    _refused(_dictionary(tmp_path, HR, head="versoin: 1\n"),
             "unknown key 'versoin' (did you mean 'version'?)")


def test_a_key_written_twice_is_refused(tmp_path):
    path = _dictionary(tmp_path, HR + ", agg: max,\n     agg: mean")
    _refused(path, "found the key 'agg' twice at line 4")


def test_more_than_one_value_rule_is_refused(tmp_path):
    # clean_ehr applies one threshold and one scale per variable: a second rule was ignored
    entry = HR + ", value_rules: [{above: 1, scale: 0.01}, {at_most: 0.1, scale: 10}]"
    _refused(_dictionary(tmp_path, entry), "variable 'heart_rate': key 'value_rules': "
             "one rule per variable")


@pytest.mark.parametrize(("rule", "why"), [
    ("{above: 1, at_most: 0.5, scale: 2}", "exactly one of 'above' or 'at_most'"),
    ("{scale: 2}", "exactly one of 'above' or 'at_most'"),
    ("{above: 1}", "missing 'value_rules[0].scale'"),
    ("{above: 1, scale: 0}", "key 'value_rules[0].scale'"),
])
def test_a_value_rule_needs_one_threshold_and_a_scale(tmp_path, rule, why):
    _refused(_dictionary(tmp_path, HR + f", value_rules: [{rule}]"), "variable 'heart_rate'", why)


def test_the_one_value_rule_is_kept(tmp_path):
    loaded = load_dictionary(_dictionary(tmp_path, HR + ", value_rules: [{above: 1, scale: 2}]"))
    assert loaded.variables[0].value_rules == ({"above": 1.0, "scale": 2.0},)


def test_two_spellings_of_one_unit_are_refused(tmp_path):
    entry = HR.replace("bpm: [1, 0]", "bpm: [1, 0], BPM: [2, 0]")
    _refused(_dictionary(tmp_path, entry), "units 'BPM': the same unit as another key")


def test_item_units_of_an_itemid_the_variable_does_not_map_are_refused(tmp_path):
    _refused(_dictionary(tmp_path, HR + ", item_units: {220046: bpm}"),
             "item_units 220046: not one of the variable's itemids")


@pytest.mark.parametrize("sets", [
    ["clean_ehr.train_fraction=0.9", "clean_ehr.tuning_fraction=0.2"],
    ["clean_ehr.tuning_fraction=0.5"],  # with the default train_fraction 0.8
])
def test_split_fractions_adding_to_more_than_one_are_refused(sets):
    # they gave train 90%, tuning 10% and no held_out, without a word
    with pytest.raises(ConfigError) as info:
        load_params(None, sets)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "clean_ehr.train_fraction" in message and "clean_ehr.tuning_fraction" in message
    assert "more than 1" in message and sets[-1] in message


@pytest.mark.parametrize(("train", "tuning"), [(0.7, 0.3), (0.8, 0.1), (0.9, 0.0)])
def test_split_fractions_up_to_one_are_accepted(train, tuning):
    params = load_params(None, [f"clean_ehr.train_fraction={train}",
                                f"clean_ehr.tuning_fraction={tuning}"])
    assert (params.clean_ehr.train_fraction, params.clean_ehr.tuning_fraction) == (train, tuning)
