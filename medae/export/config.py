"""params.yaml sections of export, the nightly refresh and DVC."""

from typing import Literal

from pydantic import Field

from medae.config_base import Section


class ExportLatents(Section):
    """``export_latents``: champion models -> ``<out>/<modality>/`` latent Parquet tables.

    ``modalities``: which models to export (``medae-<modality>@champion``); ``multimodal`` is
    skipped while ``train_multimodal.pointer`` does not exist (no model trained yet).
    ``batch_rows``: windows per forward pass (and per streamed input chunk); one output part
    per input window file.
    ``meds``: also write MEDS events (``LATENT//<model>//dNN``) under ``<out>/_meds/<modality>/``.
    ``alias``: registry alias to export (``champion``).
    ``pseudonymise``: replace subject_id/hadm_id/stay_id/record_name by keyed HMAC-SHA256
    pseudonyms (medae.privacy); the key comes from the environment variable
    ``pseudonymise_key_env``, else the file ``pseudonymise_key_file``; no key = refuse.
    ``encrypt``: Parquet modular encryption of the parts with the master keys in
    ``encryption_key_file`` (``python -m medae.privacy keygen FILE`` creates one).
    ``cache``: folder of the digests of export's input files, kept by file stamp so a
    re-export hashes only the files changed since; outside ``out``, which consumers read (it
    names the input files, record names among them, which pseudonymisation hides in the
    tables).
    """

    out: str = "data/latents"
    modalities: tuple[Literal["ehr", "waveforms", "multimodal"], ...] = (
        "ehr", "waveforms", "multimodal")
    alias: str = "champion"
    batch_rows: int = Field(default=4096, ge=1)
    meds: bool = False
    pseudonymise: bool = False
    pseudonymise_key_env: str = "MEDAE_PSEUDONYM_KEY"
    pseudonymise_key_file: str | None = None
    encrypt: bool = False
    encryption_key_file: str | None = None
    cache: str = "data/cache/export_latents"


class Refresh(Section):
    """``refresh``: the nightly flow's policy.

    ``training``: ``if_needed`` (train when no champion exists, or when the training data
    changed and ``retrain_every_days`` passed since the champion's run), ``always`` or ``never``.
    ``evaluate``: ``with_training`` (default: re-evaluate only in a refresh that trained a
    model, or when no evaluation exists yet; evaluation retrains its own models, so new data
    alone should not cost that), ``on_change`` (whenever DVC sees a change) or ``never``.
    ``retries``: retries of a stage after a transient error (lock held, connection reset).
    ``commit_lock``: after a complete refresh that changed ``dvc.lock``, commit that file alone
    to git (the history of data versions: ``git checkout <rev> -- dvc.lock && dvc checkout``
    brings an earlier version back); skipped when the workspace is not a git repository.
    """

    training: Literal["if_needed", "always", "never"] = "if_needed"
    evaluate: Literal["with_training", "on_change", "never"] = "with_training"
    retrain_every_days: float = Field(default=7.0, ge=0)
    retries: int = Field(default=2, ge=0)
    retry_delay_s: float = Field(default=10.0, ge=0)
    report: str = "reports/refresh.md"
    push: bool = True
    commit_lock: bool = True


class DvcConfig(Section):
    """``dvc``: the DVC remote the refresh pushes to (a folder outside ``data/``; relative
    paths are resolved against the params file's folder)."""

    remote: str = "../medae-dvc-remote"
