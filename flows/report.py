"""The refresh run report: what each stage did, row counts, DQ summary, models, latents."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medae.io import read_json

# Terminal states of a stage in one refresh.
RAN, SKIPPED, HELD, MISSING, BLOCKED, FAILED = (
    "ran", "skipped", "held", "missing", "blocked", "failed")
NOT_OK = (MISSING, BLOCKED, FAILED)


@dataclass
class StageOutcome:
    """What happened to one stage: status, seconds, why, and row counts of its outputs."""

    stage: str
    status: str
    seconds: float = 0.0
    detail: str = ""
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parquet_rows(path: Path) -> int | None:
    """Rows in a Parquet file or a folder of them, from the footers only (no data read)."""
    import pyarrow.parquet as pq

    if path.is_dir():  # skip caches/state (_binned/, .tmp) and MEDS metadata tables
        files = [f for f in sorted(path.rglob("*.parquet")) if not any(
            part.startswith(("_", ".")) or part == "metadata"
            for part in f.relative_to(path).parts)]
    else:
        files = [path] if path.suffix == ".parquet" else []
    if not files or not all(f.exists() for f in files):
        return None
    try:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except (OSError, ValueError):  # the report describes outputs; it never fails the refresh
        return None


def output_rows(root: Path, outs: tuple[str, ...]) -> dict[str, int]:
    """Row counts of a stage's Parquet outputs, keyed by their path in ``dvc.yaml``."""
    counts = {}
    for out in outs:
        rows = parquet_rows(root / out)
        if rows is not None:
            counts[out] = rows
    return counts


def flatten_numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as dotted keys.

    >>> flatten_numbers({"a": 1, "b": {"c": 2.5, "d": "x"}})
    {'a': 1, 'b.c': 2.5}
    """
    flat: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            flat.update(flatten_numbers(value, f"{prefix}{key}."))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        flat[prefix.rstrip(".")] = obj
    return flat


def dq_summary(report: Any, limit: int = 12) -> dict[str, float]:
    """A DQ report's headline counts: its ``totals`` when it has them, else its per-table
    counts summed over tables (after the cells ingest could not read, when there are any),
    else its top-level numbers.

    >>> dq_summary({"tables": {"a": {"rows": 2, "dropped": 1}, "b": {"rows": 3}}})
    {'rows': 5, 'dropped': 1}
    >>> dq_summary({"tables": {"a": {"rows": 2}}, "unparseable_cells": {"a": {"x": 2, "y": 1}}})
    {'unparseable_cells': 3, 'rows': 2}
    >>> dq_summary({"stage": "w", "totals": {"windows": 9, "drop": {"gap": 1}}})
    {'windows': 9, 'drop.gap': 1}
    """
    if not isinstance(report, dict):
        return {}
    if isinstance(report.get("totals"), dict):
        summary = flatten_numbers(report["totals"])
    elif isinstance(report.get("tables"), dict):
        summary: dict[str, float] = {}
        unparsed = sum(flatten_numbers(report.get("unparseable_cells")).values())
        if unparsed:  # first: the limit below must not hide it
            summary["unparseable_cells"] = unparsed
        for table in report["tables"].values():
            for key, value in flatten_numbers(table).items():
                summary[key] = summary.get(key, 0) + value
    else:
        summary = {k: v for k, v in report.items() if isinstance(v, int | float)
                   and not isinstance(v, bool)}
    return dict(list(summary.items())[:limit])


def collect_context(root: Path, metrics: list[str], pointers: list[str],
                    latents: Path) -> dict[str, Any]:
    """DQ summaries, model pointers and latent manifests present after the refresh."""
    dq = {m: dq_summary(read_json(root / m)) for m in metrics
          if m not in pointers and (root / m).exists()}
    models = {}
    for p in pointers:
        pointer = read_json(root / p)
        if isinstance(pointer, dict):
            models[p] = {k: pointer.get(k) for k in ("model_name", "version", "run_id",
                                                     "champion")}
    index = read_json(latents / "_manifest.json")
    manifests = {name: {k: m.get(k) for k in ("rows", "files", "model_name", "model_version",
                                              "data_version", "created_at")}
                 for name, m in sorted((index or {}).items()) if isinstance(m, dict)}
    return {"dq": dq, "models": models, "latents": manifests}


def render_markdown(outcomes: list[StageOutcome], context: dict[str, Any], *, ok: bool,
                    started: str, seconds: float, pushed: str, committed: str = "-") -> str:
    """The run report as markdown (also published as a Prefect artifact)."""
    lines = [f"# medae refresh {started}", "",
             f"**{'succeeded' if ok else 'INCOMPLETE'}** in {seconds:.1f} s; "
             f"DVC push: {pushed}; dvc.lock in git: {committed}", "",
             "| stage | status | seconds | rows | detail |", "|---|---|---:|---|---|"]
    for o in outcomes:
        rows = ", ".join(f"{Path(k).name}: {v:,}" for k, v in o.rows.items()) or "-"
        detail = o.detail.replace("|", "/").replace("\n", " ")[:200] or "-"
        lines.append(f"| {o.stage} | {o.status} | {o.seconds:.1f} | {rows} | {detail} |")
    lines += ["", "## Data quality", ""]
    lines += [f"- `{m}`: " + (", ".join(f"{k}={v}" for k, v in s.items()) or "(no scalars)")
              for m, s in context["dq"].items()] or ["- no DQ reports yet"]
    lines += ["", "## Models", ""]
    lines += [f"- `{p}`: {m['model_name']} version {m['version']} (run {m['run_id']}, "
              f"champion: {m['champion']})" for p, m in context["models"].items()] or [
        "- no model pointers yet"]
    lines += ["", "## Latents written", ""]
    lines += [f"- `{name}`: {m['rows']:,} rows in {m['files']} files, {m['model_name']} "
              f"v{m['model_version']}, data {m['data_version']}"
              for name, m in context["latents"].items()] or ["- none"]
    return "\n".join(lines) + "\n"
