"""Deterministic, streaming ``.csv.gz`` writing: same frames in, byte-identical file out."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from medae.io import atomic_path

# zlib level 1 compresses about 4x faster than the default 9 for ~20 % larger files;
# generation speed matters more here than disk.
GZIP_LEVEL = 1
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class CsvGzWriter:
    """Appends frames with a fixed column list to an open gzip stream (header written once).

    Compression runs in one background thread (zlib releases the GIL) while the caller builds
    the next chunk; at most one chunk waits, so memory stays bounded and order is kept.
    """

    def __init__(self, stream: gzip.GzipFile, columns: list[str],
                 compressor: ThreadPoolExecutor) -> None:
        self._stream = stream
        self._compressor = compressor
        self._pending: Future | None = None
        self.columns = columns
        self.rows = 0
        stream.write((",".join(columns) + "\n").encode())

    def write(self, frame: pl.DataFrame) -> None:
        if frame.columns != self.columns:
            raise ValueError(f"columns {frame.columns} differ from the header {self.columns}")
        buffer = io.BytesIO()
        frame.write_csv(buffer, include_header=False, datetime_format=DATETIME_FORMAT,
                        date_format="%Y-%m-%d", null_value="")
        self.flush()
        self._pending = self._compressor.submit(self._stream.write, buffer.getvalue())
        self.rows += frame.height

    def flush(self) -> None:
        """Wait for the chunk being compressed (re-raising its error, if any)."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None


@contextmanager
def csv_gz_writer(path: Path, columns: list[str]) -> Iterator[CsvGzWriter]:
    """Open ``path`` for chunked CSV writing; the file appears atomically when the block ends.

    The gzip header carries no file name and mtime 0, so equal content gives equal bytes.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "t.csv.gz"
    >>> with csv_gz_writer(target, ["a", "b"]) as w:
    ...     w.write(pl.DataFrame({"a": [1, 2], "b": ["x", None]}))
    >>> gzip.decompress(target.read_bytes()).decode()
    'a,b\\n1,x\\n2,\\n'
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL,
                          mtime=0) as stream, ThreadPoolExecutor(1) as compressor:
        writer = CsvGzWriter(stream, columns, compressor)
        try:
            yield writer
        finally:
            writer.flush()


def write_csv_gz(path: Path, frame: pl.DataFrame) -> int:
    """Write a whole (small) frame; returns its row count."""
    with csv_gz_writer(path, frame.columns) as writer:
        writer.write(frame)
    return frame.height
