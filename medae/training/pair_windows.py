"""Stage ``pair_windows``: the multimodal rows, built once for training and export.

Each EHR window file ``part_NNNN.parquet`` (``train_multimodal.ehr_features``) gets a paired
file of the same name in ``pair_windows.out``, row for row: the EHR window's ``stay_id`` and
``window_start`` (checked by every reader), the waveform window :mod:`medae.training.pairs`
pairs with it (``record_name``, ``start_s``, both null when none) and its samples
``wave_values`` (empty when none). Stays with waveforms but no EHR window give the
wave-only rows, at most ``train_multimodal.wave_only_per_stay`` each, in
``pair_windows.wave_only``. Eligible waveform windows: the ``train_multimodal.channel`` ones
with ``q_nan_frac <= train_multimodal.max_nan_frac``, linked to a stay in time.

Why a stage: a record holds hours of contiguous 10 s windows and an EHR window fuses one of
them, so finding and reading the paired windows costs a row-group read per window (about
1 ms), 50 times the forward pass. Paired once here, ``train_multimodal`` and export read the
rows sequentially, like the EHR windows, and a re-export after a new champion pairs nothing.

Reading in two passes (:mod:`medae.training.wave_reader`): the key columns of the eligible
windows of a part's stays, paired with the part's EHR windows, then the samples of only the
windows used, from the row groups holding them.

Incremental: a part depends on its EHR file and on the waveform files linked to its stays;
its fingerprint hashes their bytes (digests and record footers cached by file stamp in
``pair_windows.cache``), so a new or changed record re-pairs only the parts holding its stays.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from medae.errors import DataError, error_reason
from medae.executor import map_items
from medae.io import (
    DIGESTS,
    check_finished,
    file_digests,
    per_file_cached,
    read_state,
    write_json_atomic,
)
from medae.privacy.record_names import hide_record_file
from medae.training import paired_files, pairs, wave_reader

log = logging.getLogger(__name__)

FINGERPRINTS = "_fingerprints.json"
FOOTERS = "_footers.json"  # waveform files' stays and row groups, likewise
EHR_KEYS = ("stay_id", "window_start", "window_end")  # what pairing reads of an EHR window


def file_stays(path: Path) -> set[int]:
    """The stays a windows file (EHR or waveform) has windows for: its ``stay_id`` only.

    Read from the Parquet footer when every row group holds one stay (a record lies in one
    stay; ~0.15 ms a file against ~1 ms to decode the column), else from the column.
    """
    return footer(path)[0]


def footer(path: Path) -> tuple[set[int], list[int]]:
    """:func:`file_stays` and the number of rows in each of the file's row groups."""
    try:
        meta = pq.ParquetFile(path).metadata
        stays = _footer_stays(meta)
        if stays is None:
            stays = set(pl.read_parquet(path, columns=["stay_id"])["stay_id"].drop_nulls())
        return stays, wave_reader.group_rows(meta)
    except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
        raise DataError(hide_record_file(f"{path}: cannot read column 'stay_id' "
                                         f"({error_reason(exc)})", path)) from None


def _footer_stays(meta: pq.FileMetaData) -> set[int] | None:
    """Stays from the row-group statistics of ``stay_id``; None when they do not settle it."""
    stays: set[int] = set()
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        column = next((group.column(c) for c in range(group.num_columns)
                       if group.column(c).path_in_schema == "stay_id"), None)
        stats = column.statistics if column is not None else None
        if stats is None or stats.null_count is None:
            return None
        if stats.null_count == group.num_rows:
            continue  # no stay in this row group
        if not stats.has_min_max or stats.min != stats.max:
            return None
        stays.add(int(stats.min))
    return stays


def eligible_windows(lf: pl.LazyFrame, channel: str, max_nan_frac: float,
                     stays: pl.Series) -> pl.LazyFrame:
    """The windows a multimodal row may fuse (channel, quality, linked), of ``stays`` only.

    >>> import datetime as dt
    >>> w = pl.LazyFrame({"stay_id": [7, 7, 8, None], "channel": ["ecg_ii", "ppg", "ecg_ii",
    ...     "ecg_ii"], "q_nan_frac": [0.0, 0.0, 0.0, 0.0],
    ...     "window_start": [dt.datetime(2150, 1, 1)] * 4})
    >>> eligible_windows(w, "ecg_ii", 0.1, pl.Series([7, 9])).collect()["stay_id"].to_list()
    [7]
    """
    keep = pairs.usable(channel, max_nan_frac) & pl.col("stay_id").is_in(stays.implode())
    return pairs.linked(lf.filter(keep))


