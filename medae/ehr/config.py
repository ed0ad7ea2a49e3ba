"""params.yaml sections of the EHR stages."""

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from medae.config_base import Section


class EhrSource(Section):
    """Where the EHR tables are read from (``ehr.source``) and which layout they use."""

    source: str = "data/source/ehr"
    layout: Literal["auto", "mimic4", "mimic3"] = "auto"


class IngestEhr(Section):
    out: str = "data/raw/ehr"
    shards: int = Field(default=8, ge=1, le=4096)


class CleanEhr(Section):
    """MEDS store, DQ report, variable dictionary (null = the packaged one) and splits.

    ``max_event_time``: events later than this are counted as ``time_in_future`` in the DQ
    report (kept in the store); null = the latest ``admissions.dischtime`` of the source, so
    the count never depends on the wall clock (MIMIC dates are shifted into 2100-2200).

    ``train_fraction`` + ``tuning_fraction`` may be at most 1; the rest is ``held_out``.
    """

    out: str = "data/interim/meds"
    report: str = "reports/dq_ehr.json"
    dictionary: str | None = None
    dataset_name: str = "medae"
    split_seed: int = 0
    train_fraction: float = Field(default=0.8, gt=0, lt=1)
    tuning_fraction: float = Field(default=0.1, ge=0, lt=1)
    max_event_time: datetime | None = None

    @model_validator(mode="after")
    def _splits_fit(self) -> "CleanEhr":
        # Beyond 1 the splits silently shrank tuning and dropped held_out (1e-9: 0.7 + 0.3)
        if self.train_fraction + self.tuning_fraction > 1 + 1e-9:
            raise ValueError(
                f"clean_ehr.train_fraction ({self.train_fraction}) + clean_ehr.tuning_fraction "
                f"({self.tuning_fraction}) add up to more than 1; the rest of the subjects is "
                "held_out, so together they may be at most 1")
        return self


class FeaturizeEhr(Section):
    """Stay windows: ``window_hours`` long every ``stride_hours``, in bins of ``bin_hours``.

    ``variables``: dictionary codes to use (null = every dictionary variable, in dictionary
    order); ``aggregations``: per-code override of the dictionary's per-bin aggregation;
    ``max_ffill_hours``: forward fill within a stay at most this long after a measurement;
    ``delta_max_hours``: hours-since-last is capped here and divided by it (0..1);
    ``compression``: Parquet codec of the window files. lz4 by default: export and training
    read these files again and again, and LZ4 decodes them in 0.6x (barely compressible
    values) to 0.94x (forward-filled demo windows) zstd's CPU time for 1.1-1.3x the bytes on
    disk (docs/refresh.md); ``zstd`` for the smallest files.
    """

    out: str = "data/features/ehr_windows"
    stats: str = "data/features/ehr_stats.json"
    window_hours: int = Field(default=24, ge=1)
    stride_hours: int = Field(default=6, ge=1)
    bin_hours: int = Field(default=1, ge=1)
    max_ffill_hours: int = Field(default=12, ge=0)
    delta_max_hours: float = Field(default=48.0, gt=0)
    variables: list[str] | None = None
    aggregations: dict[str, Literal["mean", "sum", "last", "min", "max"]] = {}
    compression: Literal["lz4", "zstd", "snappy", "none"] = "lz4"
