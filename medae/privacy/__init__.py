"""Protection of patient data in what medae publishes.

- :func:`pseudonymise` / :func:`load_key` (``medae.privacy.pseudonym``): keyed HMAC-SHA256
  pseudonyms for ``subject_id`` / ``hadm_id`` / ``stay_id`` (and string ids such as
  ``record_name``), the key from an environment variable or a key file.
- :func:`write_table` / :func:`read_table` (``medae.privacy.encryption``): optional Parquet
  modular encryption with a local key-file KMS client (demo-grade key management).
- :class:`Protection` (``medae.privacy.protection``): both, built from the ``export_latents``
  params, for the export writer.
- Owner-only output modes are applied by :mod:`medae.io`.

The names are re-exported lazily so that importing this package (e.g. from a config module
at CLI start-up) loads neither polars nor pyarrow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "pseudonymise": "medae.privacy.pseudonym",
    "pseudonym_of": "medae.privacy.pseudonym",
    "load_key": "medae.privacy.pseudonym",
    "PSEUDONYM_COLUMNS": "medae.privacy.pseudonym",
    "write_table": "medae.privacy.encryption",
    "read_table": "medae.privacy.encryption",
    "create_key_file": "medae.privacy.encryption",
    "is_encrypted": "medae.privacy.encryption",
    "Protection": "medae.privacy.protection",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medae.privacy' has no attribute {name!r}")