class WaveIndex:
    """The waveform window files, indexed by the stays they are linked to (their footers)."""

    def __init__(self, wave_folder: Path, channel: str, max_nan_frac: float,
                 cache: Path | None = None):
        self.wave_folder = Path(wave_folder)
        self.channel, self.max_nan_frac = channel, max_nan_frac
        self.cache = cache  # folder of the digests and footers kept by file stamp
        files = sorted(self.wave_folder.glob("*.parquet"))
        if not files:
            raise DataError(f"{self.wave_folder}: no *.parquet waveform windows "
                            f"(train_multimodal.wave_features); run `medae run window_waveforms`")
        summaries = per_file_cached(
            files, self.cache_file(FOOTERS),
            lambda todo: [[sorted(stays), groups] for stays, groups in map(footer, todo)])
        # wave file name -> its linked stays, and the rows in each of its row groups
        self.stays_of = {p.name: set(s) for p, (s, _) in zip(files, summaries, strict=True)}
        self.groups = {p.name: g for p, (_, g) in zip(files, summaries, strict=True)}

    def pairing(self, width: int | None) -> dict[str, Any]:
        """What a paired file records of how it was paired (``medae.pairing`` metadata)."""
        return {"channel": self.channel, "max_nan_frac": self.max_nan_frac, "samples": width}

    def cache_file(self, name: str) -> Path | None:
        return self.cache / name if self.cache is not None else None

    def related(self, stays: set[int]) -> list[Path]:
        """The waveform files holding windows of ``stays``, sorted by name."""
        return [self.wave_folder / name for name, linked in sorted(self.stays_of.items())
                if linked & stays]

    def fingerprints(self, parts: dict[str, set[int]]) -> dict[str, str]:
        """Per part (name -> its stays): a hash of its related waveform files' names and
        bytes."""
        related = {name: self.related(stays) for name, stays in parts.items()}
        needed = sorted({w for files in related.values() for w in files})
        digest = dict(zip(needed, file_digests(needed, self.cache_file(DIGESTS)),
                          strict=True))
        return {name: hashlib.sha256("\n".join(
                    f"{w.name}:{digest[w]}" for w in files).encode()).hexdigest()[:16]
                for name, files in related.items()}

    def keys(self, stays: set[int], where: str) -> pl.DataFrame:
        """The eligible waveform windows of ``stays`` (:func:`wave_reader.read_keys`)."""
        stay_ids = pl.Series(sorted(stays), dtype=pl.Int64)
        return wave_reader.read_keys(
            self.related(stays), self.groups,
            lambda lf: eligible_windows(lf, self.channel, self.max_nan_frac, stay_ids),
            f"{self.wave_folder}: waveform windows of the stays {where}")

    def samples(self, keys: pl.DataFrame, width: int, where: str) -> np.ndarray:
        """The samples of the windows ``keys`` (:func:`wave_reader.read_samples`)."""
        return wave_reader.read_samples(keys, self.groups, width, where)


def pair_part(ehr_file: Path, index: WaveIndex) -> tuple[pl.DataFrame, int | None]:
    """The paired rows of one EHR window file, in its row order, and the samples per
    waveform window (None when no window of its stays is eligible)."""
    try:
        ehr = pl.read_parquet(ehr_file, columns=list(EHR_KEYS))
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"{ehr_file}: cannot read the EHR window keys "
                        f"({error_reason(exc)})") from None
    keys = index.keys(set(ehr["stay_id"].drop_nulls()), f"in {ehr_file.name}")
    width = wave_reader.sample_count(keys, index.groups) if keys.height else None
    rows, used = pairs.keep_used_waves(
        pairs.pair_ehr_windows(ehr, pairs.wave_spans(keys, samples=width or 0)))
    waves = (index.samples(keys[used], width, ehr_file.name) if len(used)
             else np.zeros((0, width or 0), np.float32))
    chosen, at = keys[used], rows["wave_row"]
    table = ehr.select(*paired_files.KEY_COLUMNS).with_columns(
        record_name=chosen["record_name"].gather(at), start_s=chosen["start_s"].gather(at),
        wave_values=paired_files.rows_as_samples(waves, at.to_numpy(allow_copy=True)))
    return table, width


# ------------------------------------------------------------------------------- stage

def code_digest() -> str:
    """A hash of the code that pairs and writes the pairs (this module and what it runs):
    part of every part's fingerprint, so a change to it pairs every part again, as DVC
    re-runs the stage."""
    from medae.training import encode

    h = hashlib.sha256()
    for module in (sys.modules[__name__], paired_files, pairs, wave_reader, encode):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]


