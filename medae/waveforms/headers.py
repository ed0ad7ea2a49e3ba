"""Read WFDB headers tolerantly.

Real headers are sometimes malformed (for example a record line with the base date before the
base time). :func:`read_header` first asks wfdb; when wfdb refuses, it tries the repairs below
on the record line and says which one worked, so the record is processed instead of lost.
:func:`readable_record` gives wfdb a path it can read for such a record (a temporary folder with
the repaired header and links to the original data files; the source is never modified).
Messages name no record (``medae.privacy.record_names``): MIMIC record names embed the subject.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medae.errors import DataError, error_reason

_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{2,4}$")
_TIME = re.compile(r"^\d{1,2}(:\d{1,2}){0,2}(\.\d+)?$")


def _split_record_line(text: str) -> tuple[list[str], int, list[str]] | None:
    """The header's lines, the index of the record line and its tokens (comments skipped)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            return lines, i, line.split()
    return None


def repair_record_line(text: str) -> tuple[str, str] | None:
    """Repair a record line wfdb cannot parse; returns ``(fixed text, what was repaired)``.

    >>> repair_record_line("r 1 125 10 26/10/2137 16:57:09\\nr.dat 80 1 8 0 0 0 0 II\\n")[1]
    'date before time swapped'
    >>> repair_record_line("r 1 125 10 16:57:09\\n") is None
    True
    """
    found = _split_record_line(text)
    if found is None:
        return None
    lines, i, tokens = found
    tail = tokens[4:]
    if len(tail) == 2 and _DATE.match(tail[0]) and _TIME.match(tail[1]):
        fixed, what = tokens[:4] + [tail[1], tail[0]], "date before time swapped"
    elif len(tail) >= 1 and any(_DATE.match(t) for t in tail):
        keep = [t for t in tail if _TIME.match(t)][:1]
        fixed, what = tokens[:4] + keep, "unparseable base date dropped"
    elif len(tail) > 2:
        fixed, what = tokens[:4], "unparseable base date/time dropped"
    else:
        return None
    lines[i] = " ".join(fixed)
    return "\n".join(lines) + "\n", what


def with_length(text: str, n_frames: int) -> str | None:
    """The header ``text`` with ``n_frames`` written on a record line that declares no
    length (``None`` when it declares one): wfdb reads such a record whole, from its data
    file's size, but refuses a ``sampfrom/sampto`` read of it.

    >>> with_length("# c\\nr 2 360\\nr.dat 212 200 11 1024 0 0 0 II\\n", 650000).splitlines()[1]
    'r 2 360 650000'
    >>> with_length("r 2\\n", 10), with_length("r 2 360 7200\\n", 10)
    ('r 2 250 10\\n', None)
    """
    found = _split_record_line(text)
    if found is None or len(found[2]) > 3:
        return None
    lines, i, tokens = found
    lines[i] = " ".join(tokens + ["250"] * (len(tokens) == 2) + [str(n_frames)])  # WFDB's fs
    return "\n".join(lines) + "\n"


def _rdheader(path: Path) -> Any:
    import wfdb

    return wfdb.rdheader(str(path), rd_segments=False)


def read_header(path: str | Path) -> tuple[Any, str | None]:
    """Parse ``<path>.hea`` (path without extension); returns ``(header, repair or None)``.

    Raises :class:`DataError` naming the file when neither wfdb nor a repair can parse it.
    """
    path = Path(path)
    header_file = path.with_name(path.name + ".hea")
    if header_file.is_file():
        _check_sampling_frequency(header_file)
    try:
        return _rdheader(path), None
    except FileNotFoundError:
        raise DataError(f"{header_file}: header file not found") from None
    except Exception as exc:  # noqa: BLE001 - wfdb raises many types for bad headers
        first_error = error_reason(exc, typed=True)
    repaired = repair_record_line(header_file.read_text(encoding="latin-1"))
    if repaired is not None:
        text, what = repaired
        with tempfile.TemporaryDirectory(prefix="medae-hea-") as tmp:
            fixed = Path(tmp) / path.name
            fixed.with_name(path.name + ".hea").write_text(text, encoding="latin-1")
            try:
                return _rdheader(fixed), what
            except Exception:  # noqa: BLE001 - fall through to the original error
                pass
    raise DataError(f"{header_file}: malformed header ({_scrub(first_error)})")


def sampling_frequency_problem(text: str) -> str | None:
    """What is wrong with the record line's sampling frequency, or ``None`` when it is fine
    or absent (WFDB then defaults to 250 Hz).

    wfdb's record-line pattern skips a token it cannot parse as a rate and silently uses
    250 Hz with 0 samples, so the rate is checked here on the text itself.

    >>> sampling_frequency_problem("r 2 fast 7200\\n")
    "sampling frequency 'fast' is not a number"
    >>> sampling_frequency_problem("r 2 360/360(0) 7200\\n") is None
    True
    >>> sampling_frequency_problem("r 2 0 7200\\n")
    'sampling frequency 0 is not a positive number'
    """
    found = _split_record_line(text)
    if found is None or len(found[2]) < 3:
        return None
    token = found[2][2]
    rate = token.split("/", 1)[0]  # "fs/counter_freq(base_counter)"
    try:
        value = float(rate)
    except ValueError:
        return f"sampling frequency {token[:20]!r} is not a number"
    if not 0 < value < float("inf"):
        return f"sampling frequency {rate} is not a positive number"
    return None


def _check_sampling_frequency(header_file: Path) -> None:
    problem = sampling_frequency_problem(header_file.read_text(encoding="latin-1"))
    if problem is not None:
        raise DataError(f"{header_file}: {problem}")


def _scrub(message: str) -> str:
    """Drop digits from wfdb's message: it may echo dates (identifiers) from the header."""
    return re.sub(r"\d", "#", message)[:160]


@contextmanager
def readable_record(path: str | Path, n_frames: int | None = None) -> Iterator[Path]:
    """A record path wfdb can read in parts: ``path`` itself, or a temporary copy of the
    repaired header (or, given ``n_frames``, of one that declares no length, with that
    length written in) with symbolic links to the original data files."""
    path = Path(path)
    header, repair = read_header(path)
    header_file = path.with_name(path.name + ".hea")
    text = header_file.read_text(encoding="latin-1")
    if repair is not None:
        text, _ = repair_record_line(text)  # type: ignore[misc]
    lengthened = (with_length(text, n_frames)
                  if n_frames is not None and header.sig_len is None else None)
    if repair is None and lengthened is None:
        yield path
        return
    text = lengthened or text
    tmp = Path(tempfile.mkdtemp(prefix="medae-rec-"))
    try:
        (tmp / header_file.name).write_text(text, encoding="latin-1")
        for name in sorted(set(getattr(header, "file_name", None) or [])):
            source = path.parent / name
            if source.exists():
                (tmp / name).symlink_to(source.resolve())
        yield tmp / path.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
