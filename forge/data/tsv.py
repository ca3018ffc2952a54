"""Reading GLUE-style TSV files, plain or gzipped.

GLUE texts contain unbalanced quotes (`"`), so every reader uses csv.QUOTE_NONE: a quote is just a
character and a row ends at the newline. Files may be stored as `X.tsv` or `X.tsv.gz` (large
splits are often kept compressed); gzip is detected from the magic bytes, not the name, so a
mis-named file still reads.

A file that cannot be used (no header where one is needed, no usable rows) is a `DataError` naming
the file, what was wrong and how to fix it (`data_error`, `no_usable_rows`).
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Iterator, TextIO

from forge.config.errors import DataError

_GZIP_MAGIC = b"\x1f\x8b"


def split_file_pattern(stem: str) -> str:
    """How a split file is named in messages: `dev.tsv[.gz]`."""
    return f"{stem}.tsv[.gz]"


def find_split_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem.tsv` if present, else `folder/stem.tsv.gz`, else None."""
    for name in (f"{stem}.tsv", f"{stem}.tsv.gz"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def open_text(path: Path) -> TextIO:
    """Open a UTF-8 text file, transparently gunzipping it. newline="" as the csv module wants."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == _GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def iter_rows(path: Path) -> Iterator[list[str]]:
    """Every row of a tab-separated file as a list of fields (header included, if any)."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))  # parse trees can be long
    with open_text(path) as handle:
        yield from csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)


def read_header(path: Path) -> list[str]:
    """The first row only (cheap: used by config-time validation)."""
    rows = iter_rows(path)
    try:
        return next(rows, [])
    finally:
        rows.close()


def data_error(where: Path | str, problem: str, fix: str) -> DataError:
    """`<where>: <problem>. Fix: <fix>`, the shape of every data-file error (where: a path, or
    `path:line`)."""
    return DataError(f"{where}: {problem}. Fix: {fix}")


def no_usable_rows(path: Path, skipped: int, why_skipped: str, fix: str,
                   nothing: str = "only a header, no data rows") -> DataError:
    """The error for a file that yields zero usable rows: every row was skipped (`why_skipped`
    says why: "the label could not be read"), or there were none (`nothing`)."""
    found = f"{skipped} row(s) skipped because {why_skipped}" if skipped else nothing
    return data_error(path, f"no usable rows: {found}", fix)