def pair_one(item: dict[str, Any]) -> dict[str, Any]:
    """Pair one EHR window file and write its paired file (module-level: executor workers)."""
    index: WaveIndex = item["index"]
    table, width = pair_part(Path(item["ehr"]), index)
    paired_files.write_paired(table, Path(item["target"]), index.pairing(width))
    return {"rows": table.height, "fused": int(table["record_name"].is_not_null().sum())}


def wave_only(with_ehr: set[int], index: WaveIndex, per_stay: int
              ) -> tuple[pl.DataFrame, int | None]:
    """The wave-only rows (stays with eligible waveform windows but none of the stays
    ``with_ehr`` that have EHR windows, at most ``per_stay`` each:
    :func:`medae.training.pairs.wave_only_windows`) and their samples per window."""
    lone = {s for linked in index.stays_of.values() for s in linked} - with_ehr
    keys = index.keys(lone, "without EHR windows") if lone and per_stay else None
    if keys is None or keys.height == 0:
        return pl.DataFrame(schema={"subject_id": pl.Int64, "stay_id": pl.Int64,
                                    "record_name": pl.String, "start_s": pl.Float64,
                                    "wave_values": pl.Binary}), None
    width = wave_reader.sample_count(keys, index.groups)
    spans = pairs.wave_spans(keys, samples=width)
    rows = pairs.wave_only_windows(pl.DataFrame({"stay_id": sorted(with_ehr)},
                                                schema={"stay_id": pl.Int64}),
                                   spans, per_stay)
    used = rows["wave_row"].to_numpy()
    waves = index.samples(keys[used], width, "the stays without EHR windows")
    samples = paired_files.rows_as_samples(waves, np.arange(len(used), dtype=np.float64))
    return keys[used].select("subject_id", "stay_id", "record_name", "start_s").with_columns(
        wave_values=samples), width


def pair_all(ehr_folder: Path, index: WaveIndex, out: Path, wave_only_file: Path,
             per_stay: int, executor: Any) -> dict[str, Any]:
    """Pair every EHR window file of ``ehr_folder`` whose inputs changed into ``out`` (one
    paired file each, on ``executor``'s workers), drop the paired files of EHR files gone,
    and rebuild the wave-only rows in ``wave_only_file``."""
    check_finished(ehr_folder, "featurize_ehr")
    ehr_files = sorted(Path(ehr_folder).glob("*.parquet"))
    if not ehr_files:
        raise DataError(f"{ehr_folder}: no *.parquet windows; run `medae run featurize_ehr`")
    out.mkdir(parents=True, exist_ok=True)
    stays = {p.name: file_stays(p) for p in ehr_files}
    related = index.fingerprints(stays)
    view = f"{code_digest()}:{index.channel}:{index.max_nan_frac}"
    digests = file_digests(ehr_files, index.cache_file(DIGESTS))
    fingerprints = {p.name: f"{d}+{related[p.name]}:{view}"
                    for p, d in zip(ehr_files, digests, strict=True)}
    state = read_state(out / FINGERPRINTS)
    todo = [p for p in ehr_files
            if state.get(p.name) != fingerprints[p.name] or not (out / p.name).exists()]
    log.info("pair_windows: %d EHR window files, %d to pair", len(ehr_files), len(todo))
    # The fingerprints are saved once every part is written: after a crash midway, a part
    # rewritten since still has its old fingerprint recorded, so the re-run pairs it again.
    results = map_items(pair_one, [{"ehr": str(p), "target": str(out / p.name), "index": index}
                                   for p in todo], executor,
                        names=[p.name for p in todo], desc="pair_windows parts", threads=True)
    for stale in out.glob("*.parquet"):
        if stale.name not in fingerprints:
            stale.unlink()
    write_json_atomic(out / FINGERPRINTS, fingerprints)
    lone, width = wave_only(set().union(*stays.values()), index, per_stay)
    paired_files.write_paired(lone, wave_only_file, index.pairing(width) | {
        "wave_only_per_stay": per_stay})
    done = [r for r in results.values if r]
    return {"out": str(out), "parts": len(ehr_files), "paired": [p.name for p in todo],
            "rows_written": sum(r["rows"] for r in done),
            "rows_fused": sum(r["fused"] for r in done), "wave_only_rows": lone.height}


def run(params: Any) -> dict[str, Any]:
    """Stage ``pair_windows``: pair every changed EHR window file; rebuild the wave-only
    rows."""
    cfg, model = params.pair_windows, params.train_multimodal
    cache = params.path(cfg.cache)
    cache.mkdir(parents=True, exist_ok=True)
    index = WaveIndex(params.path(model.wave_features), model.channel, model.max_nan_frac,
                      cache)
    return pair_all(params.path(model.ehr_features), index, params.path(cfg.out),
                    params.path(cfg.wave_only), model.wave_only_per_stay, params.executor)
