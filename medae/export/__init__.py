"""Batch export of latent features to Parquet, and refresh bookkeeping."""

# Stage name -> "module:function"; the function takes a Params and returns a JSON-able summary.
# Strings, not imports, so that `medae --help` stays instant.
STAGES: dict[str, str] = {
    "export_latents": "medae.export.latents:run",
}
