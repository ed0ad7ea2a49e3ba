"""featurize_ehr: train-only statistics, the imputation chain, window geometry."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from medae.ehr.featurize import _normalised_grid, window_starts
from medae.stages import run_stage

from .conftest import ehr_params


def _stats_after_changing(demo_run, tmp_path, split: str) -> dict:
    """Re-fit the statistics after changing every in-stay value of one subject of ``split``."""
    params, _ = demo_run
    meds = params.path(params.clean_ehr.out)
    copy = tmp_path / "meds"
    shutil.copytree(meds, copy)
    splits = pl.read_parquet(copy / "metadata" / "subject_splits.parquet")
    members = set(splits.filter(pl.col("split") == split)["subject_id"].to_list())
    for shard in sorted((copy / "data").glob("*.parquet")):
        df = pl.read_parquet(shard)
        target = (pl.col("subject_id").is_in(sorted(members)) & pl.col("stay_id").is_not_null()
                  & pl.col("code").str.starts_with("LAB//") & pl.col("numeric_value").is_not_null())
        if df.filter(target).height:
            df = df.with_columns(numeric_value=pl.when(target).then(
                pl.col("numeric_value") * 3 + 1).otherwise(pl.col("numeric_value")))
            df.write_parquet(shard)
            break
    else:
        pytest.fail(f"no {split} subject with in-stay lab values")
    changed = ehr_params(tmp_path / "work", params.ehr.source,
                         f"ingest_ehr.out={params.path(params.ingest_ehr.out)}",
                         f"clean_ehr.out={copy}")
    run_stage("featurize_ehr", changed)
    return json.loads(changed.path(changed.featurize_ehr.stats).read_text())


def test_statistics_come_from_train_subjects_only(demo_run, tmp_path):
    params, _ = demo_run
    original = json.loads(params.path(params.featurize_ehr.stats).read_text())
    assert original["fitted_on"] == "train"
    held_out = _stats_after_changing(demo_run, tmp_path / "held", "held_out")
    assert held_out["mean"] == original["mean"] and held_out["std"] == original["std"]
    train = _stats_after_changing(demo_run, tmp_path / "train", "train")
    assert train["mean"] != original["mean"]  # the check above can fail


def test_imputation_chain_ffill_then_train_mean():
    view = {"variables": ["A"], "bin_hours": 1, "max_ffill_hours": 2, "delta_max_hours": 4.0}
    stats = {"mean": {"A": 10.0}, "std": {"A": 2.0}}
    grid = np.array([[np.nan], [14.0], [np.nan], [np.nan], [np.nan], [np.nan]])
    values, mask, delta = _normalised_grid(grid, np.array([0, 6]), stats, view)
    # before the first measurement: train mean (z=0); then 14 carried 2 h; then the mean again
    assert values[:, 0].tolist() == [0.0, 2.0, 2.0, 2.0, 0.0, 0.0]
    assert mask[:, 0].tolist() == [0, 1, 0, 0, 0, 0]
    # hours since last (never observed: since intime), capped at 4 h and scaled to 0..1
    assert delta[:, 0].tolist() == [0.25, 0.0, 0.25, 0.5, 0.75, 1.0]


def test_ffill_does_not_cross_stays():
    view = {"variables": ["A"], "bin_hours": 1, "max_ffill_hours": 10, "delta_max_hours": 10.0}
    stats = {"mean": {"A": 0.0}, "std": {"A": 1.0}}
    grid = np.array([[5.0], [np.nan], [np.nan], [np.nan]])
    values, _, _ = _normalised_grid(grid, np.array([0, 2, 4]), stats, view)
    assert values[:, 0].tolist() == [5.0, 5.0, 0.0, 0.0]


def test_windows_on_generated_chartevents(synth_run):
    params, summaries = synth_run
    cfg = params.featurize_ehr
    stats = json.loads(params.path(cfg.stats).read_text())
    windows = pl.read_parquet(params.path(cfg.out) / "*.parquet")
    stays = pl.read_parquet(params.path(params.ingest_ehr.out) / "icustays" / "*.parquet")
    los = ((stays["outtime"] - stays["intime"]).dt.total_seconds() / 3600).to_list()
    expected = sum(len(window_starts(h, cfg.window_hours, cfg.stride_hours)) for h in los)
    assert windows.height == expected == summaries["featurize_ehr"]["windows_written"]
    n_bins, n_vars = stats["n_bins"], len(stats["variables"])
    values = np.stack(windows["values"].to_numpy()).reshape(-1, n_bins, n_vars)
    mask = np.stack(windows["mask"].to_numpy()).reshape(-1, n_bins, n_vars)
    assert not np.isnan(values).any() and set(np.unique(mask)) <= {0.0, 1.0}
    hr = stats["variables"].index("VITAL//HEART_RATE")
    assert mask[:, :, hr].mean() > 0.5  # generated HR is charted about hourly
    train = (windows["split"] == "train").to_numpy()
    observed = values[train][:, :, hr][mask[train][:, :, hr] == 1]
    assert abs(observed.mean()) < 0.3  # z-scored with train statistics
    assert 30 < stats["mean"]["VITAL//HEART_RATE"] < 200  # artifacts were removed before
    assert (windows["window_end"] - windows["window_start"]).dt.total_hours().unique().to_list() \
        == [cfg.window_hours]


def _codecs(folder) -> set[str]:
    import pyarrow.parquet as pq

    groups = [pq.read_metadata(p).row_group(0) for p in sorted(folder.glob("part_*.parquet"))]
    return {g.column(i).compression for g in groups for i in range(g.num_columns)}


def test_window_codec_is_lz4_and_a_new_codec_rewrites_every_part(demo_run, tmp_path):
    params, _ = demo_run
    sets = [f"ingest_ehr.out={params.path(params.ingest_ehr.out)}",
            f"clean_ehr.out={params.path(params.clean_ehr.out)}"]
    fast = ehr_params(tmp_path, params.ehr.source, *sets)
    first = run_stage("featurize_ehr", fast)
    windows = fast.path(fast.featurize_ehr.out)
    assert _codecs(windows) == {"LZ4"} and first["recomputed"]
    small = ehr_params(tmp_path, params.ehr.source, *sets, "featurize_ehr.compression=zstd")
    assert run_stage("featurize_ehr", small)["recomputed"] == first["recomputed"]
    assert _codecs(windows) == {"ZSTD"}
    rows = pl.read_parquet(windows / "part_*.parquet")
    assert rows.equals(pl.read_parquet(params.path(params.featurize_ehr.out) / "part_*.parquet"))
    assert run_stage("featurize_ehr", small)["recomputed"] == []


def test_window_writer_refuses_a_null_value_and_names_the_column(tmp_path):
    from medae.ehr.featurize import write_windows
    from medae.errors import DataError

    windows = pl.DataFrame({"stay_id": [1, 2], "mask": [[1.0, 0.0], [1.0, None]]},
                           schema_overrides={"mask": pl.List(pl.Float32)})
    with pytest.raises(DataError, match=r"part\.parquet: column 'mask' holds nulls"):
        write_windows(windows, tmp_path / "part.parquet", "lz4")
    assert not (tmp_path / "part.parquet").exists()
    # written to a temporary, the error names the output it stands for
    with pytest.raises(DataError) as caught:
        write_windows(windows, tmp_path / ".part.parquet.tmp", "lz4", name=tmp_path / "p.parquet")
    assert str(caught.value).startswith(f"{tmp_path / 'p.parquet'}: column 'mask' holds nulls")
