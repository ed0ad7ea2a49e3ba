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
    which ``LC_ALL=C ls FOLDER | sed -n Np`` shows the data owner. Only for errors: it lists
    the folder.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("p000878-2137.parquet", "p000900-2140.parquet"):
    ...     (folder / name).touch()
    >>> record_file(folder / "p000900-2140.parquet").replace(str(folder), "F")
    'F/<record>.parquet (file 2 of 2 there, by name)'
    """
    path = Path(path)
    try:
        names = sorted(p.name for p in path.parent.iterdir())
        place = f" (file {names.index(path.name) + 1} of {len(names)} there, by name)"
    except (OSError, ValueError):  # the folder or the file is gone: the folder alone
        place = ""
    return f"{path.parent}{os.sep}{RECORD}{path.suffix}{place}"


def hide_record_file(text: str, path: str | os.PathLike[str]) -> str:
    """``text`` with the record-named file ``path`` shown as :func:`record_file` shows it, and
    its bare name or record name (in a library's message, say) as ``<record>``; a name is
    replaced only where it stands alone (record ``100`` leaves ``1000`` and ``100.5`` alone).
    Only for errors: it lists the folder.

    >>> hide_record_file("/w/p000878-2137.parquet: no 'values' (record p000878-2137)",
    ...                  "/w/p000878-2137.parquet")
    "/w/<record>.parquet: no 'values' (record <record>)"
    >>> hide_record_file("record 100: 1000 rows, 100.5 s", "/w/100.parquet")
    'record <record>: 1000 rows, 100.5 s'
    """
    path = Path(path)
    whole = "\0"  # the full path, shown by record_file once the names are replaced
    text = text.replace(str(path), whole)
    for name, shown in ((path.name, f"{RECORD}{path.suffix}"), (path.stem, RECORD)):
        text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.\d)", shown, text)
    return text.replace(whole, record_file(path)) if whole in text else text


def hide_record_files(text: str, paths: Iterable[str | os.PathLike[str]]) -> str:
    """:func:`hide_record_file` for each of ``paths`` (a scan of many record files failed and
    the library's message may name any of them).

    >>> hide_record_files("cannot read /w/b-02.parquet", ["/w/a-01.parquet", "/w/b-02.parquet"])
    'cannot read /w/<record>.parquet'
    """
    for path in paths:
        text = hide_record_file(text, path)
    return text
