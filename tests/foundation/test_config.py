"""params.yaml loading: typed, frozen, unknown keys and bad values rejected with key + file."""

import re
from pathlib import Path

import pydantic
import pytest

from medae.config import load_params, parse_override
from medae.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_project_params_load_and_match_defaults():
    params = load_params(ROOT / "params.yaml")
    assert params.root == ROOT
    assert params.ehr.source == "data/source/ehr"
    assert params.waveforms.source == "data/source/waveforms"
    assert params.path(params.ehr.source) == ROOT / "data/source/ehr"


def test_every_default_is_written_in_params_yaml():
    """params.yaml is the single source: each section key must appear in the file."""
    import yaml

    written = yaml.safe_load((ROOT / "params.yaml").read_text())
    defaults = load_params(ROOT / "params.yaml").model_dump()
    for section, keys in defaults.items():
        assert section in written, f"section {section} missing from params.yaml"
        missing = set(keys) - set(written[section] or {})
        assert not missing, f"params.yaml section {section} lacks keys {sorted(missing)}"


def test_params_are_frozen():
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(pydantic.ValidationError):
        params.ingest_ehr.shards = 3


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("params.yaml", "ingest_ehr:\n  shardz: 4\n",
     r"params.yaml: unknown key 'ingest_ehr.shardz'"),
    ("p.yaml", "ingest_ehrr:\n  shards: 4\n", r"p.yaml: unknown key 'ingest_ehrr'"),
    ("params.yaml", "ingest_ehr:\n  shards: many\n",
     r"params.yaml: key 'ingest_ehr.shards'.*integer.*'many'"),
], ids=["unknown_key", "unknown_section", "bad_type"])
def test_bad_params_file_names_key_and_file(tmp_path, name, text, expected):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_params(f)


def test_set_override_typed_and_scoped(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("ingest_ehr:\n  shards: 2\n")
    params = load_params(f, ["ingest_ehr.shards=5", "ehr.source=/abs/src"])
    assert params.ingest_ehr.shards == 5
    assert params.path(params.ehr.source) == Path("/abs/src")
    assert load_params(f).ingest_ehr.shards == 2  # the file itself is unchanged


def test_set_on_a_section_shared_by_a_yaml_anchor_changes_that_section_only(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train_ehr:\n  optim: &optim\n    epochs: 7\n"
                 "train_waveforms:\n  optim: *optim\n")
    params = load_params(f, ["train_ehr.optim.epochs=5"])
    assert (params.train_ehr.optim.epochs, params.train_waveforms.optim.epochs) == (5, 7)


@pytest.mark.parametrize("bad", ["noequals", "=3", "shards=3", "a..b=1", "ingest_ehr.shards=[1"])
def test_bad_set_syntax(bad):
    with pytest.raises(ConfigError, match="--set"):
        parse_override(bad)


def test_bad_set_unknown_key():
    expected = r"--set 'ingest_ehr.nope=1'.*unknown key 'ingest_ehr.nope'"
    with pytest.raises(ConfigError, match=expected):
        load_params(None, ["ingest_ehr.nope=1"])


@pytest.mark.parametrize("item, problem", [
    # an unknown model kind fails the whole model section (a tagged union)
    ("train_ehr.model.kind=foo", r"key 'train_ehr\.model\.kind': Input tag 'foo' found using "
                                 r"'kind' does not match"),
    # Pydantic names the variant (train_ehr.model.denoising.hidden): the --set's key is shown
    ("train_ehr.model.hidden=abc", r"key 'train_ehr\.model\.hidden': Input should be a valid"),
    ("train_ehr.model.nope=1", r"unknown key 'train_ehr\.model\.nope'"),
])
def test_a_bad_value_inside_a_section_blames_its_set_not_the_file(item, problem):
    with pytest.raises(ConfigError, match=rf"^--set '{re.escape(item)}' \(params .*params\.yaml"
                                          rf"\): {problem}"):
        load_params(None, [item])


def test_config_doctests():
    from tests.doctests import assert_examples_pass

    assert_examples_pass("medae.config")


def test_set_into_a_value_is_an_error(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("ingest_ehr:\n  shards: 2\n")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_params(f, ["ingest_ehr.shards.x=1"])


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "absent.yaml")


def test_relative_sqlite_uri_made_absolute(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("mlflow:\n  tracking_uri: sqlite:///mlflow.db\n")
    assert load_params(f).mlflow_uri() == f"sqlite:///{tmp_path}/mlflow.db"
