"""A corpus of broken inputs, each built from small *valid* real data in a throw-away project.

A project folder looks like a medae checkout with no params file (so every key takes its
default, relative to the folder): ``data/source/ehr/{hosp,icu}/*.csv.gz`` holds the real
MIMIC-IV demo tables cut down to three ICU patients (lines kept byte for byte) plus a small
chartevents table for their stays (the demo has none), and ``data/source/waveforms/`` holds
real WFDB records (MIT-BIH 100 shortened to 20 s, MIMIC-III ``3000003_0003`` as shipped).

Each :class:`Case` breaks one thing in a copy of that project and pins the one outcome the
pipeline must produce (issue 7):

- ``ingested``: exit 0 and a data-quality entry (``dq`` names the report counter that must be
  positive), or -- for harmless format variants -- ingested rows identical to the valid run;
- ``quarantined``: exit 0 and the file/record listed in the quarantine table with a reason;
- ``error``: exit 1 and one ``error:`` line on stderr naming the file and the problem.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EHR = Path("data/source/ehr")
WAVES = Path("data/source/waveforms")
SUBJECTS = ("10018328", "10020187", "10012853")
LAB_ITEMS = ("50971", "50912", "50983", "51221", "51301")  # potassium, creatinine, sodium, ...
MAX_LABS_PER_SUBJECT = 40
EHR_STAGES = ("ingest_ehr", "clean_ehr")
WFDB_STAGES = ("catalog_waveforms", "window_waveforms")


# --- the valid project --------------------------------------------------------------------------

def _gz(text: str) -> bytes:
    return gzip.compress(text.encode("utf-8"), mtime=0)  # mtime=0: same bytes every build


def _read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        return fh.read().splitlines(keepends=True)


def _subset(lines: list[str], keep: Callable[[list[str]], bool], cap: int | None = None,
            per: int | None = None) -> list[str]:
    """Header + data lines for which ``keep(fields)`` holds, at most ``cap`` per ``fields[per]``."""
    out, seen = [lines[0]], {}
    for line in lines[1:]:
        fields = line.rstrip("\r\n").split(",")
        if not keep(fields):
            continue
        if cap is not None and per is not None:
            seen[fields[per]] = seen.get(fields[per], 0) + 1
            if seen[fields[per]] > cap:
                continue
        out.append(line)
    return out


def _chartevents(stays: list[str]) -> str:
    """Hourly heart rate for the first 12 h of every stay (MIMIC-IV chartevents layout)."""
    import datetime as dt

    rows = ["subject_id,hadm_id,stay_id,caregiver_id,charttime,storetime,itemid,value,"
            "valuenum,valueuom,warning\n"]
    for line in stays[1:]:
        f = line.strip().split(",")
        intime = dt.datetime.fromisoformat(f[5])
        for hour in range(1, 13):
            t = (intime + dt.timedelta(hours=hour)).replace(minute=0, second=0)
            hr = 70 + hour
            rows.append(f"{f[0]},{f[1]},{f[2]},1,{t:%Y-%m-%d %H:%M:%S},{t:%Y-%m-%d %H:%M:%S},"
                        f"220045,{hr},{hr},bpm,0\n")
    return "".join(rows)


def build_ehr_source(mimic_demo: Path, dest: Path) -> None:
    """The demo tables of :data:`SUBJECTS` under ``dest`` (MIMIC-IV layout, ``.csv.gz``)."""
    by_subject = lambda f: f[0] in SUBJECTS  # noqa: E731 - one-line predicates
    tables = {
        "hosp/patients": (by_subject, None, None),
        "hosp/admissions": (by_subject, None, None),
        "icu/icustays": (by_subject, None, None),
        "hosp/labevents": (lambda f: f[1] in SUBJECTS and f[4] in LAB_ITEMS,
                           MAX_LABS_PER_SUBJECT, 1),
        "icu/outputevents": (by_subject, 20, 0),
        "hosp/d_labitems": (lambda f: f[0] in LAB_ITEMS, None, None),
        "icu/d_items": (lambda f: f[0] in ("220045", "226559", "226560", "226583"), None, None),
    }
    for name, (keep, cap, per) in tables.items():
        lines = _subset(_read_lines(mimic_demo / f"{name}.csv.gz"), keep, cap, per)
        target = dest / f"{name}.csv.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_gz("".join(lines)))
        if name == "icu/icustays":
            (dest / "icu" / "chartevents.csv.gz").write_bytes(_gz(_chartevents(lines)))


def write_record(folder: Path, name: str, signal: np.ndarray, *, fs: float = 360.0,
                 fmt: str = "16", gain: float = 200.0, baseline: int = 0,
                 sig_name: tuple[str, ...] = ("MLII", "V5"), base_date=None,
                 base_time=None) -> Path:
    """Write digital samples ``signal`` (n, channels) as a WFDB record; returns its path."""
    import datetime as dt

    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    n_sig = signal.shape[1]
    wfdb.wrsamp(name, fs=fs, units=["mV"] * n_sig, sig_name=list(sig_name[:n_sig]),
                d_signal=signal.astype(np.int64), fmt=[fmt] * n_sig, adc_gain=[gain] * n_sig,
                baseline=[baseline] * n_sig, write_dir=str(folder),
                base_date=base_date or dt.date(2154, 4, 25),
                base_time=base_time or dt.time(0, 0, 0))
    return folder / name


def mitdb_samples(physionet: Path, seconds: float = 20.0) -> np.ndarray:
    """The first ``seconds`` of MIT-BIH record 100 as digital samples (n, 2)."""
    import wfdb

    rec = wfdb.rdrecord(str(physionet / "mitdb" / "100"), sampto=int(seconds * 360),
                        physical=False)
    return rec.d_signal.astype(np.int64) - 1024  # 212's offset baseline -> centred on 0


def build_waveform_source(physionet: Path, dest: Path) -> None:
    """Two valid records: MIT-BIH 100 (20 s, format 16) for subject 10018328, linked to its
    ICU stay by the base date, and MIMIC-III ``3000003_0003`` as shipped."""
    write_record(dest / "p10018328", "p10018328-0001", mitdb_samples(physionet))
    shipped = dest / "p10020187"
    shipped.mkdir(parents=True, exist_ok=True)
    for suffix in (".hea", ".dat"):
        shutil.copyfile(physionet / "mimic3wdb" / f"3000003_0003{suffix}",
                        shipped / f"3000003_0003{suffix}")


def build_valid_project(dest: Path, mimic_demo: Path, physionet: Path) -> Path:
    build_ehr_source(mimic_demo, dest / EHR)
    build_waveform_source(physionet, dest / WAVES)
    return dest


# --- how cases break things ----------------------------------------------------------------

def edit_lines(project: Path, table: str, edit: Callable[[list[str]], list[str]]) -> None:
    """Rewrite ``table`` (``hosp/labevents``) of the project's EHR source through ``edit``."""
    path = project / EHR / f"{table}.csv.gz"
    path.write_bytes(_gz("".join(edit(_read_lines(path)))))


