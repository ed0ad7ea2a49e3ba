"""Sharding by subject and the per-unit fingerprints that make the EHR stages incremental."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from medae.io import file_digest, read_state, write_json_atomic

FINGERPRINTS = "_fingerprints.json"
# Knuth's multiplicative constant: a stable, well-mixed hash of integer ids that does not
# depend on the Polars version (pl.Expr.hash is only stable within one version).
_MULTIPLIER = 2654435761
_MODULUS = 2**32


def shard_expr(shards: int, column: str = "subject_id") -> pl.Expr:
    """The shard number of each row: a stable hash of ``subject_id`` modulo ``shards``.

    >>> pl.DataFrame({"subject_id": [1, 2, 3]}).select(shard_expr(4)).to_series().to_list()
    [1, 2, 3]
    """
    mixed = (pl.col(column) * _MULTIPLIER) % _MODULUS
    return (mixed % shards).cast(pl.Int32).alias("shard")


def shard_of(subject_id: int, shards: int) -> int:
    """Python twin of :func:`shard_expr` for one id.

    >>> shard_of(10014729, 8) == pl.DataFrame({"subject_id": [10014729]}).select(
    ...     shard_expr(8)).item()
    True
    """
    return (subject_id * _MULTIPLIER) % _MODULUS % shards


def shard_name(shard: int) -> str:
    return f"shard_{shard:04d}"


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-able parts.

    >>> digest({"a": 1}, [2]) == digest({"a": 1}, [2])
    True
    """
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def files_digest(paths: Iterable[Path]) -> str:
    """One hash over several files' contents (missing files count as absent)."""
    return digest([[p.name, file_digest(p) if p.exists() else None] for p in paths])


def load_fingerprints(out: Path) -> dict[str, Any]:
    return read_state(out / FINGERPRINTS)


def save_fingerprints(out: Path, fingerprints: dict[str, Any]) -> None:
    write_json_atomic(out / FINGERPRINTS, fingerprints)


def same_content(old: Path, new: Path) -> bool:
    """True when two Parquet files hold the same rows (bytes first, then values)."""
    if not old.exists():
        return False
    if old.stat().st_size == new.stat().st_size and file_digest(old) == file_digest(new):
        return True
    try:
        return pl.read_parquet(old).equals(pl.read_parquet(new))
    except Exception:  # noqa: BLE001 - an unreadable old file is simply replaced
        return False
