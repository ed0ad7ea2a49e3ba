"""Stage ``evaluate``: what the latents are worth, autoencoder versus PCA versus raw inputs.

1. EHR imputation: hide a share of the observed held-out entries (exactly as
   :func:`medae.models.corruption.hide_observed` does in training); RMSE of the autoencoder's
   reconstruction on them, as a ratio to train-mean (0 in z-score space) and to forward fill.
2. EHR usefulness: logistic regression on latents / PCA of the same size / the raw input rows,
   predicting ``label_mortality``; fitted on train windows, AUROC on held-out windows.
3. MIT-BIH beats: conv AE trained on the train records, PRD on the test records at two
   compression ratios next to PCA of the same latent size; a linear probe normal (N) versus
   ventricular (V) beats, AUROC for AE latents versus PCA.

PRD variant: ``100 * sqrt(sum((x - x_hat)^2) / sum(x^2))`` pooled over all test beats, on
0.5-40 Hz band-passed beats in mV (mean about 0, so this equals PRDN to within rounding).
The EHR and waveform parts each train their own model (with the ``train_ehr`` model config and
``evaluate.wave_model``), so the evaluation does not depend on what is in the registry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medae.errors import DataError
from medae.io import write_json_atomic

log = logging.getLogger(__name__)

EHR_KEYS = ("ehr_imputation_rmse_ratio_vs_mean", "ehr_imputation_rmse_ratio_vs_ffill",
            "ehr_probe_auroc_ae", "ehr_probe_auroc_pca", "ehr_probe_auroc_raw")
WAVE_KEYS = ("wave_prd_ae_16x", "wave_prd_pca_16x", "wave_prd_ae_32x", "wave_prd_pca_32x",
             "wave_probe_auroc_ae", "wave_probe_auroc_pca")


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def prd(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Percent root-mean-square difference, pooled over all rows.

    >>> prd(np.array([[3.0, 4.0]]), np.array([[3.0, 4.0]])), prd(np.ones((1, 4)), np.zeros((1, 4)))
    (0.0, 100.0)
    """
    x = np.asarray(x, np.float64)
    return float(100.0 * np.sqrt(((x - x_hat) ** 2).sum() / (x**2).sum()))


