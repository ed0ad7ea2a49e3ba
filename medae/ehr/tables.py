"""The EHR source tables medae reads: explicit schemas, layout detection and lazy scans.

Two layouts are supported and detected automatically: MIMIC-IV (``hosp/`` and ``icu/`` folders,
lower-case file names) and MIMIC-III (one flat folder, upper-case file names such as
``CHARTEVENTS.csv.gz``, ``icustay_id`` instead of ``stay_id``). Files may be ``.csv``,
``.csv.gz`` or ``.parquet``. Headers are matched case-insensitively, extra columns are ignored
and a missing required column is a :class:`~medae.errors.DataError` naming file and column.

Every table is scanned lazily with an explicit all-string schema (so ``.csv.gz`` is decompressed
as a stream) and then cast to the canonical types below.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from medae.errors import DataError, error_reason

log = logging.getLogger(__name__)

Layout = str  # "mimic4" | "mimic3"
BOTH = ("mimic4", "mimic3")
SUFFIXES = (".parquet", ".csv.gz", ".csv")
DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")


@dataclass(frozen=True)
class Column:
    """A canonical column: its type, the layouts that require it, and source-name aliases."""

    name: str
    dtype: pl.DataType
    required_in: tuple[str, ...] = BOTH
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """A canonical table: MIMIC-IV module folder, columns, and whether the run needs it.
    ``one_of``: optional columns of which the file must hold at least one (an event table's
    values: without any, its rows measure nothing)."""

    name: str
    module: str
    columns: tuple[Column, ...]
    required: bool = True
    one_of: tuple[str, ...] = ()


INT = pl.Int64()
FLOAT = pl.Float64()
STR = pl.String()
TIME = pl.Datetime("us")

SUBJECT = Column("subject_id", INT)
HADM = Column("hadm_id", INT)
STAY = Column("stay_id", INT, aliases=("icustay_id",))
ITEM = Column("itemid", INT)
CHARTTIME = Column("charttime", TIME)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec("patients", "hosp", (
            SUBJECT, Column("gender", STR),
            Column("anchor_age", INT, ("mimic4",)), Column("anchor_year", INT, ("mimic4",)),
            Column("dob", TIME, ("mimic3",)), Column("dod", TIME, ()),
        )),
        TableSpec("admissions", "hosp", (
            SUBJECT, HADM, Column("admittime", TIME), Column("dischtime", TIME),
            Column("deathtime", TIME, ()), Column("hospital_expire_flag", INT, ()),
        )),
        TableSpec("icustays", "icu", (
            SUBJECT, HADM, STAY, Column("intime", TIME), Column("outtime", TIME),
        )),
        TableSpec("labevents", "hosp", (
            SUBJECT, Column("hadm_id", INT, ()), ITEM, CHARTTIME, Column("value", STR, ()),
            Column("valuenum", FLOAT, ()), Column("valueuom", STR, ()),
        ), required=False, one_of=("value", "valuenum")),
        TableSpec("chartevents", "icu", (
            SUBJECT, Column("hadm_id", INT, ()), Column("stay_id", INT, (), ("icustay_id",)),
            ITEM, CHARTTIME, Column("value", STR, ()), Column("valuenum", FLOAT, ()),
            Column("valueuom", STR, ()), Column("error", INT, ()),  # MIMIC-III: 1 = in error
        ), required=False, one_of=("value", "valuenum")),
        TableSpec("outputevents", "icu", (
            SUBJECT, Column("hadm_id", INT, ()), Column("stay_id", INT, (), ("icustay_id",)),
            ITEM, CHARTTIME, Column("value", FLOAT, ()), Column("valueuom", STR, ()),
        ), required=False, one_of=("value",)),
        TableSpec("d_labitems", "hosp", (
            ITEM, Column("label", STR, ()), Column("fluid", STR, ()),
            Column("category", STR, ()),
        ), required=False),
        TableSpec("d_items", "icu", (
            ITEM, Column("label", STR, ()), Column("unitname", STR, ()),
        ), required=False),
    )
}

# Tables whose rows belong to one subject: sharded by subject_id. The rest are dictionaries.
SUBJECT_TABLES = tuple(n for n, s in TABLES.items() if s.columns[0].name == "subject_id")


def detect_layout(source: Path, layout: str = "auto") -> Layout:
    """``mimic4`` when ``source`` has ``hosp/`` or ``icu/``, ``mimic3`` when it holds
    upper-case MIMIC-III files; ``layout`` other than ``auto`` wins.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "ADMISSIONS.csv").write_text("x")
    >>> detect_layout(d)
    'mimic3'
    """
    if layout != "auto":
        return layout
    if not source.is_dir():
        raise DataError(f"{source}: EHR source folder not found (set ehr.source)")
    if (source / "hosp").is_dir() or (source / "icu").is_dir():
        return "mimic4"
    names = {p.name.lower() for p in source.iterdir()}
    if any(f"admissions{s}" in names for s in SUFFIXES):
        return "mimic3"
    raise DataError(
        f"{source}: cannot tell the layout: expected hosp/ and icu/ folders (MIMIC-IV) or "
        "ADMISSIONS.csv[.gz] (MIMIC-III); set ehr.layout"
    )


def find_table(source: Path, spec: TableSpec, layout: Layout) -> Path | None:
    """The file holding ``spec`` in ``source`` (file names matched case-insensitively).

    Where several hold it (``labevents.parquet`` converted beside ``labevents.csv.gz``), the
    first of ``SUFFIXES`` is read and a warning names the files left unread.
    """
    folder = source / spec.module if layout == "mimic4" else source
    if not folder.is_dir():
        return None
    rank = {spec.name + suffix: k for k, suffix in enumerate(SUFFIXES)}
    hits = sorted((p for p in folder.iterdir() if p.is_file() and p.name.lower() in rank),
                  key=lambda p: (rank[p.name.lower()], p.name))
    if len(hits) > 1:
        log.warning("%s: table '%s' read from %s; not read: %s", folder, spec.name,
                    hits[0].name, ", ".join(p.name for p in hits[1:]))
    return hits[0] if hits else None


def read_header(path: Path) -> list[str]:
    """Column names of a table file without reading its body.

    Unreadable files (not gzip, truncated, not UTF-8, not Parquet) raise :class:`DataError`
    naming the file.
    """
    try:
        if path.name.lower().endswith(".parquet"):
            return list(pl.read_parquet_schema(path))
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            first = fh.readline()  # bytes: a bad byte further down is not the header's fault
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: header is not valid UTF-8 text") from None
    except (OSError, EOFError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"{path}: cannot be read: {describe_error(exc)}") from None
    if not text.strip():
        raise DataError(f"{path}: empty file (no header line)")
    return next(csv.reader(io.StringIO(text)), [])


def describe_error(exc: BaseException) -> str:
    """One line about why a file could not be read (no cell values: only the reason).

    >>> describe_error(OSError("Not a gzipped file (b'su')"))
    'not a gzip file'
    >>> describe_error(EOFError("Compressed file ended before the end-of-stream marker"))
    'unexpected end of file (truncated?)'
    """
    text = error_reason(exc)
    lowered = text.lower()
    if "gzip" in lowered and ("checksum" in lowered or "corrupt" in lowered):
        return "damaged gzip data (checksum mismatch)"
    if "gzip" in lowered:
        return "not a gzip file"
    if "end of" in lowered or "ended before" in lowered or isinstance(exc, EOFError):
        return "unexpected end of file (truncated?)"
    if "utf-8" in lowered or "utf8" in lowered:
        return "not valid UTF-8 text"
    return text


def resolve_columns(path: Path, header: list[str], spec: TableSpec,
                    layout: Layout) -> dict[str, str]:
    """Map each canonical column present in ``header`` to its source name.

    Raises :class:`DataError` naming the file and the first missing required column, or
    saying that an event table holds none of its value columns.

    >>> spec = TABLES["icustays"]
    >>> cols = resolve_columns(Path("ICUSTAYS.csv"), ["ROW_ID", "SUBJECT_ID", "HADM_ID",
    ...     "ICUSTAY_ID", "INTIME", "OUTTIME"], spec, "mimic3")
    >>> cols["stay_id"]
    'ICUSTAY_ID'
    """
    by_lower = {h.strip().lower(): h for h in header}
    found: dict[str, str] = {}
    for col in spec.columns:
        for candidate in (col.name, *col.aliases):
            if candidate in by_lower:
                found[col.name] = by_lower[candidate]
                break
        else:
            if layout in col.required_in:
                raise DataError(f"{path}: missing required column '{col.name}'")
    if spec.one_of and not any(name in found for name in spec.one_of):
        raise DataError(f"{path}: no value column (expected {' or '.join(spec.one_of)}); "
                        f"its {spec.name} would measure nothing")
    return found


def _parse_datetime(expr: pl.Expr) -> pl.Expr:
    """Parse MIMIC's date-times, and ISO 8601's ``T`` form (other exports write it).

    >>> s = pl.Series(["2150-01-02 03:04:05", "2150-01-02T03:04:05.5", "2150-01-02", "x"])
    >>> [str(t) for t in pl.select(_parse_datetime(pl.lit(s))).to_series()]
    ['2150-01-02 03:04:05', '2150-01-02 03:04:05.500000', '2150-01-02 00:00:00', 'None']
    """
    text = expr.str.replace("T", " ", literal=True)  # one pass; no format list to try twice
    return pl.coalesce(
        [text.str.to_datetime(fmt, time_unit="us", strict=False) for fmt in DATETIME_FORMATS]
    )


def _cast(name: str, source_dtype: pl.DataType, target: pl.DataType) -> pl.Expr:
    """Cast one source column to its canonical type; unparseable cells become null."""
    expr = pl.col(name)
    if source_dtype == target:
        return expr
    if target == TIME and source_dtype == pl.String:
        return _parse_datetime(expr.str.strip_chars())
    if source_dtype == pl.String and target in (INT, FLOAT):
        # MIMIC exports write integers as "12.0" now and then; go through float for those,
        # but an id such as "10000032.7" is not an integer (truncated, it names someone else)
        cleaned = expr.str.strip_chars()
        as_float = cleaned.cast(pl.Float64, strict=False)
        if target == FLOAT:
            return as_float
        return pl.when(as_float == as_float.floor()).then(as_float.cast(pl.Int64, strict=False))
    if target == INT and source_dtype.is_float():
        return pl.when(expr == expr.floor()).then(expr.cast(pl.Int64, strict=False))
    return expr.cast(target, strict=False)


# A UInt32 column :func:`scan_table` adds on request: bit ``i`` is set where the source cell of
# ``spec.columns[i]`` held text its type could not read (the cell is null in the typed row).
UNPARSED = "_unparsed"


def _present(name: str, source_dtype: pl.DataType) -> pl.Expr:
    """True where the source cell holds something (blank text counts as empty, as in CSV)."""
    if source_dtype == pl.String:
        return pl.col(name).str.strip_chars().str.len_bytes() > 0
    return pl.col(name).is_not_null()


def scan_table(path: Path, spec: TableSpec, layout: Layout, *,
               flag_unparsed: bool = False) -> pl.LazyFrame:
    """A lazy, typed scan of one table with canonical lower-case column names.

    Columns the table lacks (optional ones) come back as typed nulls so every layout yields
    the same schema. ``flag_unparsed`` adds the :data:`UNPARSED` bitmask column last; the
    cast is computed once, the source text is not kept.
    """
    header = read_header(path)
    columns = resolve_columns(path, header, spec, layout)
    if path.name.lower().endswith(".parquet"):
        lf = pl.scan_parquet(path)
        source_types = dict(lf.collect_schema())
    else:
        source_types = {h: pl.String() for h in header}
        lf = pl.scan_csv(path, schema=source_types, null_values=[""], quote_char='"')
    exprs, present, bits = [], [], []
    for i, col in enumerate(spec.columns):
        if col.name in columns:
            src = columns[col.name]
            exprs.append(_cast(src, source_types[src], col.dtype).alias(col.name))
            if flag_unparsed and source_types[src] != col.dtype:
                present.append(_present(src, source_types[src]).alias(f"_present_{i}"))
                bits.append(pl.when(pl.col(f"_present_{i}") & pl.col(col.name).is_null())
                            .then(pl.lit(1 << i, pl.UInt32)).otherwise(pl.lit(0, pl.UInt32)))
        else:
            exprs.append(pl.lit(None, dtype=col.dtype).alias(col.name))
    if not flag_unparsed:
        return lf.select(exprs)
    mask = pl.sum_horizontal(bits) if bits else pl.lit(0, pl.UInt32)
    return lf.select(*exprs, *present).select(
        *(c.name for c in spec.columns), mask.cast(pl.UInt32).alias(UNPARSED))


def unparsed_counts(spec: TableSpec, rows_by_mask: dict[int, int]) -> dict[str, int]:
    """Cells read as empty per column, from row counts per :data:`UNPARSED` value.

    >>> unparsed_counts(TABLES["labevents"], {0: 90, 2: 3, 34: 1})
    {'hadm_id': 4, 'valuenum': 1}
    """
    counts: dict[str, int] = {}
    for mask, rows in rows_by_mask.items():
        for i, col in enumerate(spec.columns):
            if mask >> i & 1:
                counts[col.name] = counts.get(col.name, 0) + rows
    return counts


def canonical_schema(spec: TableSpec) -> pl.Schema:
    """The typed schema every ingested file of ``spec`` has."""
    return pl.Schema({c.name: c.dtype for c in spec.columns})
