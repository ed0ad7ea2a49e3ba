"""Waveform fixtures: the whole real PhysioNet folder catalogued and windowed once per session."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from medae.config import load_params


def waveform_params(source: Path, out: Path, *extra: str):
    """Production params with every waveform path pointed into ``out`` (nothing else moves)."""
    return load_params(None, [
        f"waveforms.source={source}",
        f"catalog_waveforms.out={out / 'catalog.parquet'}",
        f"catalog_waveforms.quarantine={out / 'quarantine.parquet'}",
        f"window_waveforms.out={out / 'windows'}",
        f"window_waveforms.beats_out={out / 'beats'}",
        f"window_waveforms.report={out / 'dq_waveforms.json'}",
        f"window_waveforms.totals={out / 'dq_waveforms_totals.json'}",
        "executor.workers=1", "executor.progress=false", *extra])


@pytest.fixture(scope="session")
def make_wf_params():
    """``waveform_params`` as a fixture (test modules here are not an importable package)."""
    return waveform_params


@pytest.fixture(scope="session")
def wf_run(physionet: Path, tmp_path_factory):
    """Catalog + windows of every real record; returns (params, catalog, summary, report)."""
    from medae.waveforms import catalog, windows

    out = tmp_path_factory.mktemp("waveforms")
    params = waveform_params(physionet, out)
    catalog.run(params)
    summary = windows.run(params)
    report = json.loads((out / "dq_waveforms.json").read_text())
    return params, pl.read_parquet(out / "catalog.parquet"), summary, report