def set_field(lines: list[str], row: int, column: str, value: str) -> list[str]:
    """``lines`` with data row ``row`` (0-based) having ``column`` set to ``value``."""
    names = lines[0].strip().split(",")
    fields = lines[row + 1].rstrip("\r\n").split(",")
    fields[names.index(column)] = value
    return [*lines[: row + 1], ",".join(fields) + "\n", *lines[row + 2:]]


def first_row(lines: list[str], column: str, value: str) -> int:
    names = lines[0].strip().split(",")
    for i, line in enumerate(lines[1:]):
        if line.split(",")[names.index(column)] == value:
            return i
    raise LookupError(f"no row with {column}={value}")


def _potassium_row(lines: list[str]) -> int:
    return first_row(lines, "itemid", "50971")


def set_potassium(value: str) -> Callable[[Path], None]:
    def build(project: Path) -> None:
        def edit(lines: list[str]) -> list[str]:
            row = _potassium_row(lines)
            return set_field(set_field(lines, row, "valuenum", value), row, "value", value)
        edit_lines(project, "hosp/labevents", edit)
    return build


def set_lab_time(shift_days: int | None = None, literal: str | None = None):
    """Move the first potassium result in time (days, from the admission) or to ``literal``."""
    def build(project: Path) -> None:
        import datetime as dt

        def edit(lines: list[str]) -> list[str]:
            row = _potassium_row(lines)
            if literal is not None:
                return set_field(lines, row, "charttime", literal)
            names = lines[0].strip().split(",")
            hadm = lines[row + 1].split(",")[names.index("hadm_id")]
            adm = _read_lines(project / EHR / "hosp/admissions.csv.gz")
            admit = next(line.split(",")[2] for line in adm if line.split(",")[1] == hadm)
            when = dt.datetime.fromisoformat(admit) + dt.timedelta(days=shift_days or 0)
            return set_field(lines, row, "charttime", f"{when:%Y-%m-%d %H:%M:%S}")
        edit_lines(project, "hosp/labevents", edit)
    return build


