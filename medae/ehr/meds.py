"""MEDS 0.4 metadata: ``codes.parquet``, ``dataset.json`` and ``subject_splits.parquet``."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from medae.ehr.dictionary import Dictionary
from medae.io import atomic_path, write_json_atomic

MEDS_VERSION = "0.4.0"
SPLITS = ("train", "tuning", "held_out")
STRUCTURAL = {
    "MEDS_BIRTH": "Birth (MIMIC-IV: 1 January of anchor_year - anchor_age)",
    "MEDS_DEATH": "Death (date of death)",
    "HOSPITAL_ADMISSION": "Hospital admission (admittime)",
    "HOSPITAL_DISCHARGE": "Hospital discharge (dischtime)",
    "ICU_ADMISSION": "ICU admission (icustays.intime)",
    "ICU_DISCHARGE": "ICU discharge (icustays.outtime)",
}
CODES_SCHEMA = pl.Schema({"code": pl.String, "description": pl.String,
                          "parent_codes": pl.List(pl.String), "unit": pl.String})
ITEM_TABLE = {"LAB": "d_labitems", "CHART": "d_items", "OUTPUT": "d_items"}


def _split_rank(subject_id: int, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{subject_id}".encode()).hexdigest()


def assign_splits(subject_ids: list[int], train: float, tuning: float,
                  seed: int) -> pl.DataFrame:
    """Deterministic subject splits with exact sizes: subjects ordered by a seeded hash, the
    first ``round(n*train)`` to train, the next ``round(n*tuning)`` to tuning, the rest
    held out.

    >>> assign_splits(list(range(10)), 0.8, 0.1, 0)["split"].value_counts(sort=True).rows()
    [('train', 8), ('held_out', 1), ('tuning', 1)]
    """
    ordered = sorted(set(subject_ids), key=lambda s: _split_rank(s, seed))
    n_train = round(len(ordered) * train)
    n_tuning = min(round(len(ordered) * tuning), len(ordered) - n_train)
    labels = (["train"] * n_train + ["tuning"] * n_tuning
              + ["held_out"] * (len(ordered) - n_train - n_tuning))
    return pl.DataFrame({"subject_id": ordered, "split": labels},
                        schema={"subject_id": pl.Int64, "split": pl.String}).sort("subject_id")


def _item_labels(raw: Path, table: str) -> dict[int, str]:
    path = raw / f"{table}.parquet"
    if not path.exists():
        return {}
    df = pl.read_parquet(path)
    extra = "fluid" if "fluid" in df.columns else None
    label = pl.col("label").fill_null("")
    if extra:
        label = pl.concat_str([label, pl.lit(" ("), pl.col(extra).fill_null("?"), pl.lit(")")])
    return dict(df.select("itemid", label.alias("text")).iter_rows())


def _raw_description(code: str, labels: dict[str, dict[int, str]]) -> tuple[str, str | None]:
    prefix, item, unit = (code.split("//") + ["", ""])[:3]
    table = ITEM_TABLE.get(prefix, "")
    text = labels.get(table, {}).get(int(item)) if item.isdigit() else None
    desc = text or f"itemid {item} (not in {table or 'any item dictionary'})"
    return desc, None if unit == "UNK" else unit


def code_metadata(codes: set[str], dictionary: Dictionary, raw: Path) -> pl.DataFrame:
    """One row per code present in the data, each with a description.

    Dictionary codes are described by the dictionary (with their canonical unit and the raw
    itemids as parents), raw codes by ``d_items``/``d_labitems`` labels.
    """
    labels = {t: _item_labels(raw, t) for t in set(ITEM_TABLE.values())}
    variables = dictionary.by_code()
    rows = []
    for code in sorted(codes):
        parents: list[str] = []
        if code in variables:
            var = variables[code]
            desc, unit = var.description, var.unit
            parents = [f"ITEMID//{i}" for i in var.all_itemids]
        elif code in STRUCTURAL:
            desc, unit = STRUCTURAL[code], None
        elif code.startswith("GENDER//"):
            desc, unit = f"Administrative sex {code.split('//', 1)[1]}", None
        else:
            desc, unit = _raw_description(code, labels)
        rows.append({"code": code, "description": desc, "parent_codes": parents, "unit": unit})
    return pl.DataFrame(rows, schema=CODES_SCHEMA)


def write_parquet_atomic(df: pl.DataFrame, path: Path) -> bool:
    """Write ``df`` unless ``path`` already holds the same rows; True when written."""
    if path.exists():
        try:
            if pl.read_parquet(path).equals(df):
                return False
        except Exception:  # noqa: BLE001 - unreadable: rewrite it
            pass
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)
    return True


def write_dataset_json(path: Path, name: str, version: str, etl_version: str) -> None:
    """``dataset.json``; rewritten (with a new ``created_at``) only when its content changes."""
    meta: dict[str, Any] = {"dataset_name": name, "dataset_version": version,
                            "etl_name": "medae", "etl_version": etl_version,
                            "meds_version": MEDS_VERSION}
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in meta} == meta:
            return
    meta["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json_atomic(path, meta)
