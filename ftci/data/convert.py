"""`ftci data convert`: write records as canonical JSONL, one `Record.to_canonical()` per line.

The file is written atomically (temp file beside it, fsync, rename): a killed run leaves the old
file or the new one, never half of one. Lines are streamed to the temp file, so converting a
million records does not hold the whole output in memory as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ftci.data.records import Record
from ftci.io import atomic_writer


def canonical_line(record: Record) -> str:
    """One record as a canonical JSONL line (no trailing newline). Values JSON cannot hold
    (dates from a Parquet `meta` column) are written as strings."""
    return json.dumps(record.to_canonical(), ensure_ascii=False, default=str)


def convert_records(records: Iterable[Record], out: Path) -> int:
    """Write `records` to `out` as canonical JSONL, atomically; return how many were written."""
    count = 0
    with atomic_writer(out, "w") as handle:
        for record in records:
            handle.write(canonical_line(record))
            handle.write("\n")
            count += 1
    return count
