"""Waveform pipeline: PhysioNet WFDB records to quality-checked, model-ready windows."""

# Stage name -> "module:function"; the function takes a Params and returns a JSON-able summary.
# Strings, not imports, so that `medae --help` stays instant.
STAGES: dict[str, str] = {
    "catalog_waveforms": "medae.waveforms.catalog:run",
    "window_waveforms": "medae.waveforms.windows:run",
}
