"""EHR pipeline: MIMIC-IV / MIMIC-III tables to a MEDS event store and stay windows."""

# Stage name -> "module:function"; the function takes a Params and returns a JSON-able summary.
# Strings, not imports, so that `medae --help` stays instant.
STAGES: dict[str, str] = {
    "ingest_ehr": "medae.ehr.ingest:run",
    "clean_ehr": "medae.ehr.clean:run",
    "featurize_ehr": "medae.ehr.featurize:run",
}
