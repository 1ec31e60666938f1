"""Load `data.sources` into canonical records, reporting every unreadable record at file:line.

Why read JSONL and CSV ourselves instead of through `datasets`: every finding must point at the
exact line of the user's file (`datasets` and pandas give row indices, which drift from line
numbers with blank lines, multi-line CSV cells and bad lines); a bad line must become a problem
while loading goes on, where `datasets` stops at the first one; and `ftci data check` runs on a
CPU CI runner, so it must not pay the import of `datasets` (seconds) or write an Arrow cache.
Reading bytes line by line with orjson (stdlib `json` when orjson is absent, about 1.5x slower)
loads one million chat records (446 MB of JSONL) in about 25 s of CPU on two cores. Parquet has
no lines: it is read with pyarrow (imported only for .parquet files), and its "line" is the
1-based row number.

Sources (each relative to the project root): a file, a directory (every .jsonl, .json, .ndjson,
.csv and .parquet file below it, sorted; anything else such as README.md is ignored) or a glob.
When sources overlap, the most specific wins for a file: a named file, then a glob, then a
directory, so `data/` plus `{path: data/test.jsonl, split: test}` pins just that file.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import glob
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.config.paths import OUTSIDE_HINT, outside_problem
from ftci.data.formats import LoadProblem, RecordConverter, json_kind
from ftci.data.records import Record
from ftci.errors import DataError

if TYPE_CHECKING:
    from ftci.config.schema import DataConfig, DataSource

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib gives the same result
    orjson = None  # type: ignore[assignment]

__all__ = ["LoadProblem", "LoadResult", "load_file", "load_sources"]

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")
_BOM = b"\xef\xbb\xbf"
_GLOB_CHARS = re.compile(r"[*?\[]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
_LINE_HINT = "each line must be one complete JSON object, e.g. {\"messages\": [...]}"
_UTF8_HINT = "save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
_DOCUMENT_HINT = "a .json file holds one array of records; or write one object per line (.jsonl)"
_SOURCES_HINT = "add .jsonl, .json, .csv or .parquet files there, or fix data.sources in ftci.yaml"


@dataclass
class LoadResult:
    """Records in source order, every problem, and the files read (relative to the root when
    inside it, as `Record.file` and problems name them; `root / path` opens one)."""

    records: list[Record] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    counts_by_file: dict[str, int] = field(default_factory=dict)
    unreadable: bool = False  # any record or source could not be read: the parse rule fails


def load_sources(data_config: DataConfig, root: Path) -> LoadResult:
    """Load every source of `data.sources`. Content problems are returned, never raised; only an
    unreadable directory or file (permissions, I/O) raises DataError."""
    result = LoadResult()
    with _collector_paused():
        _load_all(data_config, root, result)
    result.unreadable = bool(result.problems)
    return result


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Loading allocates millions of objects and makes no reference cycles, so the cyclic
    garbage collector only burns time while it runs (about a fifth of the load time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_all(data_config: DataConfig, root: Path, result: LoadResult) -> None:
    chosen: dict[Path, tuple[int, Path, DataSource]] = {}
    for source in data_config.sources:
        specificity, files = _source_files(source, root, result.problems)
        for path in files:
            key = path.resolve()
            if key not in chosen or specificity > chosen[key][0]:
                chosen[key] = (specificity, path, source)
    for _, path, source in chosen.values():
        outside = outside_problem(path, root, "data.sources", source.path)
        if outside is not None:  # a path or symlink that leaves the repository
            result.problems.append(LoadProblem(_display(path, root), None, outside,
                                               OUTSIDE_HINT, "missing"))
            continue
        split = None if source.split == "auto" else source.split
        load_file(path, root, result, record_format=source.format, fields=source.fields,
                  split=split)


def load_file(path: Path, root: Path, result: LoadResult | None = None, *,
              record_format: str = "auto", fields: dict[str, str] | None = None,
              split: str | None = None) -> LoadResult:
    """Load one file into `result` (a new one when None) and return it."""
    result = result if result is not None else LoadResult()
    display = _display(path, root)
    suffix = path.suffix.lower()
    converter = RecordConverter(display, record_format, fields, split,
                                unit="row" if suffix == ".parquet" else "line")
    before = (len(result.records), len(result.problems))
    try:
        if suffix == ".csv":
            _read_csv(path, converter, result)
        elif suffix == ".parquet":
            _read_parquet(path, converter, result)
        elif suffix == ".json" and _is_json_document(path):
            _read_json_document(path, converter, result)
        else:
            _read_jsonl(path, converter, result)
    except OSError as exc:
        raise DataError(f"cannot read {display}: {exc.strerror or exc}", path=display,
                        hint="check that the file exists and is readable") from exc
    loaded = len(result.records) - before[0]
    if not loaded and len(result.problems) == before[1]:
        result.problems.append(LoadProblem(display, None, "empty file: no records", "add "
                               "records or remove the file", "empty", converter.unit))
    result.files.append(Path(display))
    result.counts_by_file[display] = loaded
    result.unreadable = result.unreadable or len(result.problems) > before[1]
    return result


def _keep(outcome: Record | LoadProblem, result: LoadResult) -> None:
    if type(outcome) is Record:
        result.records.append(outcome)
    else:
        result.problems.append(outcome)  # type: ignore[arg-type]


def _read_jsonl(path: Path, converter: RecordConverter, result: LoadResult) -> None:
    parse = _parse_orjson if orjson is not None else _parse_stdlib
    records, convert = result.records, converter.convert
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if number == 1 and line.startswith(_BOM):
                line = line[3:]
            if not line or line.isspace():
                continue
            value = parse(line)
            if type(value) is dict:
                outcome = convert(value, number)
                if type(outcome) is Record:
                    records.append(outcome)
                    continue
                result.problems.append(outcome)  # type: ignore[arg-type]
            elif type(value) is tuple:
                result.problems.append(converter.problem(number, *value))
            else:
                result.problems.append(converter.problem(
                    number, f"the line is {json_kind(value)}, not a JSON object", _LINE_HINT,
                    "syntax"))


def _parse_orjson(line: bytes) -> Any:
    """The parsed value, or (message, hint, kind) for a line that is not JSON."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return _undecodable(line) or (f"not valid JSON: {exc.msg} at column {exc.colno}",
                                      _LINE_HINT, "syntax")


