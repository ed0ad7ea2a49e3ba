"""Create demo key files: ``python -m medae.privacy keygen FILE`` (Parquet encryption master
keys, JSON) or ``python -m medae.privacy pseudonym-key FILE`` (a random pseudonymisation key).
Both are written owner-only (0600) and never overwrite an existing file."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from medae.errors import MedaeError


def write_pseudonym_key(path: Path) -> Path:
    """A fresh 32-byte random key, hex-encoded (64 characters), mode 0600."""
    import os

    from medae.errors import ConfigError
    from medae.io import atomic_path

    if path.exists():
        raise ConfigError(f"{path}: key file already exists; refusing to overwrite it")
    with atomic_path(path) as tmp:
        tmp.write_text(secrets.token_hex(32) + "\n", encoding="ascii")
        os.chmod(tmp, 0o600)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medae.privacy", description=__doc__)
    parser.add_argument("command", choices=["keygen", "pseudonym-key"])
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    from medae.privacy.encryption import create_key_file

    try:
        made = create_key_file(args.file) if args.command == "keygen" else \
            write_pseudonym_key(args.file)
    except MedaeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(made)
    return 0


if __name__ == "__main__":
    sys.exit(main())
