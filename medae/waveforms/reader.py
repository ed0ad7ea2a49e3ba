"""Bounded reads of single- and multi-segment WFDB records at each signal's native rate.

A record is described as a list of :class:`Segment` (a single-segment record is one segment;
a multi-segment record lists its segments with their offsets on the record's time line, gaps
``~`` and layout headers left out). :func:`iter_chunks` then reads a segment in chunks with
``sampfrom/sampto`` and ``smooth_frames=False`` so memory stays bounded on records of any
length and multi-rate signals keep their own rates (wfdb's default averages them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medae.errors import DataError
from medae.waveforms.headers import read_header, readable_record

log = logging.getLogger(__name__)

# Bytes per group of samples of each uncompressed WFDB format (212 packs 2 samples in 3 bytes,
# 310/311 pack 3 in 4); FLAC formats (508, 516, 524) are absent: their size says nothing.
PACKING = {"8": (1, 1), "80": (1, 1), "16": (2, 1), "61": (2, 1), "160": (2, 1), "24": (3, 1),
           "32": (4, 1), "212": (3, 2), "310": (4, 3), "311": (4, 3)}
# Bits per sample of each WFDB storage format (the invalid-sample sentinel is -2**(bits-1)).
FORMAT_BITS = {"8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16, "212": 12,
               "310": 10, "311": 10, "508": 8, "516": 16, "524": 24}


@dataclass(frozen=True)
class Segment:
    """One readable stretch of a record (picklable, so it can be sent to workers)."""

    path: str  # header path without ``.hea``
    name: str
    start_frame: int  # offset on the record's time line, in frames
    n_frames: int
    frame_fs: float
    sig_names: tuple[str, ...]
    samps_per_frame: tuple[int, ...]
    repaired: bool = False  # its header needed the tolerant fallback (read via a fixed copy)
    data_files: tuple[str, ...] = ()
    extra_frames: int = 0  # whole frames in the data files beyond the header's length
    frames_held: int = -1  # fewest whole frames one of its data files holds (-1: unknown)
    length_from_file: bool = False  # the header declares no length: n_frames is frames_held

    def fs(self, i: int) -> float:
        return self.frame_fs * self.samps_per_frame[i]


@dataclass(frozen=True)
class SkippedSegment:
    """A segment listed by the master header that cannot be read, and why."""

    name: str
    reason: str
    start_frame: int = 0
    n_frames: int = 0


@dataclass
class ChannelChunk:
    """One signal of one chunk: physical values (NaN where invalid) and clipped samples."""

    name: str
    fs: float
    values: np.ndarray
    clipped: np.ndarray


@dataclass
class Chunk:
    """Frames ``[frame0, frame0 + n)`` of a segment; windows should start in ``[core_start,
    core_stop)`` (the rest is padding so filters settle)."""

    frame0: int
    core_start: int
    core_stop: int
    channels: list[ChannelChunk]


def _data_present(header, folder: Path) -> bool:
    names = set(getattr(header, "file_name", None) or [])
    return bool(names) and all((folder / n).exists() for n in names)


def record_segments(path: str | Path) -> tuple[list[Segment], list[SkippedSegment], str | None]:
    """The readable segments of a record, those skipped (with why) and any header repair.

    Raises :class:`DataError` when the record's own header cannot be parsed.
    """
    path = Path(path)
    header, repair = read_header(path)
    return (*layout_segments(header, path, repair is not None), repair)


def layout_segments(header, path: Path,
                    repaired: bool = False) -> tuple[list[Segment], list[SkippedSegment]]:
    """Readable and skipped segments of an already parsed header (see record_segments)."""
    if getattr(header, "seg_name", None) is None:
        n_frames = int(header.sig_len or 0)
        if not _data_present(header, path.parent):
            return [], [SkippedSegment(path.name, "data file missing", 0, n_frames)]
        return [_segment(header, path, 0, repaired)], []
    segments: list[Segment] = []
    skipped: list[SkippedSegment] = []
    offset = 0
    for name, length in zip(header.seg_name, header.seg_len, strict=True):
        start, offset = offset, offset + int(length)
        if name == "~" or int(length) == 0:
            continue  # a gap, or the layout header (zero length)
        seg_path = path.parent / name
        if not seg_path.with_name(name + ".hea").exists():
            skipped.append(SkippedSegment(name, "header missing", start, int(length)))
            continue
        try:
            seg_header, seg_repair = read_header(seg_path)
        except DataError:
            skipped.append(SkippedSegment(name, "malformed header", start, int(length)))
            continue
        if not _data_present(seg_header, path.parent):
            skipped.append(SkippedSegment(name, "data file missing", start, int(length)))
            continue
        segments.append(_segment(seg_header, seg_path, start, seg_repair is not None))
    return segments, skipped


def _segment(header, path: Path, start: int, repaired: bool) -> Segment:
    n_sig = int(header.n_sig or 0)
    spf = tuple(int(s or 1) for s in (header.samps_per_frame or [1] * n_sig))
    held = frames_held(header, path.parent)
    fewest = min(held) if held else -1
    # No length on the record line: wfdb reads every frame the data file holds, so do we.
    from_file = header.sig_len is None and fewest >= 0
    n_frames = fewest if from_file else int(header.sig_len or 0)
    return Segment(str(path), path.name, start, n_frames, float(header.fs),
                   tuple(header.sig_name or []), spf, repaired,
                   tuple(sorted(set(header.file_name or []))),
                   max([0] + [h - n_frames for h in held]), fewest, from_file)


def frames_in_file(size: int, fmt: str, samples_per_frame: int, byte_offset: int = 0) -> int:
    """Whole frames a data file of ``size`` bytes holds (-1 when its format is compressed).

    >>> frames_in_file(7200 * 3, "212", 2)  # 2 signals in format 212: 3 bytes a frame
    7200
    >>> frames_in_file(10, "16", 1, byte_offset=2), frames_in_file(10, "516", 1)
    (4, -1)
    """
    if fmt not in PACKING or samples_per_frame <= 0:
        return -1
    group_bytes, group_samples = PACKING[fmt]
    return max(0, size - byte_offset) // group_bytes * group_samples // samples_per_frame


def frames_held(header, folder: Path) -> list[int]:
    """Whole frames each present, uncompressed data file of ``header`` holds, from its size.

    The header's declared length is compared with these: wfdb reads only the declared frames
    and ignores the rest without a word (the DQ report's ``data_longer_than_header``), and a
    file holding fewer fails its reads (:func:`iter_chunks` says so first).
    """
    files: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name or []):
        files.setdefault(name, []).append(i)
    held = []
    for name, signals in files.items():
        file = folder / name
        if not file.is_file():
            continue
        spf = sum(int((header.samps_per_frame or [1] * (i + 1))[i] or 1) for i in signals)
        offset = int((header.byte_offset or [0] * (signals[0] + 1))[signals[0]] or 0)
        frames = frames_in_file(file.stat().st_size, str(header.fmt[signals[0]]), spf, offset)
        if frames >= 0:
            held.append(frames)
    return held


def _clip_bounds(header, i: int) -> tuple[int, int, int]:
    """``(sentinel, low, high)`` digital values: invalid marker and ADC saturation limits."""
    bits = FORMAT_BITS.get(str(header.fmt[i]), 16)
    sentinel = -(2 ** (bits - 1))
    res = int((header.adc_res or [0] * (i + 1))[i] or 0)
    if 0 < res < bits:
        zero = int((header.adc_zero or [0] * (i + 1))[i] or 0)
        return sentinel, zero - 2 ** (res - 1), zero + 2 ** (res - 1) - 1
    return sentinel, sentinel + 1, 2 ** (bits - 1) - 1


def iter_chunks(segment: Segment, chunk_frames: int, pad_frames: int = 0,
                channels: Sequence[int] | None = None) -> Iterator[Chunk]:
    """Read ``segment`` in chunks of ``chunk_frames`` core frames plus ``pad_frames`` either
    side (clipped at the ends); only the listed channel indices are returned."""
    import wfdb

    wanted = list(range(len(segment.sig_names))) if channels is None else list(channels)
    if not wanted or segment.n_frames <= 0:
        return
    if 0 <= segment.frames_held < segment.n_frames:
        raise DataError(f"{segment.path}: data file holds {segment.frames_held} of the "
                        f"{segment.n_frames} frames the header declares")
    with _readable(segment) as readable:
        for core_start in range(0, segment.n_frames, chunk_frames):
            core_stop = min(core_start + chunk_frames, segment.n_frames)
            lo = max(0, core_start - pad_frames)
            hi = min(segment.n_frames, core_stop + pad_frames)
            try:
                rec = wfdb.rdrecord(str(readable), sampfrom=lo, sampto=hi, channels=wanted,
                                    physical=False, smooth_frames=False)
            except Exception as exc:  # noqa: BLE001 - wfdb raises many types on bad data
                raise DataError(f"{segment.path}: cannot read frames {lo}-{hi} "
                                f"({type(exc).__name__})") from None
            yield Chunk(lo, core_start, core_stop, [
                _to_physical(rec, j, segment.fs(i)) for j, i in enumerate(wanted)])


@contextmanager
def _readable(segment: Segment) -> Iterator[str | Path]:
    """The segment's path, or a fixed copy when its header needed a repair or declares no
    length (wfdb refuses ``sampfrom/sampto`` without one)."""
    if not segment.repaired and not segment.length_from_file:
        yield segment.path
        return
    with readable_record(segment.path, segment.n_frames) as fixed:
        yield fixed


def _to_physical(rec, j: int, fs: float) -> ChannelChunk:
    digital = rec.e_d_signal[j]
    sentinel, low, high = _clip_bounds(rec, j)
    invalid = digital == sentinel
    gain = float(rec.adc_gain[j] or 200.0)  # WFDB: a zero gain means the default 200/unit
    values = (digital.astype(np.float64) - float(rec.baseline[j] or 0)) / gain
    values[invalid] = np.nan
    clipped = ((digital <= low) | (digital >= high)) & ~invalid
    return ChannelChunk(rec.sig_name[j], fs, values, clipped)


# ---------------------------------------------------------------------------------------------
# A source that yields no record (shared by catalog_waveforms and window_waveforms, which
# both depend on this module in dvc.yaml)


def published_outputs(params) -> int:
    """How many window and beat files earlier ``window_waveforms`` runs left (one per record
    and kind)."""
    cfg = params.window_waveforms
    return sum(len(list(folder.glob("*.parquet"))) for folder in
               (params.path(cfg.out), params.path(cfg.beats_out)) if folder.is_dir())


def refuse_empty_source(params, catalog_file: Path | None = None) -> None:
    """Raise when nothing was catalogued but earlier runs left window outputs: an empty or
    unmounted source would otherwise remove every one of them (window_waveforms removes the
    outputs of records no longer catalogued). On a first run an empty source is a warning.
    """
    published = published_outputs(params)
    source = params.path(params.waveforms.source)
    cfg = params.window_waveforms
    if published:
        where = (f"{catalog_file}: the waveform catalog lists no record" if catalog_file
                 else f"{source}: no WFDB record found (waveforms.source)")
        raise DataError(
            f"{where}, but earlier runs left {published} window/beat files in "
            f"{params.path(cfg.out)} and {params.path(cfg.beats_out)}: is the source empty "
            "or unmounted? Nothing was changed (to start over from an empty source, delete "
            "those folders)")
    log.warning("no WFDB record found under %s (waveforms.source)", source)