def replace_raw(table: str, data: bytes) -> Callable[[Path], None]:
    def build(project: Path) -> None:
        (project / EHR / f"{table}.csv.gz").write_bytes(data)
    return build


def transform_raw(table: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """Replace the compressed file by ``fn(its bytes)``."""
    def build(project: Path) -> None:
        path = project / EHR / f"{table}.csv.gz"
        path.write_bytes(fn(path.read_bytes()))
    return build


def transform_text(table: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """Replace the decompressed content by ``fn(content bytes)`` (re-compressed)."""
    def build(project: Path) -> None:
        path = project / EHR / f"{table}.csv.gz"
        path.write_bytes(gzip.compress(fn(gzip.decompress(path.read_bytes())), mtime=0))
    return build


def edit_table(table: str, edit: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def build(project: Path) -> None:
        edit_lines(project, table, edit)
    return build


def drop_column(column: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        idx = lines[0].strip().split(",").index(column)
        return [",".join(f for i, f in enumerate(line.rstrip("\r\n").split(",")) if i != idx)
                + "\n" for line in lines]
    return edit


def duplicate_rows(lines: list[str]) -> list[str]:
    return [lines[0], *lines[1:], *lines[1:6]]


def repeat_header(lines: list[str]) -> list[str]:
    mid = len(lines) // 2
    return [*lines[:mid], lines[0], *lines[mid:]]


def null_subject(lines: list[str]) -> list[str]:
    return set_field(lines, _potassium_row(lines), "subject_id", "")


def text_in_numeric(lines: list[str]) -> list[str]:
    return set_field(lines, _potassium_row(lines), "valuenum", "high")


def decimal_comma(lines: list[str]) -> list[str]:  # quoted: the comma is inside the field
    return set_field(lines, _potassium_row(lines), "valuenum", '"4,2"')


def unreadable_itemid(lines: list[str]) -> list[str]:
    return set_field(lines, _potassium_row(lines), "itemid", "5O971")


def latin1_unit(data: bytes) -> bytes:
    return data.replace(b",mEq/L,", b",\xb5Eq/L,", 1)  # a latin-1 micro sign, invalid UTF-8


# WFDB ------------------------------------------------------------------------------------------

def valid_record_copy(physionet: Path, name: str):
    """A fresh MIT-BIH-derived record ``p10012853/<name>`` to break (the subject has a stay)."""
    def make(project: Path) -> Path:
        return write_record(project / WAVES / "p10012853", name, mitdb_samples(physionet))
    return make


def edit_header(make, edit: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def build(project: Path) -> None:
        rec = make(project)
        hea = rec.with_name(rec.name + ".hea")
        lines = hea.read_text(encoding="latin-1").splitlines()
        hea.write_text("\n".join(edit(lines)) + "\n", encoding="latin-1")
    return build


def record_field(index: int, value: str) -> Callable[[list[str]], list[str]]:
    """Set token ``index`` of the record line."""
    def edit(lines: list[str]) -> list[str]:
        tokens = lines[0].split()
        tokens[index] = value
        return [" ".join(tokens), *lines[1:]]
    return edit


def signal_field(index: int, value: str) -> Callable[[list[str]], list[str]]:
    """Set token ``index`` of every signal line."""
    def edit(lines: list[str]) -> list[str]:
        out = [lines[0]]
        for line in lines[1:]:
            tokens = line.split()
            if tokens and not line.startswith("#"):
                tokens[index] = value
            out.append(" ".join(tokens))
        return out
    return edit


def date_before_time(lines: list[str]) -> list[str]:
    tokens = lines[0].split()
    return [" ".join(tokens[:4] + [tokens[5], tokens[4]]), *lines[1:]]


def truncate_dat(make, keep_fraction: float) -> Callable[[Path], None]:
    def build(project: Path) -> None:
        rec = make(project)
        dat = rec.with_name(rec.name + ".dat")
        data = dat.read_bytes()
        dat.write_bytes(data[: int(len(data) * keep_fraction) | 1])  # odd: cuts a sample too
    return build


def delete_dat(make) -> Callable[[Path], None]:
    def build(project: Path) -> None:
        rec = make(project)
        rec.with_name(rec.name + ".dat").unlink()
    return build


def zero_length(physionet: Path, name: str) -> Callable[[Path], None]:
    """A header saying 0 samples and an empty data file (wfdb cannot write one itself)."""
    make = valid_record_copy(physionet, name)

    def build(project: Path) -> None:
        rec = make(project)
        edit_header(lambda _: rec, record_field(3, "0"))(project)
        rec.with_name(rec.name + ".dat").write_bytes(b"")
    return build


def channel_record(physionet: Path, name: str, channel_value: int | None) -> Callable:
    """MIT-BIH 100 with channel V5 all NaN (``None``: WFDB's invalid sample) or constant."""
    def build(project: Path) -> None:
        samples = mitdb_samples(physionet)
        samples[:, 1] = -32768 if channel_value is None else channel_value
        write_record(project / WAVES / "p10012853", name, samples)
    return build


def multi_segment_missing(physionet: Path) -> Callable[[Path], None]:
    """The real partly downloaded MIMIC record p000878 (36 segments, data for 2)."""
    def build(project: Path) -> None:
        shutil.copytree(physionet / "mimic3wdb" / "p000878", project / WAVES / "p000878")
    return build


def garbage_header(project: Path) -> None:
    folder = project / WAVES / "p10012853"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "binary.hea").write_bytes(bytes(range(256)) * 4)


# --- the table of cases --------------------------------------------------------------------

INGESTED, QUARANTINED, ERROR = "ingested", "quarantined", "error"


@dataclass(frozen=True)
class Case:
    """One broken input and the one outcome pinned for it.

    ``dq``: where the data-quality entry must be, as a path into a report
    (``("dq_ehr", "tables", "labevents", "duplicates")``: the counter must exceed the valid
    run's; ``("catalog", record, column)``: the catalog row's column must be set).
    ``expect``: regex the error line (``error``) or the quarantine reason must match.
    ``record``: the WFDB record the case is about. ``batch``: a record-level case that shares
    one project (and one run) with the other batch cases: a broken record must never stop
    the others, and it saves a subprocess pair per case. ``open``: a known defect of the stage
    (docs/robustness.md): the test is an expected failure until the stage is fixed.
    """

    name: str
    stages: tuple[str, ...]
    build: Callable[[Path], None]
    outcome: str
    what: str
    expect: str = ""
    dq: tuple[str, ...] = ()
    dq_zero: bool = False  # the counter must exist and be 0 (an empty table)
    same_as_valid: bool = False  # ingested tables equal the valid run's, row for row
    record: str | None = None
    batch: bool = False
    open: str | None = None


def ehr_cases() -> list[Case]:
    lab = "hosp/labevents"
    ingest = EHR_STAGES[:1]
    return [
        Case("ehr_truncated_gzip", ingest, transform_raw(lab, lambda b: b[: len(b) // 2]),
             ERROR, "truncated .csv.gz",
             expect=r"labevents\.csv\.gz: cannot be read as table 'labevents': unexpected end"),
        Case("ehr_not_gzip", ingest, transform_raw(lab, gzip.decompress), ERROR,
             "plain CSV named .csv.gz",
             expect=r"labevents\.csv\.gz: cannot be read: not a gzip file"),
        Case("ehr_empty_file", ingest, replace_raw(lab, b""), ERROR, "empty (0-byte) file",
             expect=r"labevents\.csv\.gz: empty file \(no header line\)"),
        Case("ehr_header_only", EHR_STAGES, edit_table(lab, lambda ls: ls[:1]), INGESTED,
             "header line only", dq=("dq_ehr", "tables", "labevents", "rows_seen"),
             dq_zero=True),
        Case("ehr_required_column_missing", ingest,
             edit_table("hosp/admissions", drop_column("admittime")), ERROR,
             "required column missing",
             expect=r"admissions\.csv\.gz: missing required column 'admittime'"),
        Case("ehr_value_columns_missing", ingest,
             edit_table(lab, lambda ls: drop_column("valueuom")(drop_column("valuenum")(
                 drop_column("value")(ls)))), ERROR, "event table without value columns",
             expect=r"labevents\.csv\.gz: no value column \(expected value or valuenum\)"),
        Case("ehr_required_table_missing", ingest,
             lambda p: (p / EHR / "hosp/patients.csv.gz").unlink(), ERROR,
             "required table missing",
             expect=r"data/source/ehr: required table 'patients' not found"),
        Case("ehr_text_in_numeric", EHR_STAGES, edit_table(lab, text_in_numeric), INGESTED,
             "text in a numeric column (valuenum 'high')",
             dq=("dq_ehr", "variables", "LAB//POTASSIUM", "text_only")),
        Case("ehr_decimal_comma", EHR_STAGES, edit_table(lab, decimal_comma), INGESTED,
             "decimal comma in a number (valuenum '4,2')",
             dq=("dq_ehr", "unparseable_cells", "labevents", "valuenum")),
        Case("ehr_unreadable_itemid", EHR_STAGES, edit_table(lab, unreadable_itemid), INGESTED,
             "itemid that is not a number ('5O971')",
             dq=("dq_ehr", "tables", "labevents", "removed_no_item")),
        Case("ehr_non_utf8", ingest, transform_text(lab, latin1_unit), ERROR,
             "non-UTF-8 byte (latin-1 micro sign)",
             expect=r"labevents\.csv\.gz: cannot be read as table 'labevents': not valid UTF-8"),
        Case("ehr_crlf", ingest, transform_text(lab, lambda b: b.replace(b"\n", b"\r\n")),
             INGESTED, "CRLF line endings", same_as_valid=True),
        Case("ehr_upper_case_headers", ingest,
             edit_table(lab, lambda ls: [ls[0].upper(), *ls[1:]]), INGESTED,
             "upper-case headers", same_as_valid=True),
        Case("ehr_duplicated_header", EHR_STAGES, edit_table(lab, repeat_header), INGESTED,
             "header line repeated mid-file (concatenated exports)",
             dq=("dq_ehr", "tables", "labevents", "removed_no_subject")),
        Case("ehr_absurd_value", EHR_STAGES, set_potassium("4000000"), INGESTED,
             "absurd value (potassium 4,000,000)",
             dq=("dq_ehr", "variables", "LAB//POTASSIUM", "removed_outlier")),
        Case("ehr_negative_value", EHR_STAGES, set_potassium("-3.5"), INGESTED,
             "negative value (potassium -3.5)",
             dq=("dq_ehr", "variables", "LAB//POTASSIUM", "removed_outlier")),
        Case("ehr_future_timestamp", EHR_STAGES, set_lab_time(literal="2999-01-01 00:00:00"),
             INGESTED, "timestamp in the future (year 2999)",
             dq=("dq_ehr", "variables", "LAB//POTASSIUM", "time_in_future")),
        Case("ehr_before_admission", EHR_STAGES, set_lab_time(shift_days=-30), INGESTED,
             "timestamp 30 days before admission",
             dq=("dq_ehr", "variables", "LAB//POTASSIUM", "before_admission")),
        Case("ehr_bad_timestamp_format", EHR_STAGES, set_lab_time(literal="24/04/2154 23:00"),
             INGESTED, "unparseable timestamp (dd/mm/yyyy)",
             dq=("dq_ehr", "variables", "LAB//POTASSIUM", "removed_no_time")),
        Case("ehr_duplicate_rows", EHR_STAGES, edit_table(lab, duplicate_rows), INGESTED,
             "5 duplicated rows", dq=("dq_ehr", "tables", "labevents", "duplicates")),
        Case("ehr_null_key", EHR_STAGES, edit_table(lab, null_subject), INGESTED,
             "null subject_id", dq=("dq_ehr", "tables", "labevents", "removed_no_subject")),
    ]


def wfdb_cases(physionet: Path) -> list[Case]:
    def rec(name: str):
        return valid_record_copy(physionet, name)

    def case(name, build, outcome, what, record, **kw) -> Case:
        return Case(name, WFDB_STAGES, build, outcome, what, record=record, batch=True, **kw)

    return [
        case("wfdb_truncated_dat", truncate_dat(rec("p10012853-trunc"), 0.5), QUARANTINED,
             "truncated .dat (half the bytes)", "p10012853-trunc",
             expect=r"p10012853-trunc: data file holds 3600 of the 7200 frames the "
                    r"header declares"),
        case("wfdb_header_longer_than_data",
             edit_header(rec("p10012853-long"), record_field(3, "72000")), QUARANTINED,
             "header says 10x more samples than the data", "p10012853-long",
             expect=r"p10012853-long: data file holds 7200 of the 72000 frames the "
                    r"header declares"),
        case("wfdb_header_shorter_than_data",
             edit_header(rec("p10012853-short"), record_field(3, "3600")), INGESTED,
             "header says half the samples of the data", "p10012853-short",
             dq=("dq_waveforms", "records", "p10012853-short", "data_longer_than_header")),
        case("wfdb_unknown_format", edit_header(rec("p10012853-fmt"), signal_field(1, "999")),
             QUARANTINED, "unknown format code 999", "p10012853-fmt",
             expect=r"p10012853-fmt: cannot read frames"),
        case("wfdb_missing_segments", multi_segment_missing(physionet), INGESTED,
             "multi-segment record, 30 of 32 segment files missing (real, p000878)",
             "p000878-2137-10-26-16-57",
             dq=("catalog", "p000878-2137-10-26-16-57", "n_segments_missing")),
        case("wfdb_missing_dat", delete_dat(rec("p10012853-nodat")), QUARANTINED,
             "data file missing", "p10012853-nodat", expect=r"data file missing"),
        case("wfdb_zero_length", zero_length(physionet, "p10012853-empty"), INGESTED,
             "zero-length record (0 samples, empty .dat)", "p10012853-empty",
             dq=("dq_waveforms", "records", "p10012853-empty", "empty_record")),
        case("wfdb_all_nan_channel", channel_record(physionet, "p10012853-nan", None),
             INGESTED, "channel V5 all NaN (WFDB invalid samples)", "p10012853-nan",
             dq=("dq_waveforms", "records", "p10012853-nan", "windows_dropped", "gap")),
        case("wfdb_constant_channel", channel_record(physionet, "p10012853-flat", 7),
             INGESTED, "channel V5 constant", "p10012853-flat",
             dq=("dq_waveforms", "records", "p10012853-flat", "windows_dropped", "flat")),
        case("wfdb_date_before_time", edit_header(rec("p10012853-date"), date_before_time),
             INGESTED, "base date before base time on the record line", "p10012853-date",
             dq=("catalog", "p10012853-date", "header_repair")),
        case("wfdb_non_numeric_fs", edit_header(rec("p10012853-fs"), record_field(2, "fast")),
             QUARANTINED, "non-numeric sampling rate ('fast')", "p10012853-fs",
             expect=r"p10012853-fs\.hea: sampling frequency 'fast' is not a number"),
        case("wfdb_absurd_gain", edit_header(rec("p10012853-gain"), signal_field(2, "1e-12")),
             INGESTED, "absurd ADC gain (1e-12/mV)", "p10012853-gain",
             dq=("dq_waveforms", "records", "p10012853-gain", "windows_dropped",
                 "out_of_range")),
        case("wfdb_garbage_header", garbage_header, QUARANTINED,
             "binary garbage in a .hea", "binary",
             expect=r"binary\.hea: malformed header"),
    ]


def all_cases(physionet: Path) -> list[Case]:
    return [*ehr_cases(), *wfdb_cases(physionet)]
