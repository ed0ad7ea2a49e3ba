"""Messages that name no record.

MIMIC record and folder names embed the subject id (``p10012853/p10012853-0001``), and so do
the files named after a record (``waveform_windows/<record>.parquet``, the waveform latents).
Log lines and errors therefore refer to a record by its row in the catalog (or the quarantine
table) and hide its path behind a placeholder, and to a record's file by its place in its
folder. The full path stays where only the data owner reads it: the catalog, the quarantine
table and ``reports/dq_waveforms.json``, where :func:`show_record` puts it back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

# Placeholders that stand for a record's path, its folder and its subject id in log lines.
RECORD = "<record>"
FOLDER = "<folder>"
SUBJECT = "<subject>"


def hide_record(text: str, path: str, subject_id: int | None = None,
                placeholder: str = RECORD) -> str:
    """``text`` with the record (or folder) ``path`` replaced by ``placeholder``, its sibling
    files named without their folder, and digit runs equal to ``subject_id`` hidden.

    >>> hide_record("/src/p10012853/p10012853-x: cannot read frames 0-10",
    ...             "/src/p10012853/p10012853-x", 10012853)
    '<record>: cannot read frames 0-10'
    >>> hide_record("/src/p000878/3269321_0002.dat missing in /src/p000878",
    ...             "/src/p000878/p000878-2137-10-26", 878)
    '3269321_0002.dat missing in /src/p<subject>'
    """
    folder = os.path.dirname(path)
    text = text.replace(path, placeholder)
    if folder:
        text = text.replace(folder + os.sep, "")  # segments and data files beside the header
    text = text.replace(os.path.basename(path), placeholder)
    if subject_id is not None:
        text = re.sub(r"\d{5,}", lambda m: SUBJECT if int(m.group()) == subject_id
                      else m.group(), text)
    return text


def show_record(text: str, path: str, placeholder: str = RECORD) -> str:
    """The owner's view of a hidden message: the placeholder back to the record's ``path``.

    >>> show_record("<record>: cannot read frames 0-10", "p10012853/p10012853-x")
    'p10012853/p10012853-x: cannot read frames 0-10'
    """
    return text.replace(placeholder, path)


def record_file(path: str | os.PathLike[str]) -> str:
    """How a message names a file named after its record (``waveform_windows/<record>.parquet``,
    the waveform latents): its folder and its place among that folder's files sorted by name,
    which ``LC_ALL=C ls FOLDER | sed -n Np`` shows the data owner (dot files not counted, as
    ``ls`` does not show them). Only for errors: it lists the folder.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("p000878-2137.parquet", "p000900-2140.parquet", ".tmp-x"):
    ...     (folder / name).touch()
    >>> record_file(folder / "p000900-2140.parquet").replace(str(folder), "F")
    'F/<record>.parquet (file 2 of 2 there, by name)'
    """
    path = Path(path)
    try:
        names = sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("."))
        place = f" (file {names.index(path.name) + 1} of {len(names)} there, by name)"
    except (OSError, ValueError):  # the folder or the file is gone: the folder alone
        place = ""
    return f"{path.parent}{os.sep}{RECORD}{path.suffix}{place}"


def hide_record_file(text: str, path: str | os.PathLike[str]) -> str:
    """:func:`hide_record_files` for one file.

    >>> hide_record_file("/w/p000878-2137.parquet: no 'values' (record p000878-2137)",
    ...                  "/w/p000878-2137.parquet")
    "/w/<record>.parquet: no 'values' (record <record>)"
    """
    return hide_record_files(text, [path])


# A path as a library prints it (up to a quote, bracket, colon or space), and a bare name.
_PATH_TOKEN = re.compile(r"[^\s'\"`(),;:\[\]]+")
_NAME_TOKEN = re.compile(r"[\w.-]+")
_SLOT = 0xE000  # private-use characters mark the full paths until the end (never \w)


def hide_record_files(text: str, paths: Iterable[str | os.PathLike[str]]) -> str:
    """``text`` (a library's message, say) with the record-named files ``paths`` hidden: a
    full path shown as :func:`record_file` shows it, a bare file or record name as
    ``<record>``, replaced only where it stands alone (record ``100`` leaves ``1000``,
    ``100.5`` and the places :func:`record_file` adds alone). One pass over the text's words,
    however many the files; only the files the text names list their folder.

    >>> hide_record_files("cannot read /w/b-02.parquet", ["/w/a-01.parquet", "/w/b-02.parquet"])
    'cannot read /w/<record>.parquet'
    >>> hide_record_files("record 100: 1000 rows, 100.5 s; 101.", ["/w/100.parquet", "/w/101.x"])
    'record <record>: 1000 rows, 100.5 s; <record>.'
    """
    paths = [Path(p) for p in paths]
    by_path = {str(p): p for p in paths}
    shown = {p.stem: RECORD for p in paths}
    shown.update({p.name: f"{RECORD}{p.suffix}" for p in paths})
    named: list[Path] = []

    def slot(match: re.Match[str]) -> str:
        path = by_path.get(match.group())
        if path is None:
            return match.group()
        named.append(path)
        return chr(_SLOT + len(named) - 1)

    def name(match: re.Match[str]) -> str:
        word = match.group()
        core = word.rstrip(".")  # "record 101." at the end of a sentence
        return shown[core] + word[len(core):] if core in shown else word

    text = _NAME_TOKEN.sub(name, _PATH_TOKEN.sub(slot, text))
    return "".join(record_file(named[ord(c) - _SLOT]) if _SLOT <= ord(c) < _SLOT + len(named)
                   else c for c in text)
