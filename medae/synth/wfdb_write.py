"""Byte-exact WFDB writing for MIMIC-style multi-segment records (headers and format 80/16 data).

We write headers and ``.dat`` files ourselves rather than through ``wfdb.wrsamp`` because the
MIMIC layout (a master header, a 0-length ``_layout`` header, ``~`` gaps, variable channels per
segment, multi-frequency frames) is not something wrsamp produces, and because our bytes must
be identical for the same seed. ``wfdb.rdrecord`` / ``rdheader`` read everything back (tested).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

# WFDB's invalid-sample value per format: a reader turns it into NaN.
INVALID = {80: -128, 16: -32768}


@dataclass(frozen=True)
class SignalSpec:
    """How one channel is stored: ``digital = round(physical * gain + baseline)``."""

    name: str
    units: str
    gain: float
    baseline: int
    adc_res: int
    spf: int = 1  # samples per frame: 2 gives 250 Hz at a 125 Hz frame rate

    def digital_range(self, fmt: int) -> tuple[int, int]:
        """Valid digital values: the ADC range minus the invalid-sample code."""
        half = 2 ** (self.adc_res - 1)
        return max(-half, INVALID[fmt] + 1), half - 1

    def header_gain(self) -> str:
        return f"{self.gain:g}({self.baseline})/{self.units}"


def to_digital(physical: np.ndarray, spec: SignalSpec, fmt: int) -> np.ndarray:
    """Physical samples to stored integers; NaN becomes the invalid code, the rest is clipped.

    >>> spec = SignalSpec("II", "mV", 127, -64, 8)
    >>> to_digital(np.array([0.0, 1.0, 5.0, np.nan]), spec, 80).tolist()
    [-64, 63, 127, -128]
    """
    low, high = spec.digital_range(fmt)
    scaled = np.round(np.nan_to_num(physical, nan=0.0) * spec.gain + spec.baseline)
    digital = np.clip(scaled, low, high).astype(np.int64)
    digital[np.isnan(physical)] = INVALID[fmt]
    return digital


def encode_frames(digital: list[np.ndarray], specs: list[SignalSpec], fmt: int) -> bytes:
    """Interleave signals frame by frame (``spf`` samples of each signal per frame).

    >>> s = SignalSpec("X", "mV", 1, 0, 16)
    >>> encode_frames([np.array([1, 2]), np.array([3, 4])], [s, s], 16).hex()
    '0100030002000400'
    """
    n_frames = len(digital[0]) // specs[0].spf
    columns = [d.reshape(n_frames, spec.spf) for d, spec in zip(digital, specs, strict=True)]
    frames = np.concatenate(columns, axis=1).ravel()
    if fmt == 80:
        return (frames + 128).astype(np.uint8).tobytes()  # 8-bit offset binary
    return frames.astype("<i2").tobytes()


def _checksum(digital: np.ndarray) -> int:
    """WFDB checksum: the 16-bit two's-complement sum of all samples."""
    total = int(digital.sum()) & 0xFFFF
    return total - 0x10000 if total >= 0x8000 else total


def _fmt_field(fmt: int, spec: SignalSpec) -> str:
    return f"{fmt}x{spec.spf}" if spec.spf > 1 else str(fmt)


