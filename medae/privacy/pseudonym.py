"""Keyed pseudonyms for patient identifiers (HMAC-SHA256).

A pseudonym is ``HMAC-SHA256(key, "<column>:<value>")``: the same key always gives the same
pseudonym (so tables exported on different nights, and the EHR and waveform latents, still join
on ``subject_id``), while without the key the mapping can be neither reversed nor recomputed
from a list of candidate ids. The column name is part of the message so that a ``hadm_id``
and a ``subject_id`` that happen to share a number do not share a pseudonym.

Output types (documented contract, see docs/robustness.md):

- integer columns -> ``Int64``: the first 8 bytes of the digest, big-endian, masked to 63 bits
  (always >= 0, so it survives any signed/unsigned int64 consumer and joins like the original);
  with 63 bits the chance of any collision among 10 million ids is about 5e-6.
- string columns (``record_name``) -> ``String``: the first 16 hex digits of the digest.
- nulls stay null.

>>> import polars as pl
>>> df = pl.DataFrame({"subject_id": [10000032, None], "z_00": [0.5, 1.0]})
>>> key = b"0123456789abcdef-demo-key"
>>> out = pseudonymise(df, key=key)
>>> out["subject_id"].to_list() == [pseudonym_of(10000032, "subject_id", key), None]
True
>>> out.schema["subject_id"], out["z_00"].to_list()
(Int64, [0.5, 1.0])
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from medae.errors import ConfigError

log = logging.getLogger(__name__)

PSEUDONYM_COLUMNS: tuple[str, ...] = ("subject_id", "hadm_id", "stay_id")
MIN_KEY_BYTES = 16
_POSITIVE_63_BITS = 0x7FFF_FFFF_FFFF_FFFF


def _digest(value: Any, column: str, key: bytes) -> bytes:
    return hmac.new(key, f"{column}:{value}".encode(), hashlib.sha256).digest()


def pseudonym_of(value: int | str, column: str, key: bytes) -> int | str:
    """The pseudonym of one id: ``int`` for integer ids, 16 hex digits for string ids.

    >>> key = b"0123456789abcdef-demo-key"
    >>> pseudonym_of(1, "subject_id", key) == pseudonym_of(1, "subject_id", key)
    True
    >>> pseudonym_of(1, "subject_id", key) != pseudonym_of(1, "hadm_id", key)
    True
    >>> len(pseudonym_of("p000878", "record_name", key))
    16
    """
    digest = _digest(value, column, key)
    if isinstance(value, str):
        return digest[:8].hex()
    return int.from_bytes(digest[:8], "big") & _POSITIVE_63_BITS


def _pseudonymise_column(series: pl.Series, column: str, key: bytes) -> pl.Series:
    dtype = series.dtype
    if dtype.is_integer():
        out_dtype: pl.DataType = pl.Int64()
    elif dtype == pl.String:
        out_dtype = pl.String()
    else:
        raise ConfigError(
            f"pseudonymise: column '{column}' has type {dtype}; expected an integer or string id"
        )
    # Hash each distinct id once (ids repeat across windows), then map every row.
    distinct = series.drop_nulls().unique().to_list()
    mapped = [pseudonym_of(v, column, key) for v in distinct]
    return series.replace_strict(distinct, mapped, return_dtype=out_dtype)


def pseudonymise(
    df: pl.DataFrame, columns: Sequence[str] = PSEUDONYM_COLUMNS, *, key: bytes
) -> pl.DataFrame:
    """Replace the id ``columns`` present in ``df`` by their keyed pseudonyms.

    Columns not in ``df`` are skipped (waveform latents have no ``hadm_id``); row order and
    every other column are unchanged.

    >>> import polars as pl
    >>> key = b"0123456789abcdef-demo-key"
    >>> df = pl.DataFrame({"subject_id": [7, 7, 8], "stay_id": [1, 1, 2]})
    >>> out = pseudonymise(df, key=key)
    >>> out["subject_id"][0] == out["subject_id"][1] != out["subject_id"][2]
    True
    >>> out.equals(pseudonymise(df, key=key))
    True
    """
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"pseudonymisation key is too short: need at least {MIN_KEY_BYTES} bytes")
    present = [c for c in columns if c in df.columns]
    return df.with_columns(_pseudonymise_column(df[c], c, key).alias(c) for c in present)


def _read_key_file(path: Path) -> bytes:
    if not path.is_file():
        raise ConfigError(f"{path}: pseudonymisation key file not found")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s: key file is readable by other users (mode %o); chmod 600 it", path, mode)
    return path.read_bytes().strip()


def load_key(config: Any, *, base: str | os.PathLike[str] | None = None) -> bytes:
    """The pseudonymisation key named by ``config`` (an ``export_latents``-like section).

    Looks first at the environment variable ``config.pseudonymise_key_env`` (an operator can
    override a file without editing params), then at ``config.pseudonymise_key_file``
    (relative to ``base``). Surrounding whitespace is stripped. Refuses (``ConfigError``,
    exit 2) when no key is found or the key is shorter than 16 bytes; never logs the key.

    >>> from types import SimpleNamespace
    >>> os.environ["MEDAE_DOCTEST_KEY"] = "a-long-enough-demo-key"
    >>> load_key(SimpleNamespace(pseudonymise_key_env="MEDAE_DOCTEST_KEY",
    ...                          pseudonymise_key_file=None))
    b'a-long-enough-demo-key'
    """
    env_name = getattr(config, "pseudonymise_key_env", None)
    file_name = getattr(config, "pseudonymise_key_file", None)
    key, source = b"", ""
    if env_name and os.environ.get(env_name, "").strip():
        key, source = os.environ[env_name].strip().encode(), f"environment variable {env_name}"
    elif file_name:
        path = Path(file_name).expanduser()
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        key, source = _read_key_file(path), str(path)
    if not key:
        raise ConfigError(
            "pseudonymisation is on but no key was found: set the environment variable "
            f"{env_name or '(pseudonymise_key_env unset)'} or pseudonymise_key_file"
        )
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{source}: pseudonymisation key is too short "
                          f"({len(key)} bytes; need at least {MIN_KEY_BYTES})")
    log.info("pseudonymisation key read from %s", source)
    return key
