"""Optional Parquet modular encryption of published tables, with a local key-file KMS.

Parquet modular encryption (pyarrow.parquet.encryption) encrypts every column and the footer
with random data keys; those data keys are wrapped by *master keys*. Here the master keys live
in a small JSON key file (``{"footer_key": <base64>, "column_key": <base64>}``, mode 0600),
which is enough for the demo and for a single host. In production, put a real KMS behind the
same :class:`LocalKeyFileKms` interface; nothing else changes.

Encrypted files are not byte-identical between runs (fresh random data keys and nonces every
write, by design); their decrypted content is.

>>> import tempfile, pathlib, pyarrow as pa
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> keys = create_key_file(folder / "parquet_keys.json")
>>> write_table(pa.table({"subject_id": [1, 2]}), folder / "t.parquet", encryption=keys)
>>> read_table(folder / "t.parquet", encryption=keys).to_pydict()
{'subject_id': [1, 2]}
>>> is_encrypted(folder / "t.parquet")
True
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medae.errors import ConfigError, DataError
from medae.io import atomic_path

FOOTER_KEY_ID = "footer_key"
COLUMN_KEY_ID = "column_key"
_KEY_BYTES = 32  # AES-256 master keys
_NONCE_BYTES = 12
_PARQUET_MAGIC_ENCRYPTED = b"PARE"  # an encrypted footer ends the file with PARE, not PAR1


def create_key_file(path: str | os.PathLike[str]) -> Path:
    """Create a new key file with fresh random master keys (mode 0600); never overwrites."""
    target = Path(path)
    if target.exists():
        raise ConfigError(f"{target}: key file already exists; refusing to overwrite it")
    keys = {kid: base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()
            for kid in (FOOTER_KEY_ID, COLUMN_KEY_ID)}
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(keys, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o600)  # a key file is never shared, whatever the output mode setting
    return target


def _load_master_keys(path: Path) -> dict[str, bytes]:
    if not path.is_file():
        raise ConfigError(f"{path}: encryption key file not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        keys = {kid: base64.b64decode(raw[kid], validate=True)
                for kid in (FOOTER_KEY_ID, COLUMN_KEY_ID)}
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"{path}: not a medae key file (expected JSON with base64 '{FOOTER_KEY_ID}' and "
            f"'{COLUMN_KEY_ID}')"
        ) from None
    if any(len(k) not in (16, 24, 32) for k in keys.values()):
        raise ConfigError(f"{path}: master keys must be 16, 24 or 32 bytes")
    return keys


class _WrongKey(Exception):
    """Raised inside the KMS callback when a data key does not unwrap (wrong master key)."""


class LocalKeyFileKms:
    """A pyarrow ``KmsClient`` whose master keys come from a local JSON key file.

    Data keys are wrapped with AES-GCM under the master key; the master key id is bound as
    associated data so a key wrapped for the footer cannot be replayed as a column key.
    """

    @staticmethod
    def factory(connection: Any) -> Any:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from pyarrow.parquet.encryption import KmsClient

        keys = _load_master_keys(Path(connection.custom_kms_conf["key_file"]))

        class _Client(KmsClient):
            def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
                nonce = secrets.token_bytes(_NONCE_BYTES)
                aead = AESGCM(keys[master_key_identifier])
                sealed = aead.encrypt(nonce, key_bytes, master_key_identifier.encode())
                return base64.b64encode(nonce + sealed).decode()

            def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
                blob = base64.b64decode(wrapped_key)
                aead = AESGCM(keys[master_key_identifier])
                try:
                    return aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:],
                                        master_key_identifier.encode())
                except InvalidTag:
                    raise _WrongKey() from None

        return _Client()


def _crypto(key_file: str | os.PathLike[str]) -> tuple[Any, Any]:
    import pyarrow.parquet.encryption as pe

    path = Path(key_file).expanduser().resolve()
    _load_master_keys(path)  # fail early with a clear message, not inside the C++ callback
    factory = pe.CryptoFactory(LocalKeyFileKms.factory)
    connection = pe.KmsConnectionConfig(custom_kms_conf={"key_file": str(path)})
    return factory, connection


def write_table(
    table: pa.Table,
    path: str | os.PathLike[str],
    *,
    encryption: str | os.PathLike[str] | None = None,
    **parquet_options: Any,
) -> None:
    """Write ``table`` to ``path`` atomically; encrypted (all columns and the footer, AES-GCM)
    with the master keys in the key file ``encryption`` when it is given."""
    target = Path(path)
    options = {"compression": "zstd", **parquet_options}
    if encryption is not None:
        import pyarrow.parquet.encryption as pe

        factory, connection = _crypto(encryption)
        config = pe.EncryptionConfiguration(
            footer_key=FOOTER_KEY_ID,
            column_keys={COLUMN_KEY_ID: table.column_names},
            encryption_algorithm="AES_GCM_V1",
            data_key_length_bits=256,
            cache_lifetime=timedelta(minutes=5),
        )
        options["encryption_properties"] = factory.file_encryption_properties(connection, config)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, **options)


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a Parquet file with an encrypted footer (it ends in ``PARE``)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            return fh.read(4) == _PARQUET_MAGIC_ENCRYPTED
    except OSError:  # shorter than 4 bytes, or unreadable
        return False


def _parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
        if not files:
            raise DataError(f"{path}: no Parquet files in this folder")
        return files
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return [path]


def check_key_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`~medae.errors.ConfigError` unless ``path`` is a usable key file."""
    _load_master_keys(Path(path))


def decryption_properties(key_file: str | os.PathLike[str]) -> Any:
    """pyarrow ``FileDecryptionProperties`` for files encrypted with ``key_file``."""
    import pyarrow.parquet.encryption as pe

    factory, connection = _crypto(key_file)
    return factory.file_decryption_properties(
        connection, pe.DecryptionConfiguration(cache_lifetime=timedelta(minutes=5))
    )


def _read_one(path: Path, encryption: str | os.PathLike[str] | None) -> pa.Table:
    decryption = None if encryption is None else decryption_properties(encryption)
    try:
        return pq.ParquetFile(path, decryption_properties=decryption).read()
    except (OSError, pa.ArrowException, _WrongKey, KeyError) as exc:
        if not is_encrypted(path):
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
        if encryption is None:
            raise DataError(
                f"{path}: the file is encrypted (Parquet modular encryption); read it with "
                "medae.privacy.read_table(path, encryption=<key file>)"
            ) from None
        raise DataError(f"{path}: cannot decrypt with key file {encryption} (wrong key)") from None


def read_table(
    path: str | os.PathLike[str], *, encryption: str | os.PathLike[str] | None = None
) -> pa.Table:
    """Read a Parquet file, or every ``*.parquet`` under a folder (sorted by path), decrypting
    with the key file ``encryption`` when given. An encrypted file read without the key, or with
    the wrong key, raises :class:`~medae.errors.DataError` naming the file."""
    files = _parquet_files(Path(path))
    tables = [_read_one(f, encryption) for f in files]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