def probe_auroc(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                test_y: np.ndarray, max_iter: int, seed: int) -> float | None:
    """AUROC of a standardised logistic regression; None when a split has a single class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2 or len(np.unique(test_y)) < 2:
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter,
                                                               random_state=seed))
    probe.fit(train_x, train_y)
    return float(roc_auc_score(test_y, probe.predict_proba(test_x)[:, 1]))


def pca(train: np.ndarray, k: int, seed: int):
    from sklearn.decomposition import PCA

    return PCA(n_components=k, random_state=seed, svd_solver="covariance_eigh").fit(train)


def train_model(model_config, shape, train: np.ndarray, tuning: np.ndarray, optim,
                shift: float | None = None, scale: float | None = None):
    """A fresh, seeded model fitted by the training loop (no registry, no checkpoint)."""
    import torch

    from medae.models.build import build_model
    from medae.training.loop import fit

    torch.manual_seed(optim.seed)
    model = build_model(model_config, shape)
    if shift is not None:
        model.set_normalisation(torch.tensor(shift), torch.tensor(scale))
    model.init_from_data(torch.from_numpy(np.array(train[:20000])))
    return fit(model, train, tuning, optim).model.cpu().eval()


def run_model(model, rows: np.ndarray, method: str = "encode", batch: int = 8192) -> np.ndarray:
    import torch

    fn = getattr(model, method) if method != "forward" else model
    with torch.inference_mode():
        parts = [fn(torch.from_numpy(np.ascontiguousarray(rows[i : i + batch]))).numpy()
                 for i in range(0, len(rows), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


# -- EHR ------------------------------------------------------------------------------------
def evaluate_ehr(params: Any) -> dict[str, Any]:
    import torch

    from medae.models.corruption import hide_observed
    from medae.training.encode import ehr_inputs, ehr_shape
    from medae.training.train import read_ehr_stats, read_ehr_windows

    cfg = params.evaluate
    stats = read_ehr_stats(params.path(cfg.ehr_stats))
    df = read_ehr_windows(params.path(cfg.ehr_features))
    parts = {s: df.filter(pl.col("split") == s) for s in ("train", "tuning", "held_out")}
    empty = [s for s, p in parts.items() if p.height == 0]
    if empty:
        raise DataError(f"{cfg.ehr_features}: no windows in split(s) {', '.join(empty)}")
    cap = cfg.ehr_max_train_windows
    if cap and parts["train"].height > cap:  # overlapping windows: a subsample loses little
        parts["train"] = parts["train"].sample(cap, seed=cfg.seed).sort(
            "subject_id", "stay_id", "window_start")
    rows = {s: ehr_inputs(p) for s, p in parts.items()}
    # the probe leaves out windows of stays without an admissions row (label null)
    known = {s: p["label_mortality"].is_not_null().to_numpy() for s, p in parts.items()}
    labels = {s: p["label_mortality"].to_numpy()[known[s]].astype(int)
              for s, p in parts.items()}
    n_values = int(stats["n_bins"]) * len(stats["variables"])
    shape = ehr_shape(rows["train"].shape[1], n_values, int(stats["n_bins"]))
    optim = params.train_ehr.optim.model_copy(update={"epochs": cfg.ehr_epochs})
    model = train_model(params.train_ehr.model, shape, rows["train"], rows["tuning"], optim)

    torch.manual_seed(cfg.seed)
    test = torch.from_numpy(rows["held_out"])
    hidden_rows, hidden = hide_observed(test, shape, cfg.ehr_hide_fraction)
    hidden = hidden.numpy()
    truth = rows["held_out"][:, :n_values][hidden]
    recon = run_model(model, hidden_rows.numpy(), "forward")[:, :n_values][hidden]
    ffill = hidden_rows.numpy()[:, :n_values][hidden]
    err = {"ae": rmse(recon, truth), "mean": rmse(0.0, truth), "ffill": rmse(ffill, truth)}

    k = int(model.config.latent_dim)
    z = {s: run_model(model, rows[s]) for s in ("train", "held_out")}
    fitted = pca(rows["train"], k, cfg.seed)
    zp = {s: fitted.transform(rows[s]) for s in ("train", "held_out")}
    probe = {name: probe_auroc(feats["train"][known["train"]], labels["train"],
                               feats["held_out"][known["held_out"]], labels["held_out"],
                               cfg.probe_max_iter, cfg.seed)
             for name, feats in (("ae", z), ("pca", zp), ("raw", rows))}
    return {
        "ehr_imputation_rmse_ratio_vs_mean": err["ae"] / err["mean"],
        "ehr_imputation_rmse_ratio_vs_ffill": err["ae"] / err["ffill"],
        "ehr_imputation_rmse": err, "ehr_hidden_entries": int(hidden.sum()),
        "ehr_probe_auroc_ae": probe["ae"], "ehr_probe_auroc_pca": probe["pca"],
        "ehr_probe_auroc_raw": probe["raw"], "ehr_latent_dim": k,
        "ehr_windows": {s: len(r) for s, r in rows.items()},
        "ehr_windows_train_total": int((df["split"] == "train").sum()),
        "ehr_stays": int(df["stay_id"].n_unique()),
        "ehr_mortality_rate_held_out": float(labels["held_out"].mean()),
        "ehr_model": params.train_ehr.model.kind,
    }


# -- MIT-BIH beats --------------------------------------------------------------------------
def load_beats(folder: Path, records: tuple[str, ...], channel: str | None):
    """Band-passed beats in mV of each record, stacked, with their reference symbols."""
    from medae.waveforms.beats import extract_beats

    values, symbols, counts = [], [], {}
    for name in records:
        if not folder.joinpath(f"{name}.hea").exists():
            raise DataError(f"{folder / name}.hea: MIT-BIH record not found (evaluate.mitdb)")
        table = extract_beats(folder / name, channel, normalize="none")
        values.append(table.values)
        symbols += [s or "" for s in table.symbols]
        counts[name] = len(table)
    return np.concatenate(values).astype(np.float32), np.array(symbols), counts


def evaluate_waveforms(params: Any) -> dict[str, Any]:
    from medae.training.encode import waveform_shape

    cfg = params.evaluate
    folder = params.path(cfg.mitdb)
    fit_records = tuple(r for r in cfg.train_records if r not in cfg.tuning_records)
    if not fit_records or not cfg.tuning_records:
        raise DataError("evaluate: tuning_records must be a non-empty, proper subset of "
                        "train_records")
    train, train_sym, train_counts = load_beats(folder, fit_records, cfg.beat_channel)
    tuning, _, tuning_counts = load_beats(folder, cfg.tuning_records, cfg.beat_channel)
    test, test_sym, test_counts = load_beats(folder, cfg.test_records, cfg.beat_channel)
    rng = np.random.default_rng(cfg.seed)
    if cfg.wave_max_train_beats and len(train) > cfg.wave_max_train_beats:
        keep = np.sort(rng.choice(len(train), cfg.wave_max_train_beats, replace=False))
        train, train_sym = train[keep], train_sym[keep]
    shift, scale = float(train.mean()), float(train.std())
    optim = params.train_waveforms.optim.model_copy(update={"epochs": cfg.wave_epochs})
    out: dict[str, Any] = {"wave_beats_train": train_counts, "wave_beats_tuning": tuning_counts,
                           "wave_beats_test": test_counts, "wave_beats_fitted": len(train),
                           "wave_beat_samples": train.shape[1]}
    labelled_train = np.isin(train_sym, ["N", "V"])
    labelled_test = np.isin(test_sym, ["N", "V"])
    for ratio, k in ((16, cfg.latent_16x), (32, cfg.latent_32x)):
        model_cfg = cfg.wave_model.model_copy(update={"latent_dim": k})
        model = train_model(model_cfg, waveform_shape(train.shape[1]), train, tuning, optim,
                            shift, scale)
        fitted = pca(train, k, cfg.seed)
        recon_pca = fitted.inverse_transform(fitted.transform(test))
        out[f"wave_prd_ae_{ratio}x"] = prd(test, run_model(model, test, "forward"))
        out[f"wave_prd_pca_{ratio}x"] = prd(test, recon_pca)
        out[f"wave_latent_{ratio}x"] = k
        if ratio == 16:  # the probe uses the 16x latents
            y_train = (train_sym[labelled_train] == "V").astype(int)
            y_test = (test_sym[labelled_test] == "V").astype(int)
            feats = {"ae": (run_model(model, train[labelled_train]),
                            run_model(model, test[labelled_test])),
                     "pca": (fitted.transform(train[labelled_train]),
                             fitted.transform(test[labelled_test]))}
            for name, (a, b) in feats.items():
                out[f"wave_probe_auroc_{name}"] = probe_auroc(a, y_train, b, y_test,
                                                              cfg.probe_max_iter, cfg.seed)
            out["wave_probe_beats"] = {"train_v": int(y_train.sum()), "train_n": int(
                len(y_train) - y_train.sum()), "test_v": int(y_test.sum()),
                "test_n": int(len(y_test) - y_test.sum())}
    return out


def log_to_mlflow(params: Any, result: dict[str, Any]) -> str:
    import mlflow

    from medae.training import tracking

    tracking.setup(params, "evaluate")
    with mlflow.start_run(run_name="evaluate") as run:
        mlflow.log_params({"params_hash": params.section_hash("evaluate", "train_ehr",
                                                              "train_waveforms")})
        mlflow.log_metrics({k: float(v) for k, v in result.items()
                            if isinstance(v, int | float) and not isinstance(v, bool)})
        mlflow.log_dict(result, "evaluation.json")
        return run.info.run_id


def run(params: Any) -> dict[str, Any]:
    """Stage ``evaluate``: returns (and writes to ``evaluate.out``) one JSON object."""
    result: dict[str, Any] = {}
    for part, keys, fn in (("ehr", EHR_KEYS, evaluate_ehr),
                           ("wave", WAVE_KEYS, evaluate_waveforms)):
        try:
            result.update(fn(params))
            result[f"{part}_status"] = "measured"
        except DataError as exc:  # one missing input must not hide the other evaluation
            log.warning("evaluate: %s part not measured: %s", part, exc)
            result.update(dict.fromkeys(keys))
            result[f"{part}_status"] = f"not measured: {exc}"
    if params.evaluate.mlflow:
        result["mlflow_run_id"] = log_to_mlflow(params, result)
    write_json_atomic(params.path(params.evaluate.out), result)
    return result
