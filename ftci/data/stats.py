"""`ftci data stats`: what the data is, without judging it (counts, labels, lengths, splits).

Labels are shown, so they are counted redacted (ftci/redact.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.data.diff import _lengths
from ftci.redact import redact_text

if TYPE_CHECKING:
    from ftci.config.schema import FtciConfig


@dataclass
class DataStats:
    records: int
    files: dict[str, int]
    labels: dict[str, int]
    splits: dict[str, int]
    input_words: dict[str, float]
    output_words: dict[str, float]
    problems: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compute_stats(config: FtciConfig, root: Path) -> DataStats:
    from ftci.data.findings import split_of
    from ftci.data.loaders import load_sources
    from ftci.data.records import SPLITS, Record
    from ftci.data.split import cluster_and_assign

    loaded = load_sources(config.data, root)
    records = loaded.records
    _, splits = cluster_and_assign(records, config)
    split_counts = Counter(split_of(r, splits) for r in records)
    outputs = [Record(messages=[{"role": "user", "content": r.output_text()}], id=r.id)
               for r in records]
    return DataStats(
        records=len(records),
        files={str(path): count for path, count in loaded.counts_by_file.items()},
        # shown by `ftci data stats`: redacted (labels that redact alike count together)
        labels=dict(Counter(redact_text(r.label) for r in records
                            if r.label is not None).most_common()),
        splits={split: split_counts.get(split, 0) for split in SPLITS},
        input_words=_lengths(records),
        output_words=_lengths(outputs),
        problems=len(loaded.problems),
    )
