"""Training loop, MLflow tracking and registration, and evaluation of the latents."""

# Stage name -> "module:function"; the function takes a Params and returns a JSON-able summary.
# Strings, not imports, so that `medae --help` stays instant.
STAGES: dict[str, str] = {
    "train_ehr": "medae.training.train:run_ehr",
    "train_waveforms": "medae.training.train:run_waveforms",
    "pair_windows": "medae.training.pair_windows:run",
    "train_multimodal": "medae.training.train_multimodal:run",
    "evaluate": "medae.training.evaluate:run",
}
