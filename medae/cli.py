"""The ``medae`` command line. Heavy libraries are imported inside commands so --help is instant.

Exit codes: 0 success; 1 data or pipeline error (one line on stderr); 2 usage error.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="medae",
    help=(
        "medae turns MIMIC-style EHR tables and PhysioNet WFDB waveforms into autoencoder "
        "latent features (Parquet), refreshed nightly.\n\n"
        "Configuration lives in params.yaml (one section per stage); every command that reads "
        "it accepts --params FILE and repeatable --set section.key=value overrides."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOpt = Annotated[
    Path | None,
    typer.Option("--params", "-p", help="params file to use [default: ./params.yaml]"),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a key for this run: section.key=value "
                 "(repeatable; value parsed as YAML)"),
]


def setup_logging(verbose: bool = False) -> None:
    """Library logs at INFO on stderr (Prefect picks them up via PREFECT_LOGGING_EXTRA_LOGGERS)."""
    logger = logging.getLogger("medae")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False  # MLflow adds a root handler; without this every line prints twice
    if not any(getattr(h, "_medae", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                               "%H:%M:%S"))
        handler._medae = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def guarded(body: Callable[[], Any]) -> Any:
    """Run a command body, turning medae errors into a one-line message and an exit code."""
    from medae.errors import MedaeError
    from medae.io import private_umask

    try:
        # Owner-only outputs by default, including files written by Polars sinks, DVC and
        # MLflow that medae does not open itself (MEDAE_FILE_MODE / MEDAE_DIR_MODE widen it).
        private_umask()
        return body()
    except MedaeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None


def _load(params: Path | None, sets: list[str] | None):
    from medae.config import load_params

    return load_params(params, sets or [])


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _stage_help() -> str:
    from medae.stages import registry

    return ", ".join(registry()) or "(none yet)"


@app.command()
def run(
    stage: Annotated[str, typer.Argument(help="stage name as in dvc.yaml (see `medae stages`)")],
    params: ParamsOpt = None,
    set_: SetOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """Run one pipeline stage (the DVC stages' `cmd`). Prints the stage summary as JSON.

    Inputs, outputs and defaults of each stage are keys of its params.yaml section; see
    `medae stages` for the list and README.md for what each one reads and writes.
    """
    setup_logging(verbose)

    def body() -> None:
        from medae.allocator import keep_freed_memory

        # before resolve() imports the stage's libraries, which start threads (medae.allocator)
        keep_freed_memory()
        from medae.stages import resolve, run_stage

        resolve(stage)  # unknown stage -> usage error before the params are even read
        _print_json(run_stage(stage, _load(params, set_)))

    guarded(body)


@app.command()
def stages() -> None:
    """List the registered stages in pipeline order."""
    from medae.stages import registry

    for name, target in registry().items():
        typer.echo(f"{name:22s} {target}")


@app.command()
def synth(
    out: Annotated[Path, typer.Option(
        help="folder to write (hosp/, icu/, waveforms/): empty, or written by medae synth")],
    subjects: Annotated[int, typer.Option(min=1, help="number of patients")] = 200,
    seed: Annotated[int, typer.Option(help="random seed; same seed, byte-identical files")] = 0,
    waveforms: Annotated[bool, typer.Option("--waveforms/--no-waveforms",
                                            help="also write WFDB waveform records")] = True,
    waveform_share: Annotated[float, typer.Option(min=0.0, max=1.0,
                                                  help="share of ICU stays with a record")] = 0.3,
    waveform_out: Annotated[Path | None, typer.Option(
        help="folder for the WFDB records [default: OUT/waveforms]")] = None,
    waveform_seconds: Annotated[float, typer.Option(
        min=1.0, help="seconds of signal per WFDB record")] = 300.0,
) -> None:
    """Generate realistic MIMIC-IV v2.2-layout demo data (.csv.gz) plus linked WFDB records.

    Writes OUT/hosp/{patients,admissions,labevents,d_labitems}.csv.gz,
    OUT/icu/{icustays,chartevents,d_items}.csv.gz and, with --waveforms, MIMIC-style
    multi-segment records under OUT/waveforms/pNN/pNNNNNNN/. See docs/synth.md for the
    artifacts injected and their rates.
    """
    setup_logging()

    def body() -> None:
        from medae.synth.generate import generate

        _print_json(generate(out, subjects=subjects, seed=seed, waveforms=waveforms,
                             waveform_share=waveform_share, waveform_out=waveform_out,
                             waveform_seconds=waveform_seconds))

    guarded(body)


@app.command()
def evaluate(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Evaluate the latents (imputation, mortality probe, MIT-BIH beats); prints one JSON object.

    Data come from the params.yaml section `evaluate`; results are also logged to MLflow.
    """
    setup_logging()

    def body() -> None:
        from medae.allocator import keep_freed_memory

        keep_freed_memory()  # a batch process, as every stage, before any library's threads
        from medae.stages import resolve

        _print_json(resolve("evaluate")(_load(params, set_)))

    guarded(body)


@app.command()
def refresh(
    params: ParamsOpt = None,
    set_: SetOpt = None,
    stage: Annotated[list[str] | None, typer.Option(
        "--stage", help="only these stages (repeatable) [default: all]")] = None,
    force: Annotated[bool, typer.Option(
        help="re-run stages even when DVC says they are up to date")] = False,
) -> None:
    """Run the nightly refresh once, now: DVC stages, training policy, push, report.

    The DVC stages run in DVC's order, then the data is pushed and dvc.lock committed; the
    run report goes to reports/refresh.md. A second refresh while one runs fails fast.

    --set / --params reach only the refresh.* and dvc.* sections: the stages run through
    `dvc repro`, which reads params.yaml, so a stage override is refused (exit 2); edit
    params.yaml instead and the refresh re-runs exactly the stages it affects.
    """
    setup_logging()

    def body() -> None:
        from flows.nightly import run_refresh

        _print_json(run_refresh(_load(params, set_), stages=stage or None, force=force))

    guarded(body)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
