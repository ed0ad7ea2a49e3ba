"""``medae synth``: write a MIMIC-IV v2.2-layout demo database (and linked WFDB records)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from medae.errors import UsageError
from medae.io import write_json_atomic
from medae.synth import cohort as co
from medae.synth.csvgz import csv_gz_writer, write_csv_gz
from medae.synth.events import (
    CHARTEVENTS_COLUMNS,
    LABEVENTS_COLUMNS,
    chartevents_chunk,
    labevents_chunk,
)
from medae.synth.items import d_items, d_labitems

log = logging.getLogger(__name__)

# Chunk sizes fix which random stream draws which rows, so they are part of the output's
# identity: changing them changes the data (not its statistics). They also bound memory.
STAYS_PER_CHUNK = 1_000
ADMISSIONS_PER_CHUNK = 2_000
STREAM_COHORT, STREAM_CHART, STREAM_LAB, STREAM_WAVE, STREAM_PROVIDERS = 0, 1, 2, 3, 4
# Written first into each output folder: this folder holds medae synth's demo data (and may
# be written over by the next run).
MARKER = ".medae-synth.json"


def stream_rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    """The random generator of one (table, chunk): independent of every other chunk.

    >>> float(stream_rng(1, 2, 3).random()) == float(stream_rng(1, 2, 3).random())
    True
    """
    return np.random.default_rng(np.random.SeedSequence([seed, stream, chunk]))


def generate(out: Path, *, subjects: int, seed: int, waveforms: bool = True,
             waveform_share: float = 0.3, waveform_out: Path | None = None,
             waveform_seconds: float = 300.0) -> dict:
    """Write ``out/hosp`` and ``out/icu`` tables (and WFDB records); return a summary.

    >>> import tempfile
    >>> summary = generate(Path(tempfile.mkdtemp()), subjects=3, seed=0, waveforms=False)
    >>> summary["rows"]["patients"]
    3
    """
    _check_arguments(subjects, seed, waveform_share, waveform_seconds)
    started = time.perf_counter()
    out = Path(out)
    wave_dir = Path(waveform_out) if waveform_out is not None else out / "waveforms"
    folders = (out, wave_dir) if waveforms else (out,)
    for folder in folders:
        check_writable(folder)
    marker = {"subjects": subjects, "seed": seed}
    # first: an interrupted run leaves a folder the next run may write over (the waveform
    # folder is replaced as a whole, atomically: its marker goes in with it, below)
    write_json_atomic(out / MARKER, marker)
    cohort = co.make_cohort(subjects, stream_rng(seed, STREAM_COHORT))
    rows = {
        "patients": write_csv_gz(out / "hosp" / "patients.csv.gz", co.patients_table(cohort)),
        "admissions": write_csv_gz(out / "hosp" / "admissions.csv.gz",
                                   co.admissions_table(cohort)),
        "icustays": write_csv_gz(out / "icu" / "icustays.csv.gz", co.icustays_table(cohort)),
        "d_items": write_csv_gz(out / "icu" / "d_items.csv.gz", d_items()),
        "d_labitems": write_csv_gz(out / "hosp" / "d_labitems.csv.gz", d_labitems()),
    }
    rows["chartevents"] = _write_chartevents(out / "icu" / "chartevents.csv.gz", cohort, seed)
    rows["labevents"] = _write_labevents(out / "hosp" / "labevents.csv.gz", cohort, seed)
    summary: dict = {"out": str(out), "subjects": subjects, "seed": seed, "rows": rows}
    if waveforms:
        from medae.synth.waveforms import write_waveforms

        summary["waveforms"] = write_waveforms(wave_dir, cohort, seed=seed, share=waveform_share,
                                               seconds=waveform_seconds)
        write_json_atomic(wave_dir / MARKER, marker)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    log.info("synth: %d subjects, %d chartevents rows in %.1f s", subjects,
             rows["chartevents"], summary["seconds"])
    return summary


def check_writable(folder: Path) -> None:
    """Refuse to write demo data into a folder holding anything else: the generator would
    overwrite a real ``patients.csv.gz``, or mix its subjects with real ones. A folder an
    earlier ``medae synth`` wrote (its ``MARKER`` file) is written over.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "patients.csv.gz").write_bytes(b"")
    >>> check_writable(folder)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medae.errors.UsageError: ...: not empty (patients.csv.gz) and not written by medae synth; ...
    """
    if not folder.is_dir() or (folder / MARKER).exists():
        return
    found = sorted(p.name for p in folder.iterdir())
    if found:
        raise UsageError(f"{folder}: not empty ({', '.join(found[:3])}"
                         f"{', ...' if len(found) > 3 else ''}) and not written by medae synth; "
                         "generate demo data into an empty folder")


def _check_arguments(subjects: int, seed: int, share: float, seconds: float) -> None:
    """Reject arguments the generator cannot honour, naming the option (exit code 2)."""
    problems = [msg for bad, msg in (
        (subjects < 1, f"--subjects must be at least 1, got {subjects}"),
        (seed < 0, f"--seed must be a non-negative integer, got {seed}"),
        (not 0.0 <= share <= 1.0, f"--waveform-share must be within [0, 1], got {share}"),
        (seconds <= 0, f"waveform_seconds must be positive, got {seconds}"),
    ) if bad]
    if problems:
        raise UsageError("; ".join(problems))


def _write_chartevents(path: Path, cohort: co.Cohort, seed: int) -> int:
    stays = cohort.stays
    with csv_gz_writer(path, CHARTEVENTS_COLUMNS) as writer:
        for chunk, start in enumerate(range(0, stays.height, STAYS_PER_CHUNK)):
            part = stays.slice(start, STAYS_PER_CHUNK)
            writer.write(chartevents_chunk(part, stream_rng(seed, STREAM_CHART, chunk)))
            log.info("chartevents: %d/%d stays, %d rows", min(start + STAYS_PER_CHUNK,
                     stays.height), stays.height, writer.rows)
    return writer.rows


def _write_labevents(path: Path, cohort: co.Cohort, seed: int) -> int:
    adm = cohort.admissions
    providers = co.provider_ids(stream_rng(seed, STREAM_PROVIDERS), 400)
    next_labevent, next_specimen = 1, 10_000_000
    with csv_gz_writer(path, LABEVENTS_COLUMNS) as writer:
        for chunk, start in enumerate(range(0, adm.height, ADMISSIONS_PER_CHUNK)):
            part = adm.slice(start, ADMISSIONS_PER_CHUNK)
            frame = labevents_chunk(part, stream_rng(seed, STREAM_LAB, chunk), providers,
                                    next_labevent, next_specimen)
            writer.write(frame)
            if frame.height:
                next_labevent = int(frame["labevent_id"].max()) + 1
                next_specimen = int(frame["specimen_id"].max()) + 1
    return writer.rows
