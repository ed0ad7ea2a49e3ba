"""The project's own MIMIC-style records (``medae synth``): nested pNN/pNNNNNNNN folders,
multi-segment, 250 Hz ECG beside 125 Hz PLETH/ABP, injected artefacts, linked ICU stays."""

from __future__ import annotations

import polars as pl
import pytest


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory, make_wf_params):
    generate = pytest.importorskip("medae.synth.generate").generate
    from medae.stages import run_stage
    from medae.waveforms import catalog, windows

    root = tmp_path_factory.mktemp("synth")
    generate(root / "src", subjects=6, seed=3, waveform_share=1.0, waveform_seconds=120.0)
    params = make_wf_params(root / "src" / "waveforms", root / "out",
                            f"ehr.source={root / 'src'}", f"ingest_ehr.out={root / 'raw'}")
    run_stage("ingest_ehr", params)  # the EHR side's stays are what windows link to
    catalog.run(params)
    return params, pl.read_parquet(root / "out" / "catalog.parquet"), windows.run(params), root


def test_synth_records_catalogued_with_subjects_and_native_rates(synth_run):
    _, cat, _, _ = synth_run
    assert cat.height > 0 and cat["subject_id"].null_count() == 0
    assert all(p.split("/")[1] == f"p{s}" for p, s in cat.select("path", "subject_id").rows())
    assert cat["base_datetime"].null_count() == 0
    rates = {(c, f) for cs, fs in cat.select("channels", "fs").rows()
             for c, f in zip(cs, fs, strict=True)}
    assert ("II", 250.0) in rates and ("PLETH", 125.0) in rates


def test_synth_windows_linked_to_stays_and_artefacts_dropped(synth_run):
    params, cat, summary, root = synth_run
    assert summary["quarantined"] == 0 and summary["windows_produced"] > 0
    dropped = summary["windows_dropped"]
    assert dropped["gap"] > 0 and dropped["clipping"] + dropped["flat"] > 0
    df = pl.read_parquet(params.path(params.window_waveforms.out) / "*.parquet")
    assert set(df["fs"]) == {125.0}
    stays = pl.read_csv(root / "src" / "icu" / "icustays.csv.gz",
                        schema_overrides={"intime": pl.Datetime("us"),
                                          "outtime": pl.Datetime("us")})
    linked = df.filter(pl.col("stay_id").is_not_null()).join(
        stays.select("stay_id", "subject_id", "intime", "outtime"), on="stay_id")
    assert linked.height == df["stay_id"].drop_nulls().len() > 0
    assert (linked["subject_id"] == linked["subject_id_right"]).all()
    assert ((linked["window_start"] >= linked["intime"])
            & (linked["window_start"] < linked["outtime"])).all()