def _parse_stdlib(line: bytes) -> Any:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return _undecodable(line)
    try:
        # orjson's rules: no NaN/Infinity
        value = json.loads(text, parse_constant=_reject_constant)
        if _SURROGATE_ESCAPE.search(line):  # json accepts "\ud800"; it is not valid Unicode
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at column {exc.colno}", _LINE_HINT, "syntax"
    except (ValueError, RecursionError) as exc:
        return f"not valid JSON: {exc}", _LINE_HINT, "syntax"
    except UnicodeEncodeError as exc:
        return (f"not valid JSON: unpaired surrogate {exc.object[exc.start]!a}", _LINE_HINT,
                "syntax")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _undecodable(line: bytes) -> tuple[str, str, str] | None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"invalid UTF-8: byte 0x{line[exc.start]:02x} at byte {exc.start + 1} of the "
                "line", _UTF8_HINT, "encoding")
    return None


def _read_json_document(path: Path, converter: RecordConverter, result: LoadResult) -> None:
    """A .json file holding one array of records (each record's line is where it starts) or
    one pretty-printed record."""
    data = path.read_bytes()
    data = data[3:] if data.startswith(_BOM) else data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"invalid UTF-8: byte 0x{data[exc.start]:02x}; the file is skipped"
        result.problems.append(converter.problem(line, message, _UTF8_HINT, "encoding"))
        return
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    position = _skip_space(text, 0)
    if text.startswith("{", position):
        text = text + "]"  # read the one record as the only item of an array
    else:
        position += 1
    line, counted = 1, 0
    while True:
        position = _skip_space(text, position)
        if text.startswith("]", position):
            break
        line += text.count("\n", counted, position)
        counted = position
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            result.problems.append(converter.problem(exc.lineno, f"not valid JSON: {exc.msg} "
                                   f"at column {exc.colno}; the rest of the file is skipped",
                                   _DOCUMENT_HINT, "syntax"))
            return
        except (ValueError, RecursionError) as exc:
            result.problems.append(converter.problem(line, f"not valid JSON: {exc}",
                                                     _DOCUMENT_HINT, "syntax"))
            return
        if isinstance(value, dict):
            _keep(converter.convert(value, line), result)
        else:
            result.problems.append(converter.problem(line, f"the array item is {json_kind(value)}"
                                   ", not a JSON object", "list one object per record", "syntax"))
        position = _skip_space(text, position)
        if text.startswith(",", position):
            position += 1
        elif not text.startswith("]", position):
            line += text.count("\n", counted, position)
            result.problems.append(converter.problem(line, "expected `,` or `]` after the item; "
                                   "the rest of the file is skipped", _DOCUMENT_HINT,
                                   "syntax"))
            return


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _is_json_document(path: Path) -> bool:
    """True for a JSON array, or one object spread over lines; False for JSON Lines."""
    with open(path, "rb") as handle:
        first = next((line.strip() for line in handle if line.strip()), b"").removeprefix(_BOM)
    if first.startswith(b"["):
        return True
    return first.startswith(b"{") and not isinstance(_parse_stdlib(first), dict)


