"""Read lists dropped as CSV files into a folder (an EMR's nightly export, a spreadsheet of contacts).

One file is one page, in file-name order (exports named by date sort by date). The checkpoint is
``{file name: sha256 of its bytes}`` for the files processed, so an unchanged file is skipped and
a changed one (a corrected export under the same name) is read again whole; the caller's ledger
then skips its unchanged rows, because a row's version is the hash of its cells.

A row's id is its ``id_column`` cell, or ``<file>#<line>`` when the column or the cell is
empty. Empty cells become ``None``, so "no value" looks the same in every source. A file that
cannot be read as CSV (bad encoding, an unclosed quote, a row with more or fewer cells than the
header) raises a ``SourceError`` naming the file and the line, and nothing after it is read:
half a list processed in the wrong order is worse than a clear stop.

The folder is an Airflow ``ObjectStoragePath`` (``cht_bridge.storage``): a local path, or a URL such as
``s3://conn_id@bucket/lists/`` or a shared volume, so any worker can read it. A file larger than
``MAX_FILE_BYTES`` is refused (named, with its size) before it is read; the list of files read in
one run is bounded by ``MAX_FILES``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Iterator
from typing import Any

from cht_bridge.errors import SourceError
from cht_bridge.reverse.sources.base import SourcePage, SourceRecord, content_hash
from cht_bridge.storage import storage_path

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 * 1024 * 1024  # a national list is tens of MB; more is a mistake or an attack
MAX_FILES = 10_000  # files considered per run (the oldest names first); the rest wait for the next


class CsvFolderSource:
    """Pages (one per changed or new file) of rows from the CSV files in ``folder``."""

    def __init__(
        self,
        folder: Any,
        pattern: str = "*.csv",
        id_column: str = "id",
        encoding: str = "utf-8-sig",
        delimiter: str = ",",
    ) -> None:
        self.folder = storage_path(folder)
        self.pattern = pattern
        self.id_column = id_column
        self.encoding = encoding
        self.delimiter = delimiter

    def pages(self, checkpoint: Any | None) -> Iterator[SourcePage]:
        """Yield a page per file that is new or changed since ``checkpoint``."""
        if not self.folder.is_dir():
            raise SourceError(f"CSV folder {self.folder} does not exist or is not a folder")
        files = sorted((p for p in self.folder.glob(self.pattern) if p.is_file()), key=lambda p: p.name)
        if len(files) > MAX_FILES:
            log.warning("CSV folder %s: %d files; reading the first %d by name", self.folder, len(files), MAX_FILES)
        names = {p.name for p in files}  # every file present keeps its checkpoint entry
        files = files[:MAX_FILES]
        # Files that were removed drop out, so the checkpoint does not grow for ever.
        done = {name: digest for name, digest in dict(checkpoint or {}).items() if name in names}
        for path in files:
            content = _read_bounded(path)
            digest = hashlib.sha256(content).hexdigest()
            if done.get(path.name) == digest:
                continue
            records = self.read_file(path.name, content)
            done = {**done, path.name: digest}
            log.info("CSV folder %s: %s has %d row(s)", self.folder, path.name, len(records))
            yield SourcePage(records, dict(done))

    def processed(self, checkpoint: Any | None) -> list[Any]:
        """The files read whole: their bytes are still those ``checkpoint`` recorded.

        A file's name and hash enter the checkpoint in the transaction that adds its rows to the
        ledger, so such a file is no longer needed (housekeeping removes it); a changed one is.
        """
        done = dict(checkpoint or {})
        if not self.folder.is_dir():
            return []
        files = (p for p in self.folder.glob(self.pattern) if p.is_file() and p.name in done)
        return [p for p in files if _file_sha256(p) == done[p.name]]

    def read_file(self, name: str, content: bytes) -> list[SourceRecord]:
        """The rows of one file; ``name`` is used in ids and error messages."""
        try:
            text = content.decode(self.encoding)
        except UnicodeDecodeError as exc:
            line = content[: exc.start].count(b"\n") + 1
            raise SourceError(f"CSV file {name}, line {line}: not valid {self.encoding} text") from None
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter, strict=True)
        header: list[str] | None = None
        records: list[SourceRecord] = []
        while True:
            line = reader.line_num + 1  # where the next record starts (a quoted cell may span lines)
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise SourceError(f"CSV file {name}, line {line}: {exc}") from None
            if not row or all(not cell.strip() for cell in row):
                continue  # blank lines are layout, not rows
            if header is None:
                header = self._header(name, line, row)
                continue
            if len(row) != len(header):
                raise SourceError(
                    f"CSV file {name}, line {line}: {len(row)} cells where the header has {len(header)} columns"
                )
            data = {column: (cell if cell.strip() else None) for column, cell in zip(header, row, strict=True)}
            row_id = data.get(self.id_column) or f"{name}#{line}"
            records.append(SourceRecord(str(row_id).strip(), content_hash(data), data))
        return records

    def _header(self, name: str, line: int, row: list[str]) -> list[str]:
        header = [cell.strip() for cell in row]
        if any(not column for column in header):
            raise SourceError(f"CSV file {name}, line {line}: the header has an empty column name")
        duplicates = sorted({column for column in header if header.count(column) > 1})
        if duplicates:
            raise SourceError(f"CSV file {name}, line {line}: the header repeats {', '.join(duplicates)}")
        if self.id_column not in header:
            log.warning("CSV file %s has no '%s' column; rows are keyed by line", name, self.id_column)
        return header


def _read_bounded(path: Any) -> bytes:
    """The bytes of one file, refused before reading when larger than ``MAX_FILE_BYTES``."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SourceError(f"CSV file {path.name}: {size} bytes, more than the {MAX_FILE_BYTES} a list may have")
    with path.open("rb") as f:
        content = f.read(MAX_FILE_BYTES + 1)
    if len(content) > MAX_FILE_BYTES:  # grew while being read
        raise SourceError(f"CSV file {path.name}: more than the {MAX_FILE_BYTES} bytes a list may have")
    return content


def _file_sha256(path: Any) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
