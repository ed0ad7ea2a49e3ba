"""``catalog_waveforms``: list every WFDB record under ``waveforms.source`` from headers only.

One row per record: name, path, subject id, base date-time, per-signal rates and channels,
length, and its segments with whether each one's data file is present. A record whose header
cannot be parsed even by the tolerant fallback is quarantined with a reason; a missing segment
is listed with ``has_data = false`` and its reason; nothing stops the run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from medae.errors import DataError, error_reason
from medae.io import atomic_path
from medae.privacy.record_names import FOLDER, RECORD, hide_record, show_record
from medae.waveforms.channels import canonical_channel
from medae.waveforms.headers import read_header
from medae.waveforms.reader import layout_segments, refuse_empty_source

log = logging.getLogger(__name__)

SEGMENT = pl.Struct({"name": pl.String, "start_frame": pl.Int64, "n_frames": pl.Int64,
                     "has_data": pl.Boolean, "reason": pl.String})
CATALOG_SCHEMA = pl.Schema({
    "record_name": pl.String, "path": pl.String, "subject_id": pl.Int64,
    "base_datetime": pl.Datetime("us"), "base_time": pl.String, "frame_fs": pl.Float64,
    "n_frames": pl.Int64, "duration_s": pl.Float64, "multi_segment": pl.Boolean,
    "channels": pl.List(pl.String), "canonical": pl.List(pl.String), "fs": pl.List(pl.Float64),
    "segments": pl.List(SEGMENT), "n_segments": pl.Int32, "n_segments_missing": pl.Int32,
    "header_repair": pl.String, "annotations": pl.List(pl.String), "fingerprint": pl.String,
})
QUARANTINE_SCHEMA = pl.Schema({"path": pl.String, "reason": pl.String})
# What wfdb keeps of a record name: it drops other characters ('réc_ü' -> 'rc_') and then
# looks for files of that name, so such a record would read as "data file missing".
WFDB_NAME = re.compile(r"[-\w]+", re.ASCII)


@dataclass(frozen=True)
class FolderJob:
    """One folder to catalogue (an executor item: small and picklable)."""

    folder: str
    source: str
    pattern: str


def record_folders(source: Path) -> list[Path]:
    """Every folder under ``source`` holding headers or a RECORDS file, sorted."""
    found = []
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        if "RECORDS" in files or any(f.endswith(".hea") for f in files):
            found.append(Path(folder))
    return found


def _is_multi_segment(header_file: Path) -> bool:
    """A multi-segment master's record line names ``record/n_segments`` (cheap text check)."""
    with open(header_file, encoding="latin-1") as fh:
        for line in fh:
            if line.strip() and not line.lstrip().startswith("#"):
                return "/" in line.split()[0]
    return False


def catalog_folder_item(job: FolderJob) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """:func:`catalog_folder` as an executor item: a failure's message hides the folder's
    path and subject id (the executor logs it); the stage puts the path back in the
    quarantine table."""
    try:
        return catalog_folder(job)
    except Exception as exc:  # noqa: BLE001 - the folder is quarantined, the run goes on
        folder = Path(job.folder)
        subject = subject_id(folder, Path(job.source), job.pattern) if folder != Path(
            job.source) else None
        raise DataError(hide_record(error_reason(exc, typed=True),
                                    job.folder, subject, FOLDER)) from None


