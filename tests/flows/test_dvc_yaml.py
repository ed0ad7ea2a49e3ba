"""dvc.yaml is the one DAG: it matches the stage registry, its code deps cover what each
stage imports, and the refresh groups respect its order."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.groups import GROUPS, check_groups
from flows.pipeline import load_graph
from medae.stages import registry
from tests.flows.code_deps import code_closure

ROOT = Path(__file__).resolve().parents[2]
# DVC's own use of an older pygtrie API; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:dvc.*")
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.fixture(scope="module")
def graph():
    return load_graph(ROOT)


def test_every_stage_is_medae_run_and_registered():
    assert {name: s["cmd"] for name, s in DVC.items()} == {
        name: f"medae run {name}" for name in DVC}
    assert set(DVC) == set(registry()), "dvc.yaml and `medae stages` must list the same stages"


def test_order_follows_dvc_graph(graph):
    order = [s.name for s in graph]
    assert order.index("ingest_ehr") < order.index("clean_ehr") < order.index("featurize_ehr")
    for info in graph:
        assert all(order.index(up) < order.index(info.name) for up in info.upstream)
    export = next(s for s in graph if s.name == "export_latents")
    assert {"featurize_ehr", "window_waveforms", "train_ehr", "train_waveforms"} <= set(
        export.upstream)
    check_groups(graph)
    assert sorted(order) == sorted(s for members in GROUPS.values() for s in members)


@pytest.mark.parametrize("stage", sorted(DVC))
def test_code_deps_cover_what_the_stage_imports(stage):
    module = registry()[stage].partition(":")[0]
    deps = [d for d in DVC[stage]["deps"] if isinstance(d, str) and d.startswith("medae/")]
    uncovered = sorted(f for f in code_closure(module)
                       if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
    assert not uncovered, f"add to dvc.yaml stages.{stage}.deps: {uncovered}"
    assert all((ROOT / d).exists() for d in deps), "a code dep in dvc.yaml does not exist"


def test_no_stage_depends_on_a_path_outside_the_project(graph):
    """DVC refuses to run a stage whose dependency is missing: a dependency outside the
    checkout (the shared MIT-BIH copy of ``evaluate.mitdb``) would fail ``make demo`` in a
    clone that has none beside it. ``evaluate`` reads MIT-BIH when present and says so when
    not; its path is a tracked param."""
    outside = {info.name: d for info in graph for d in info.deps
               if not (ROOT / d).resolve().is_relative_to(ROOT)}
    assert not outside, f"dependencies outside the project: {outside}"
