"""Keep record identities out of logs.

MIMIC record and folder names embed the subject id (``p10012853/p10012853-0001``), so log lines
refer to a record by its row in the catalog (or the quarantine table) and hide the record's own
path behind a placeholder. The full path stays where only the data owner reads it: the catalog,
the quarantine table and ``reports/dq_waveforms.json``, where :func:`show_record` puts it back.
"""

from __future__ import annotations

import os
import re

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
