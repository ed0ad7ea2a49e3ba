"""params.yaml sections of the training and evaluation stages."""

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from medae.config_base import Section
from medae.models.config import (
    Conv1dConfig,
    DenoisingConfig,
    ModelConfig,
    MultimodalVaeConfig,
)

# Record names are strings; `--set evaluate.test_records=[118,119]` gives ints: accept both.
RecordName = Annotated[str, BeforeValidator(str)]


class Optim(Section):
    """How a model is fitted: AdamW, warm-up then cosine decay, early stopping on tuning."""

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_epochs: float = Field(default=1.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    patience: int = Field(default=5, ge=1)  # epochs without tuning improvement before stopping
    min_delta: float = Field(default=0.0, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    bf16: bool = True  # bf16 autocast, CUDA only
    # rows on the GPU for the whole run: auto = when they fit in a quarter of its free memory
    data_on_device: Literal["auto", "always", "never"] = "auto"
    grad_clip: float = Field(default=1.0, ge=0)  # 0 = off


class _Train(Section):
    optim: Optim = Optim()
    checkpoint_dir: str = "models/checkpoints"
    resume: bool = True  # continue from the last checkpoint of the same config and data
    system_metrics: bool = True
    system_metrics_interval_s: float = Field(default=10.0, gt=0)
    max_rows: int | None = Field(default=None, ge=1)  # cap on train rows (smoke runs)


class TrainEhr(_Train):
    """``train_ehr``: EHR windows -> MLflow model ``medae-ehr`` + pointer file."""

    pointer: str = "models/ehr.json"
    loss_csv: str = "reports/loss_ehr.csv"  # per-epoch losses for `dvc plots show`
    features: str = "data/features/ehr_windows"
    stats: str = "data/features/ehr_stats.json"
    model: ModelConfig = DenoisingConfig()


class TrainWaveforms(_Train):
    """``train_waveforms``: one channel's windows -> MLflow model ``medae-waveforms``."""

    pointer: str = "models/waveforms.json"
    loss_csv: str = "reports/loss_waveforms.csv"  # per-epoch losses for `dvc plots show`
    features: str = "data/features/waveform_windows"
    channel: str = "ecg_ii"
    max_nan_frac: float = Field(default=0.1, ge=0, le=1)
    splits: str = "data/interim/meds/metadata/subject_splits.parquet"
    tuning_fraction: float = Field(default=0.1, gt=0, lt=1)  # records without a known subject
    held_out_fraction: float = Field(default=0.1, ge=0, lt=1)
    model: ModelConfig = Conv1dConfig()


class TrainMultimodal(_Train):
    """``train_multimodal``: EHR windows fused with the ``channel`` waveform windows of the same
    stay and time (:mod:`medae.training.pairs`) -> MLflow model ``medae-multimodal``."""

    pointer: str = "models/multimodal.json"
    loss_csv: str = "reports/loss_multimodal.csv"  # per-epoch losses for `dvc plots show`
    ehr_features: str = "data/features/ehr_windows"
    ehr_stats: str = "data/features/ehr_stats.json"
    wave_features: str = "data/features/waveform_windows"
    channel: str = "ecg_ii"  # the one waveform channel fused with the EHR window
    max_nan_frac: float = Field(default=0.1, ge=0, le=1)
    # Wave-only rows: windows of linked stays that have no EHR window, at most this many per
    # stay (evenly spaced in time; 0 = none), so that long recordings do not swamp the EHR rows.
    wave_only_per_stay: int = Field(default=8, ge=0)
    splits: str = "data/interim/meds/metadata/subject_splits.parquet"  # wave-only rows' split
    tuning_fraction: float = Field(default=0.1, gt=0, lt=1)  # subjects not in the splits file
    held_out_fraction: float = Field(default=0.1, ge=0, lt=1)
    # Only the multimodal VAE reads [EHR | waveform | flags] rows: another kind is a
    # params error naming the key, not a model silently trained on the wrong layout.
    model: MultimodalVaeConfig = MultimodalVaeConfig(hidden=(128,), latent_dim=16)
    # Small by default: the demo refresh must stay cheap (docs/models.md has the figures).
    optim: Optim = Optim(epochs=10, patience=3)


class PairWindows(Section):
    """``pair_windows``: the multimodal rows, each EHR window of ``train_multimodal.ehr_features``
    with the waveform window paired with it (:mod:`medae.training.pair_windows`).

    ``out``: one paired file per EHR window file, row for row; ``wave_only``: the rows of
    stays with waveforms but no EHR window; ``cache``: digests and record footers kept by file
    stamp so a refresh reads only the files changed since (not versioned, names records).
    Which windows pair: ``train_multimodal.channel``, ``max_nan_frac``, ``wave_only_per_stay``.
    """

    out: str = "data/features/paired_windows"
    wave_only: str = "data/features/wave_only_windows.parquet"
    cache: str = "data/cache/pair_windows"


class Evaluate(Section):
    """``evaluate``: imputation, mortality probe (EHR) and MIT-BIH beat compression."""

    out: str = "reports/evaluation.json"
    seed: int = 0
    ehr_features: str = "data/features/ehr_windows"
    ehr_stats: str = "data/features/ehr_stats.json"
    ehr_hide_fraction: float = Field(default=0.2, gt=0, lt=1)
    ehr_epochs: int = Field(default=10, ge=1)
    ehr_max_train_windows: int | None = Field(default=10000, ge=10)  # CPU time cap; seeded
    mitdb: str = "../shared/realdata/physionet/mitdb"
    train_records: tuple[RecordName, ...] = ("100", "101", "103", "105", "106", "108", "109",
                                             "111")
    test_records: tuple[RecordName, ...] = ("118", "119")
    # Of the train records, these only decide early stopping: a whole record, so that the
    # model is selected for beats of a patient it never saw (as the test records are).
    tuning_records: tuple[RecordName, ...] = ("111",)
    wave_max_train_beats: int | None = Field(default=8000, ge=100)  # CPU time cap; seeded
    beat_channel: str | None = None  # None = the record's first signal (MLII in MIT-BIH)
    latent_16x: int = Field(default=16, ge=1)
    latent_32x: int = Field(default=8, ge=1)
    wave_model: Conv1dConfig = Conv1dConfig(channels=(8, 16, 32), scale_equivariant=True,
                                            refine_steps=10, refine_lr=0.1)
    wave_epochs: int = Field(default=40, ge=1)
    probe_max_iter: int = Field(default=2000, ge=10)
    mlflow: bool = True
