"""params.yaml sections of the waveform stages."""

from medae.config_base import Section


class WaveformSource(Section):
    """Where the WFDB records are read from (``waveforms.source``)."""

    source: str = "data/source/waveforms"


class CatalogWaveforms(Section):
    out: str = "data/interim/waveform_catalog.parquet"


class WindowWaveforms(Section):
    out: str = "data/features/waveform_windows"
    report: str = "reports/dq_waveforms.json"