def catalog_folder(job: FolderJob) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Catalog rows and quarantine entries of the records in one folder.

    A ``RECORDS`` file, when present, says which headers are records. Multi-segment masters
    are read first so that their segment and layout headers are known and not taken for
    records.
    """
    here, source = Path(job.folder), Path(job.source)
    listed = _records_file(here)
    names = sorted(f.name[:-4] for f in here.iterdir() if f.name.endswith(".hea"))
    quarantine = [{"path": str((here / n).relative_to(source)),
                   "reason": "listed in RECORDS but header missing"}
                  for n in sorted((listed or set()) - set(names))]
    candidates = [n for n in names if listed is None or n in listed]
    masters = [n for n in candidates if _is_multi_segment(here / f"{n}.hea")]
    rows, members = [], set()
    for name in masters + [n for n in candidates if n not in masters]:
        if name in members:
            continue
        if not WFDB_NAME.fullmatch(name):
            quarantine.append({"path": str((here / name).relative_to(source)), "reason": (
                f"{(here / name).relative_to(source)}.hea: record name has characters other "
                "than ASCII letters, digits, '_' and '-', which wfdb drops (it would read "
                "another record's files)")})
            continue
        try:
            row = describe_record(here / name, source, job.pattern)
        except DataError as exc:
            quarantine.append({"path": str((here / name).relative_to(source)),
                               "reason": _relative(str(exc), source)})
            continue
        members |= set(row.pop("_members"))
        rows.append(row)
    return rows, quarantine


def _records_file(folder: Path) -> set[str] | None:
    file = folder / "RECORDS"
    if not file.is_file():
        return None
    entries = (line.strip() for line in file.read_text(encoding="latin-1").splitlines())
    # Entries ending in "/" are sub-folders (walked anyway); the rest are record names.
    return {e for e in entries if e and not e.endswith("/")}


def subject_id(path: Path, source: Path, pattern: str) -> int | None:
    """The subject id from the record name or the nearest parent folder matching ``pattern``.

    >>> subject_id(Path("/d/p00/p000878/p000878-2137-10-26-16-57"), Path("/d"),
    ...            r"^[ps](\\d{5,})(?:[-_].*)?$")
    878
    >>> subject_id(Path("/d/mitdb/100"), Path("/d"), r"^[ps](\\d{5,})(?:[-_].*)?$") is None
    True
    """
    regex = re.compile(pattern)
    for part in reversed(path.relative_to(source).parts):
        match = regex.match(part)
        if match:
            return int(match.group(1))
    return None


def _base_datetime(header) -> tuple[dt.datetime | None, str | None]:
    time = getattr(header, "base_time", None)
    date = getattr(header, "base_date", None)
    time_text = time.isoformat() if time is not None else None
    if time is None or date is None:
        return None, time_text
    return dt.datetime.combine(date, time), time_text


def _channels(header, layout, segments) -> tuple[list[str], list[float]]:
    """Channel names and native rates: the record's own, or for a multi-segment record the
    layout header's followed by any other channel a readable segment has."""
    names: list[str] = []
    rates: list[float] = []
    if getattr(header, "seg_name", None) is None:
        spf = header.samps_per_frame or [1] * int(header.n_sig or 0)
        return list(header.sig_name or []), [float(header.fs) * int(s or 1) for s in spf]
    if layout is not None:
        for name, spf in zip(layout.sig_name or [], layout.samps_per_frame or [], strict=False):
            names.append(name)
            rates.append(float(layout.fs) * int(spf or 1))
    for seg in segments:
        for i, name in enumerate(seg.sig_names):
            if name not in names:
                names.append(name)
                rates.append(seg.fs(i))
    return names, rates


def _layout_header(header, path: Path):
    """The layout header of a multi-segment record (first segment of length 0), if present."""
    if getattr(header, "seg_name", None) is None or not header.seg_len:
        return None
    first, length = header.seg_name[0], int(header.seg_len[0])
    layout = path.parent / first
    if length != 0 or first == "~" or not layout.with_name(first + ".hea").exists():
        return None
    try:
        return read_header(layout)[0]
    except DataError:
        return None


def _fingerprint(path: Path, files: list[str]) -> str:
    """A hash of the record's file names, sizes and modification times (cheap, no reads)."""
    digest = hashlib.sha256()
    for name in sorted(set(files)):
        file = path.parent / name
        stat = file.stat() if file.exists() else None
        digest.update(f"{name}:{stat.st_size if stat else -1}:"
                      f"{stat.st_mtime_ns if stat else -1};".encode())
    return digest.hexdigest()[:16]


def describe_record(path: Path, source: Path, pattern: str) -> dict[str, Any]:
    """One catalog row for the record whose header is ``<path>.hea`` (raises DataError)."""
    header, repair = read_header(path)
    readable, skipped = layout_segments(header, path, repair is not None)
    names, rates = _channels(header, _layout_header(header, path), readable)
    multi = getattr(header, "seg_name", None) is not None
    segments = sorted(
        [{"name": s.name, "start_frame": s.start_frame, "n_frames": s.n_frames,
          "has_data": True, "reason": None} for s in readable]
        + [{"name": s.name, "start_frame": s.start_frame, "n_frames": s.n_frames,
            "has_data": False, "reason": s.reason} for s in skipped],
        key=lambda s: (s["start_frame"], s["name"]))
    files = [path.name + ".hea"]
    if multi:
        files += [s["name"] + ".hea" for s in segments]
    for seg in readable:
        files += list(seg.data_files)
    annotations = sorted(f.name[len(path.name) + 1:] for f in path.parent.glob(path.name + ".*")
                         if f.suffix not in (".hea", ".dat") and f.name.count(".") == 1)
    # Annotations too: a new or changed .atr changes the beats' reference symbols.
    files += [f"{path.name}.{ext}" for ext in annotations]
    base, base_time = _base_datetime(header)
    frame_fs = float(header.fs)
    # No length on the record line: wfdb reads what the data file holds (the segment's).
    n_frames = (int(header.sig_len) if header.sig_len is not None
                else sum(s.n_frames for s in readable))
    return {
        "record_name": str(header.record_name), "path": str(path.relative_to(source)),
        "subject_id": subject_id(path, source, pattern), "base_datetime": base,
        "base_time": base_time, "frame_fs": frame_fs, "n_frames": n_frames,
        "duration_s": n_frames / frame_fs if frame_fs > 0 else None, "multi_segment": multi,
        "channels": names, "canonical": [canonical_channel(n) for n in names], "fs": rates,
        "segments": segments, "n_segments": len(segments),
        "n_segments_missing": len(skipped), "header_repair": repair,
        "annotations": annotations, "fingerprint": _fingerprint(path, files),
        "_members": [n for n in (getattr(header, "seg_name", None) or []) if n != "~"],
    }