def segment_header(name: str, specs: list[SignalSpec], digital: list[np.ndarray], fmt: int,
                   fs: float, start: dt.datetime, *, dat: str | None = None,
                   fs_field: str | None = None, with_date: bool = False) -> str:
    """Header of one single-segment record whose samples live in ``dat`` (``<name>.dat``).

    ``fs_field`` overrides the written rate (e.g. ``0.0166666666667/125`` for MIMIC numerics)
    and ``with_date`` adds the base date, which segments of a multi-segment record omit.

    >>> s = SignalSpec("II", "mV", 127, -64, 8)
    >>> print(segment_header("3000001_0001", [s], [np.array([1, 2])], 80, 125,
    ...                      dt.datetime(2150, 1, 2, 3, 4, 5)), end="")
    3000001_0001 1 125 2 03:04:05
    3000001_0001.dat 80 127(-64)/mV 8 0 1 3 0 II
    """
    n_frames = len(digital[0]) // specs[0].spf
    when = f"{start:%H:%M:%S} {start:%d/%m/%Y}" if with_date else f"{start:%H:%M:%S}"
    lines = [f"{name} {len(specs)} {fs_field or f'{fs:g}'} {n_frames} {when}"]
    for spec, d in zip(specs, digital, strict=True):
        first = int(d[0]) if len(d) else 0
        lines.append(f"{dat or name + '.dat'} {_fmt_field(fmt, spec)} {spec.header_gain()} "
                     f"{spec.adc_res} 0 {first} {_checksum(d)} 0 {spec.name}")
    return "\n".join(lines) + "\n"


def layout_header(name: str, specs: list[SignalSpec], fs: float, start: dt.datetime) -> str:
    """The 0-length ``_layout`` header listing every channel that appears in any segment.

    >>> print(layout_header("3000001_layout", [SignalSpec("PLETH", "NU", 255, -128, 8)], 125,
    ...                     dt.datetime(2150, 1, 2, 3, 4, 5)), end="")
    3000001_layout 1 125 0 03:04:05
    ~ 0 255(-128)/NU 8 0 0 0 0 PLETH
    """
    lines = [f"{name} {len(specs)} {fs:g} 0 {start:%H:%M:%S}"]
    lines += [f"~ {_fmt_field(0, s)} {s.header_gain()} {s.adc_res} 0 0 0 0 {s.name}"
              for s in specs]
    return "\n".join(lines) + "\n"


def master_header(name: str, layout: str, segments: list[tuple[str, int]], n_sig: int,
                  fs: float, start: dt.datetime) -> str:
    """Multi-segment master header; a segment named ``~`` is a gap with no data.

    >>> print(master_header("p1-x", "3_layout", [("3_0001", 10), ("~", 5)], 2, 125,
    ...                     dt.datetime(2150, 1, 2, 3, 4, 5)), end="")
    p1-x/3 2 125 15 03:04:05 02/01/2150
    3_layout 0
    3_0001 10
    ~ 5
    """
    total = sum(n for _, n in segments)
    lines = [f"{name}/{len(segments) + 1} {n_sig} {fs:g} {total} "
             f"{start:%H:%M:%S} {start:%d/%m/%Y}", f"{layout} 0"]
    lines += [f"{seg} {n}" for seg, n in segments]
    return "\n".join(lines) + "\n"


NORMAL_BEAT, SKIP, NOTE, AUX = 1, 59, 22, 63  # MIT annotation codes


def annotation_bytes(samples: np.ndarray, fs: float) -> bytes:
    """An MIT-format annotation file of normal beats (``N``) at ``samples``, with the
    ``## time resolution`` note ``wfdb.rdann`` reads ``fs`` from (as ``wfdb.wrann`` writes it,
    minus its per-annotation pandas cost).

    >>> annotation_bytes(np.array([5, 2000]), 125).hex()[-28:]
    '0100050400ec0000cb0700040000'
    """
    note = f"## time resolution: {fs:g}".encode()
    out = bytearray([0, NOTE << 2, len(note), AUX << 2]) + note + (b"\0" if len(note) % 2 else b"")
    out += bytes([0, SKIP << 2, 255, 255, 255, 255, 1, 0])  # end of the special annotations
    previous = 0
    for sample in samples.tolist():
        diff = sample - previous
        if diff > 1023:  # too long for the 10-bit field: a SKIP word carries the interval
            out += bytes([0, SKIP << 2, (diff >> 16) & 255, (diff >> 24) & 255, diff & 255,
                          (diff >> 8) & 255])
            diff = 0
        out += bytes([diff & 255, (diff >> 8) + (NORMAL_BEAT << 2)])
        previous = sample
    return bytes(out + b"\0\0")