def _read_csv(path: Path, converter: RecordConverter, result: LoadResult) -> None:
    # A cell may hold a long conversation; the default limit (131,072 characters) is too low.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            result.problems.append(converter.problem(1, f"unreadable CSV header: {exc}",
                                                     "check the first row's quoting", "syntax"))
            return
        if header is None or not any(cell.strip() for cell in header):
            result.problems.append(converter.problem(None, "empty file: a CSV needs a header row "
                                   "naming its columns, then one row per record",
                                   "start the file with e.g. `text,label`", "empty"))
            return
        bad = _bad_cell(header, header)
        if bad:
            result.problems.append(converter.problem(1, f"header {bad}", _UTF8_HINT, "encoding"))
            return
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                result.problems.append(converter.problem(start, f"unreadable CSV row: {exc}",
                                       "check the quoting of this row", "syntax"))
                if reader.line_num < start:
                    break
                continue
            if not row:
                continue
            if len(row) != len(header):
                result.problems.append(converter.problem(start, f"the row has {len(row)} cells "
                                       f"but the header has {len(header)} columns",
                                       "quote cells that contain commas or line breaks",
                                       "syntax"))
                continue
            bad = _bad_cell(row, header)
            if bad:
                result.problems.append(converter.problem(start, bad, _UTF8_HINT, "encoding"))
                continue
            _keep(converter.convert(dict(zip(header, row, strict=True)), start), result)


def _bad_cell(row: list[str], header: list[str]) -> str:
    for cell, column in zip(row, header, strict=True):
        found = _UNDECODABLE.search(cell)
        if found:
            byte = ord(found.group()) - 0xDC00
            return f"invalid UTF-8: byte 0x{byte:02x} in column `{column}`"
    return ""


def _read_parquet(path: Path, converter: RecordConverter, result: LoadResult) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=4096):
            for raw in batch.to_pylist():
                row += 1
                _keep(converter.convert(raw, row), result)
    except (pa.ArrowException, ValueError, UnicodeDecodeError) as exc:
        where = f"after row {row}" if row else "at the start"
        result.problems.append(converter.problem(None, f"cannot read the Parquet file {where}: "
                               f"{exc}", "re-export it, e.g. with pandas.DataFrame.to_parquet",
                               "syntax"))


def _source_files(source: DataSource, root: Path,
                  problems: list[LoadProblem]) -> tuple[int, list[Path]]:
    """(specificity, files): 2 for a named file, 1 for a glob, 0 for a directory."""
    given = Path(source.path).expanduser()
    full = given if given.is_absolute() else root / given
    if full.is_file():
        if full.suffix.lower() in DATA_SUFFIXES:
            return 2, [full]
        kind = f"a {full.suffix} file" if full.suffix else "a file without an extension"
        problems.append(LoadProblem(source.path, None, f"{source.path} is {kind}; ftci reads "
                                    ".jsonl, .json, .csv and .parquet files",
                                    "convert it, or point data.sources at the data files",
                                    "missing"))
        return 2, []
    if full.is_dir():
        files = _walk(full, root)
        if not files:
            problems.append(LoadProblem(source.path, None, f"no data files in {source.path}",
                                        _SOURCES_HINT, "missing"))
        return 0, files
    if _GLOB_CHARS.search(source.path):
        files = []
        for match in sorted(glob.glob(str(full), recursive=True)):
            candidate = Path(match)
            if candidate.is_dir():
                files.extend(_walk(candidate, root))
            elif candidate.suffix.lower() in DATA_SUFFIXES:
                files.append(candidate)
        if not files:
            problems.append(LoadProblem(source.path, None, f"no data files match {source.path}",
                                        _SOURCES_HINT, "missing"))
        return 1, files
    problems.append(LoadProblem(source.path, None, f"no data files at {source.path}: the path "
                                "does not exist", _SOURCES_HINT, "missing"))
    return 2, []


def _walk(directory: Path, root: Path) -> list[Path]:
    """Every data file below `directory`, sorted; hidden files and folders are skipped."""

    def fail(error: OSError) -> None:
        where = _display(Path(error.filename or directory), root)
        raise DataError(f"cannot read directory {where}: {error.strerror or error}", path=where,
                        hint="check its permissions")

    found: list[Path] = []
    for folder, subfolders, names in os.walk(directory, onerror=fail):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.extend(Path(folder, name) for name in names
                     if not name.startswith(".") and name.lower().endswith(DATA_SUFFIXES))
    return sorted(found, key=lambda path: path.relative_to(directory).parts)


def _display(path: Path, root: Path) -> str:
    """The name records and problems show for `path`: relative to the root when inside it, with
    control characters escaped (a file named `x\\n::error::y.jsonl` must not print a line GitHub
    reads as a workflow command)."""
    from ftci.report.escape import escape_controls

    try:
        return escape_controls(path.relative_to(root).as_posix())
    except ValueError:
        return escape_controls(str(path))