def build_catalog(source: Path, pattern: str,
                  executor: Any = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(catalog, quarantine)`` for every record under ``source``, both sorted by path.

    Folders are catalogued in parallel through ``executor`` (an ExecutorConfig) when there
    are enough of them to repay starting workers; a folder that fails is quarantined.
    """
    from medae.config import ExecutorConfig
    from medae.executor import map_items

    folders = record_folders(source)
    if executor is None or len(folders) < 64:
        executor = ExecutorConfig(workers=1, progress=False)
    jobs = [FolderJob(str(f), str(source), pattern) for f in folders]
    # Logs name a folder by its number in the walk: MIMIC folder names embed subject ids.
    labels = [f"folder #{i}" for i in range(len(folders))]
    paths = {label: str(f.relative_to(source)) for label, f in zip(labels, folders, strict=True)}
    result = map_items(catalog_folder_item, jobs, executor, names=labels,
                       desc="catalog_waveforms", on_error="collect")
    rows, quarantine = [], []
    for value in result.values:
        if value is not None:
            rows.extend(value[0])
            quarantine.extend(value[1])
    quarantine += [{"path": paths[f.name],
                    "reason": f"folder failed: {show_record(f.error, paths[f.name], FOLDER)}"}
                   for f in result.failures]
    catalog = pl.DataFrame(rows, schema=CATALOG_SCHEMA).sort("path")
    return catalog, pl.DataFrame(quarantine, schema=QUARANTINE_SCHEMA).sort("path")


def _hidden_reason(row: dict[str, str], source: Path, pattern: str) -> str:
    """A quarantine reason fit for a log line: the record's path and subject id hidden."""
    return hide_record(row["reason"], row["path"], subject_id(source / row["path"], source,
                                                              pattern), RECORD)


def _relative(message: str, source: Path) -> str:
    return message.replace(str(source) + os.sep, "")


def write_parquet_atomic(df: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, statistics=False)


def run(params) -> dict[str, Any]:
    """Stage ``catalog_waveforms``: scan ``waveforms.source`` and write the catalog."""
    source = params.path(params.waveforms.source)
    if not source.is_dir():
        raise DataError(f"{source}: waveform source folder not found (waveforms.source)")
    cfg = params.catalog_waveforms
    catalog, quarantine = build_catalog(source.resolve(), params.waveforms.subject_pattern,
                                        params.executor)
    if catalog.height == 0:
        refuse_empty_source(params)
    write_parquet_atomic(catalog, params.path(cfg.out))
    write_parquet_atomic(quarantine, params.path(cfg.quarantine))
    for index, row in enumerate(quarantine.iter_rows(named=True)):
        # By row number, never by path: MIMIC record and folder names embed subject ids.
        log.warning("quarantined record (row %d of %s): %s", index, cfg.quarantine,
                    _hidden_reason(row, source.resolve(), params.waveforms.subject_pattern))
    duplicates = catalog.height - catalog["record_name"].n_unique()
    if duplicates:  # counted, not named: record names embed subject ids
        log.warning("%d catalogued records share their name with another one; only the first "
                    "by path is windowed (window_waveforms reports the others)", duplicates)
    missing = int(catalog["n_segments_missing"].sum()) if catalog.height else 0
    log.info("catalog: %d records, %d quarantined, %d segments without data",
             catalog.height, quarantine.height, missing)
    return {"records": catalog.height, "quarantined": quarantine.height,
            "segments_missing": missing, "out": str(params.path(cfg.out)),
            "quarantine": str(params.path(cfg.quarantine))}
