"""EHR test fixtures: the production params shrunk to temp folders, and pipelines run once."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from medae.config import Params, load_params
from medae.stages import run_stage

ROOT = Path(__file__).resolve().parents[2]
EHR_STAGES = ("ingest_ehr", "clean_ehr", "featurize_ehr")


def ehr_params(work: Path, source: Path, *extra: str) -> Params:
    """params.yaml with every EHR output under ``work`` and in-process execution."""
    sets = [
        f"ehr.source={source}", f"ingest_ehr.out={work}/raw", f"clean_ehr.out={work}/meds",
        f"clean_ehr.report={work}/reports/dq_ehr.json", f"featurize_ehr.out={work}/windows",
        f"featurize_ehr.stats={work}/ehr_stats.json", "executor.workers=1",
        "executor.progress=false", *extra,
    ]
    return load_params(ROOT / "params.yaml", sets)


def run_all(params: Params) -> dict[str, dict]:
    return {name: run_stage(name, params) for name in EHR_STAGES}


def write_csv(df: pl.DataFrame, path: Path) -> None:
    """Write a table the way MIMIC ships it: CSV, gzip-compressed when the name says so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb", compresslevel=1) as fh:
            df.write_csv(fh)
    else:
        df.write_csv(path)


@pytest.fixture(scope="session")
def demo_run(mimic_demo: Path, tmp_path_factory) -> tuple[Params, dict[str, dict]]:
    """The whole EHR path on the real MIMIC-IV demo (no chartevents), run once."""
    params = ehr_params(tmp_path_factory.mktemp("ehr_demo"), mimic_demo)
    return params, run_all(params)


@pytest.fixture(scope="session")
def synth_source(tmp_path_factory) -> Path:
    """Generated MIMIC-IV-layout data with chartevents and artifacts (200 subjects)."""
    from medae.synth.generate import generate

    out = tmp_path_factory.mktemp("ehr_synth_src")
    generate(out, subjects=200, seed=7, waveforms=False)
    return out


@pytest.fixture(scope="session")
def synth_run(synth_source: Path, tmp_path_factory) -> tuple[Params, dict[str, dict]]:
    params = ehr_params(tmp_path_factory.mktemp("ehr_synth"), synth_source)
    return params, run_all(params)
