"""What a writer of published tables needs from the privacy settings, in one object.

``export_latents`` builds one :class:`Protection` from its params section and routes every
latent part through it: :meth:`Protection.apply` pseudonymises the id columns, and
:meth:`Protection.write` / :meth:`read` / :meth:`metadata` encrypt and decrypt transparently.
With both options off it is a no-op that writes exactly what ``DataFrame.write_parquet`` writes.

>>> import polars as pl, tempfile, pathlib
>>> plain = Protection()
>>> path = pathlib.Path(tempfile.mkdtemp()) / "part.parquet"
>>> plain.write(plain.apply(pl.DataFrame({"subject_id": [1]})), path)
>>> plain.metadata(path)
(1, Schema([('subject_id', Int64)]))
>>> plain.tag
'plain'
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from medae.errors import ConfigError
from medae.privacy.encryption import check_key_file, read_table, write_table
from medae.privacy.pseudonym import PSEUDONYM_COLUMNS, load_key, pseudonym_of, pseudonymise

# record_name is an identifier too: MIMIC waveform names embed the subject id (p000878...).
PUBLISHED_ID_COLUMNS: tuple[str, ...] = (*PSEUDONYM_COLUMNS, "record_name")


@dataclass(frozen=True)
class Protection:
    """Pseudonymisation key (``None`` = off) and encryption key file (``None`` = off)."""

    key: bytes | None = None
    key_file: Path | None = None
    columns: tuple[str, ...] = PUBLISHED_ID_COLUMNS

    @classmethod
    def from_config(cls, config: Any, *, base: str | os.PathLike[str]) -> Protection:
        """From an ``export_latents``-like section (keys ``pseudonymise``,
        ``pseudonymise_key_env``, ``pseudonymise_key_file``, ``encrypt``,
        ``encryption_key_file``); refuses (``ConfigError``) when an option is on without its
        key, before anything is written."""
        key = load_key(config, base=base) if getattr(config, "pseudonymise", False) else None
        key_file = None
        if getattr(config, "encrypt", False):
            name = getattr(config, "encryption_key_file", None)
            if not name:
                raise ConfigError("encryption is on but no encryption_key_file is set "
                                  "(create one with: python -m medae.privacy keygen FILE)")
            key_file = Path(name).expanduser()
            key_file = key_file if key_file.is_absolute() else Path(base) / key_file
            check_key_file(key_file)
        return cls(key=key, key_file=key_file)

    @property
    def tag(self) -> str:
        """A non-secret identity of the settings, for fingerprints: a key change re-encodes."""
        parts = []
        if self.key is not None:
            key_id = hmac.new(self.key, b"medae-key-id", hashlib.sha256).hexdigest()[:12]
            parts.append(f"pseudonymised:{key_id}")
        if self.key_file is not None:
            parts.append("encrypted")
        return "+".join(parts) or "plain"

    def part_name(self, name: str) -> str:
        """A published file name made from a record name (which embeds the subject id in
        MIMIC): the record's pseudonym, as in the ``record_name`` column, when pseudonymising.

        >>> Protection().part_name("p000878-2137-10-09.parquet")
        'p000878-2137-10-09.parquet'
        >>> len(Protection(key=b"0123456789abcdef-demo").part_name("p000878.parquet"))
        24
        """
        if self.key is None:
            return name
        return f"{pseudonym_of(Path(name).stem, 'record_name', self.key)}{Path(name).suffix}"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        """``df`` with its id columns pseudonymised (unchanged when pseudonymisation is off)."""
        return df if self.key is None else pseudonymise(df, self.columns, key=self.key)

    def write(self, df: pl.DataFrame, path: str | os.PathLike[str]) -> None:
        """Write one part (encrypted when a key file is set; otherwise plain Parquet)."""
        if self.key_file is None:
            df.write_parquet(path, statistics=True)
        else:
            write_table(df.to_arrow(), path, encryption=self.key_file, write_statistics=True)

    def read(self, path: str | os.PathLike[str]) -> pl.DataFrame:
        """Read one part written by :meth:`write`."""
        if self.key_file is None:
            return pl.read_parquet(path)
        return pl.from_arrow(read_table(path, encryption=self.key_file))

    def metadata(self, path: str | os.PathLike[str]) -> tuple[int, pl.Schema]:
        """Row count and schema of one part, from its footer (no data read)."""
        import pyarrow.parquet as pq

        from medae.privacy.encryption import decryption_properties

        props = None if self.key_file is None else decryption_properties(self.key_file)
        meta = pq.ParquetFile(path, decryption_properties=props).metadata
        schema = pl.from_arrow(meta.schema.to_arrow_schema().empty_table()).schema
        return meta.num_rows, schema
