"""params.yaml sections of the waveform stages (every key also appears in params.yaml)."""

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from medae.config_base import Section
from medae.waveforms.channels import HARMONISATION, KINDS, canonical_channel, is_ecg


def _canonical(name: str) -> str | None:
    """A channel name as params may write it: canonical already, or a raw alias (``MLII``)."""
    return name if name in HARMONISATION else canonical_channel(name)


class WaveformSource(Section):
    """Where the WFDB records are read from (``waveforms.source``) and how subjects are named.

    ``subject_pattern``: a regular expression tried on the record name, then on each parent
    folder from the deepest up; its first group is the subject id (MIMIC ``p000878``,
    ``s00001``, ``p10014354``). Records that match nothing get a null subject id.
    """

    source: str = "data/source/waveforms"
    subject_pattern: str = r"^[ps](\d{5,})(?:[-_].*)?$"


class CatalogWaveforms(Section):
    """``catalog_waveforms``: one row per record (headers only) plus quarantined records."""

    out: str = "data/interim/waveform_catalog.parquet"
    quarantine: str = "data/interim/waveform_catalog_quarantine.parquet"


class WindowWaveforms(Section):
    """``window_waveforms``: filtered, resampled, quality-checked, normalised windows + beats.

    Per-kind maps (``rates``, ``bands``, ``min_range``) are keyed by signal kind (``ecg``,
    ``ppg``, ``abp``, ``resp``, ``pressure``, ``co2``); a kind missing from ``rates`` keeps its
    native rate, one missing from ``bands`` is not filtered.
    """

    out: str = "data/features/waveform_windows"
    beats_out: str = "data/features/waveform_beats"
    report: str = "reports/dq_waveforms.json"
    # The DVC metric: the report's totals alone. `dvc metrics show` prints every number of a
    # metric file, and the report's are keyed by record name (MIMIC names embed subject ids).
    totals: str = "reports/dq_waveforms_totals.json"
    channels: list[str] | None = None  # canonical channels to keep; null = every known one
    window_s: float = Field(10.0, gt=0)
    stride_s: float = Field(10.0, gt=0)
    chunk_s: float = Field(600.0, gt=0)  # core length of one bounded read
    min_native_fs: float = 10.0  # slower channels (numerics trends) are not waveforms
    rates: dict[str, float] = {"ecg": 125.0, "ppg": 125.0, "abp": 125.0, "pressure": 125.0,
                               "resp": 25.0, "co2": 25.0}
    bands: dict[str, tuple[float | None, float | None]] = {
        "ecg": (0.5, 40.0), "ppg": (0.5, 8.0), "abp": (None, 20.0), "pressure": (None, 20.0),
        "resp": (0.05, 2.0), "co2": (None, 5.0)}
    mains_hz: float | None = 60.0
    notch_kinds: list[str] = ["ecg"]
    bridge_gap_s: float = 0.05  # NaN gaps this short are interpolated, not split
    gap_policy: Literal["drop", "mask"] = "drop"
    max_nan_frac: float = Field(0.2, ge=0, le=1)  # used by gap_policy=mask
    # A flat line must last this long (per kind; slow or coarsely quantised signals repeat
    # values for a while, so short runs are normal). Kinds not listed use 2 s.
    flat_min_s: dict[str, float] = {"ecg": 2.0, "ppg": 2.0, "abp": 2.0, "resp": 5.0}
    max_flat_frac: float = Field(0.2, ge=0, le=1)
    max_clip_frac: float = Field(0.05, ge=0, le=1)
    min_range: dict[str, float] = {"ecg": 0.05, "abp": 5.0}
    # Physiological limits per kind, in the channel's physical units (mV, mmHg): a window with
    # more than max_out_of_range_frac of its native samples outside is dropped as
    # out_of_range (a wrong ADC gain or unit gives plausible-looking z-scored windows
    # otherwise). Kinds not listed (ppg, resp: arbitrary units) are not checked.
    physical_range: dict[str, tuple[float, float]] = {
        "ecg": (-20.0, 20.0), "abp": (-50.0, 400.0), "pressure": (-50.0, 400.0),
        "co2": (-10.0, 150.0)}
    max_out_of_range_frac: float = Field(0.01, ge=0, le=1)
    min_q_beat: float = Field(0.5, ge=0, le=1)
    normalize: Literal["zscore", "robust", "none"] = "zscore"
    beats: bool = True  # also write fixed-length beats of one ECG lead per record
    beat_channel: str | None = None  # raw or canonical name; null = lead II, else first ECG
    beat_fs: float = Field(125.0, gt=0)
    beat_before_s: float = Field(0.25, ge=0)
    beat_after_s: float = Field(0.45, gt=0)
    reference_annotation: str | None = "atr"

    # A mistake here would otherwise fail every record one by one (a band 40-0.5 Hz: scipy's
    # "Wn[0] must be less than Wn[1]") or silently window nothing (a channel name typo), and
    # the run would replace good outputs: refuse it when params are loaded.

    @field_validator("rates", "bands", "flat_min_s", "min_range", "physical_range",
                     "notch_kinds")
    @classmethod
    def _known_kinds(cls, value):
        unknown = sorted(set(value) - KINDS)
        if unknown:
            raise ValueError(f"unknown signal kind {unknown[0]!r} (kinds: "
                             f"{', '.join(sorted(KINDS))})")
        return value

    @field_validator("rates", "flat_min_s")
    @classmethod
    def _positive(cls, value: dict[str, float]):
        for kind, number in value.items():
            if not number > 0 or not math.isfinite(number):
                raise ValueError(f"{kind}: {number} is not a positive number")
        return value

    @field_validator("bands")
    @classmethod
    def _bands_ordered(cls, value: dict[str, tuple[float | None, float | None]]):
        for kind, (low, high) in value.items():
            for edge in (low, high):
                if edge is not None and (not edge > 0 or not math.isfinite(edge)):
                    raise ValueError(f"{kind}: band edge {edge} Hz is not a positive number "
                                     "(null leaves that edge open)")
            if low is not None and high is not None and not low < high:
                raise ValueError(f"{kind}: low edge {low} Hz is not below high edge {high} Hz "
                                 "(bands are [low, high])")
        return value

    @field_validator("physical_range")
    @classmethod
    def _ranges_ordered(cls, value: dict[str, tuple[float, float]]):
        for kind, (low, high) in value.items():
            if not low < high:
                raise ValueError(f"{kind}: lower limit {low} is not below upper limit {high} "
                                 "(ranges are [low, high])")
        return value

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str] | None):
        """Canonical channel names (a raw alias such as ``MLII`` is mapped to its canonical
        ``ecg_ii``); anything else is refused, so a typo never windows nothing."""
        if value is None:
            return None
        if not value:
            raise ValueError("an empty list keeps no channel (null keeps every known one)")
        names = []
        for name in value:
            canonical = _canonical(name)
            if canonical is None:
                raise ValueError(f"{name!r} is not a known channel name (canonical names: "
                                 f"{', '.join(HARMONISATION)})")
            names.append(canonical)
        return list(dict.fromkeys(names))

    @field_validator("beat_channel")
    @classmethod
    def _ecg_beat_channel(cls, value: str | None):
        canonical = None if value is None else _canonical(value)
        if value is not None and (canonical is None or not is_ecg(canonical)):
            raise ValueError(f"{value!r} is not an ECG channel name (ECG canonical names: "
                             f"{', '.join(c for c in HARMONISATION if is_ecg(c))})")
        return value

    @model_validator(mode="after")
    def _beat_channel_kept(self):
        if (self.beats and self.beat_channel is not None and self.channels is not None
                and _canonical(self.beat_channel) not in self.channels):
            raise ValueError(f"beat_channel {self.beat_channel!r} is not in channels, so "
                             "no beat would be written")
        return self
