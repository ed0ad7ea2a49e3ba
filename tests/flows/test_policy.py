"""The training policy of the refresh, case by case."""

from __future__ import annotations

import doctest

import pytest

import flows.pipeline as pipeline
import flows.policy as policy
import flows.report as report
from flows.policy import decide_training


@pytest.mark.parametrize(("mode", "age", "changed", "expected"), [
    ("if_needed", None, False, (True, True)),    # no champion: train even if DVC is happy
    ("if_needed", 3.0, False, (True, False)),    # nothing changed: DVC will skip
    ("if_needed", 3.0, True, (False, False)),    # changed, champion too recent: hold
    ("if_needed", 7.0, True, (True, False)),     # changed and old enough: DVC runs it
    ("always", 0.1, False, (True, True)),
    ("never", None, True, (False, False)),
])
def test_training_policy(mode, age, changed, expected):
    decision = decide_training(mode, age, changed, retrain_every_days=7)
    assert (decision.run, decision.force) == expected
    assert decision.reason


def test_doctests():
    for module in (pipeline, policy, report):
        assert doctest.testmod(module).failed == 0


def test_output_rows_count_tables_not_caches_or_json(tmp_path):
    import polars as pl

    table = tmp_path / "windows"
    (table / "_binned").mkdir(parents=True)
    (table / "metadata").mkdir()
    pl.DataFrame({"a": [1, 2, 3]}).write_parquet(table / "part_0000.parquet")
    pl.DataFrame({"a": [1]}).write_parquet(table / "_binned" / "cache.parquet")
    pl.DataFrame({"a": [1]}).write_parquet(table / "metadata" / "codes.parquet")
    (table / "_fingerprints.json").write_text("{}")
    (tmp_path / "stats.json").write_text("{}")
    (tmp_path / "broken.parquet").write_text("not parquet")
    rows = report.output_rows(tmp_path, ("windows", "stats.json", "broken.parquet", "none"))
    assert rows == {"windows": 3}


@pytest.mark.parametrize(("mode", "trained", "before", "held"), [
    ("with_training", False, True, True),    # new data alone: keep the last evaluation
    ("with_training", True, True, False),    # a model was trained: evaluate it
    ("with_training", False, False, False),  # no evaluation yet
    ("on_change", False, True, False),
    ("never", True, False, True),
])
def test_evaluation_policy(mode, trained, before, held):
    assert (policy.decide_evaluation(mode, trained, before) is not None) is held
