#!/usr/bin/env bash
# `make demo` (after the install step): demo data when the default input folders are empty,
# then the nightly refresh once, then where everything is. Fails loudly: any failing step stops
# the script with a non-zero exit, and success is printed only after the outputs are checked.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BIN="$ROOT/.venv/bin"
export PATH="$BIN:$PATH"
START=$(date +%s)

say() { printf '\n== %s\n' "$*"; }
is_empty() { [ ! -d "$1" ] || [ -z "$(ls -A "$1" 2>/dev/null)" ]; }
param() { python -c "from medae.config import load_params as l; p = l(); print($1)"; }

EHR_SOURCE=$(param 'p.path(p.ehr.source)')
WAVE_SOURCE=$(param 'p.path(p.waveforms.source)')
LATENTS=$(param 'p.path(p.export_latents.out)')
MODALITIES=$(param '" ".join(p.export_latents.modalities)')
EVALUATION=$(param 'p.path(p.evaluate.out)')

if is_empty "$EHR_SOURCE" && is_empty "$WAVE_SOURCE"; then
  say "generating demo data: 200 subjects with waveforms -> $EHR_SOURCE, $WAVE_SOURCE"
  medae synth --out "$EHR_SOURCE" --subjects 200 --seed 0 --waveform-out "$WAVE_SOURCE" \
    > /dev/null
elif is_empty "$EHR_SOURCE" || is_empty "$WAVE_SOURCE"; then
  echo "error: one of $EHR_SOURCE and $WAVE_SOURCE is empty and the other is not;" >&2
  echo "       demo data is generated only when both are empty (they must describe the same" >&2
  echo "       subjects). Empty both, or point ehr.source / waveforms.source in params.yaml" >&2
  echo "       at your data." >&2
  exit 1
else
  say "using the data already in $EHR_SOURCE and $WAVE_SOURCE"
fi

say "stages: dvc.yaml vs what medae implements"
missing=$(python - <<'EOF'
import yaml
from medae.stages import registry
declared = yaml.safe_load(open("dvc.yaml"))["stages"]
print(" ".join(s for s in declared if s not in registry()))
EOF
)
if [ -n "$missing" ]; then
  echo "not implemented yet (the refresh will stop at them and fail): $missing"
else
  echo "all $(python -c 'from medae.stages import registry; print(len(registry()))') stages implemented"
fi

say "running the nightly refresh (medae refresh)"
mkdir -p reports
# refresh.commit_lock=false: the demo never writes to your git history (a deployment's nightly
# refresh commits dvc.lock alone after each successful run: its data-version history)
medae refresh --set refresh.commit_lock=false > reports/.refresh.json.tmp   # JSON summary; progress on stderr
mv reports/.refresh.json.tmp reports/refresh.json

say "checking the outputs"
python - "$LATENTS" $MODALITIES <<'EOF'
import json, sys
from pathlib import Path
import polars as pl
latents = Path(sys.argv[1])
index = json.loads((latents / "_manifest.json").read_text())
for modality in sys.argv[2:]:
    if modality not in index:
        sys.exit(f"error: {latents / '_manifest.json'} has no entry for {modality}")
    rows = pl.scan_parquet(f"{latents / modality}/").select(pl.len()).collect().item()
    if rows == 0 or rows != index[modality]["rows"]:
        sys.exit(f"error: {latents / modality}: {rows} rows, manifest says "
                 f"{index[modality]['rows']}")
    print(f"{modality:10s} {rows:>8,} latent rows  model {index[modality]['model_name']} "
          f"v{index[modality]['model_version']}  -> {latents / modality}/")
EOF

# The evaluation ran with the training (refresh.evaluate: with_training); a part whose data is
# absent (MIT-BIH is read from evaluate.mitdb, outside the checkout) says so here.
python - "$EVALUATION" <<'EOF'
import json, sys
from pathlib import Path
path = Path(sys.argv[1])
if path.exists():
    result = json.loads(path.read_text())
    for part, what in (("ehr", "EHR"), ("wave", "MIT-BIH waveforms")):
        print(f"evaluation, {what}: {result.get(f'{part}_status', 'not run')}")
    print(f"  -> {path}")
EOF

cat <<EOF

== done in $(( $(date +%s) - START )) s

Latents (one Parquet table per modality, manifest in $LATENTS/_manifest.json):
  python -c 'import polars as pl; print(pl.scan_parquet("$LATENTS/ehr/").collect())'
Run report: reports/refresh.md   (stage by stage: ran or skipped, rows, DQ, models)
DVC: dvc.lock versions the data; outputs pushed to the remote in params.yaml (dvc.remote).

Prefect UI (the demo's flow runs and the run report artifact):
  PREFECT_HOME=$ROOT/.prefect $BIN/prefect server start     # then open http://127.0.0.1:4200
MLflow UI (runs, metrics, registered models, the champion alias):
  $BIN/mlflow ui --backend-store-uri sqlite:///$ROOT/mlflow.db   # http://127.0.0.1:5000
Run it again: make demo   (a no-op refresh when nothing changed)
EOF
