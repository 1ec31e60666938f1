"""Append-stable train/val/test splits (DESIGN.md: "Append-stable splits").

How a record's split is decided, and why:
- Each record id is hashed (sha256 of ALGORITHM + id). The first 8 bytes give its *rank*, the
  next 8 its *split point* u in [0, 1): u < train -> train, u < train + val -> val, else test.
  A record's split depends on its own id only, so adding records never moves an existing one.
- Records that must not be separated form a *group*: the same id, or one near-duplicate
  cluster. The whole group takes the split point of its member with the smallest rank. (Rank
  and split point are different bits: taking the smallest split point itself would pull
  clusters towards train, since the minimum of k uniforms is small.)
- A pinned `record.split` (from `data.sources[].split`) always wins for that record; the
  unpinned members of its group follow the pin (of the smallest-ranked pinned member), so a
  near-duplicate of a pinned test record does not land in train. The returned mapping is keyed
  by id, and one content id can be pinned to two splits (the same text in a train file and a
  pinned test file): it maps to the eval side, and `write_splits` and the leakage check read a
  record's own pin first, so that pin-forced leak is written as pinned and reported.

The caveat, exactly: an existing record moves only when an added record joins its group and
either (a) has a smaller rank than every old member (the new record becomes the group's
representative, probability 1/(k+1) for a group of k), or (b) links two old groups with
different splits into one, or (c) is pinned. Records whose group gains no new member never
move. `tests/data/test_split.py` measures it: 0 moves on a synthetic corpus, and on
banking77 only records in groups an appended record joined.

Stratification (`split.stratify`) and why it cannot change the assignment: hashing already
stratifies *in expectation* -- each label's records fall into train/val/test independently with
the configured ratios, so a label with n records has ~ratio * n in each split, off by binomial
noise (sd sqrt(n * ratio * (1 - ratio))). Exact per-label quotas would need each record's split
to depend on the other records of its label (its rank among them), and then adding one record
shifts the quota boundary and moves an existing record. Append-stability needs a per-record
rule, so ftci keeps stability; salting the hash with the label would add nothing (the draws
are already independent) and would move a record whose label is corrected. The manifest
records label counts per split so the actual proportions are visible.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.data.minhash import ALGORITHM as MINHASH_ALGORITHM
from ftci.data.minhash import clusters_from_edges
from ftci.data.records import SPLITS, Record
from ftci.digests import sha256_bytes
from ftci.errors import SplitFileError
from ftci.io import atomic_write_bytes

if TYPE_CHECKING:
    from ftci.config.schema import FtciConfig, SplitConfig

ALGORITHM = "ftci-split-v1"
SPLIT_RECORD = ("a JSON object with a string `id`, a `messages` list of {role, content} objects "
                "with string values, and optionally a string `label` and an object `meta`")
REWRITE_HINT = "rerun `ftci data split` (or `ftci train`, which splits) to rewrite the splits"


def rank_and_point(record_id: str) -> tuple[int, float]:
    """(rank, split point in [0, 1)) of a record id: two independent parts of one sha256."""
    # sha256 as the split's random draw, raw bytes (content digests live in ftci.digests)
    digest = hashlib.sha256(f"{ALGORITHM}\0{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:16], "big") / 2**64


def split_for_point(point: float, train: float, val: float) -> str:
    if point < train:
        return "train"
    return "val" if point < train + val else "test"


def assign_splits(records: Sequence[Record], split_config: SplitConfig,
                  clusters: Sequence[Sequence[int]] | None = None) -> dict[str, str]:
    """Record id -> "train" | "val" | "test" (see the module docstring for the rule)."""
    left: list[int] = []
    right: list[int] = []
    first_of_id: dict[str, int] = {}
    for index, record in enumerate(records):
        first = first_of_id.setdefault(record.id, index)
        if first != index:
            left.append(first)
            right.append(index)
    for cluster in clusters or ():
        left.extend([cluster[0]] * (len(cluster) - 1))
        right.extend(cluster[1:])
    assignment: dict[str, str] = {}
    grouped: set[int] = set()
    for group in clusters_from_edges(left, right):
        grouped.update(group)
        members = [records[index] for index in group]
        ranks = {r.id: rank_and_point(r.id) for r in members}
        pins = _pins(members)
        if pins:
            shared = pins[min(pins, key=lambda record_id: ranks[record_id][0])]
        else:
            lead = min(members, key=lambda r: (ranks[r.id][0], r.id))
            shared = split_for_point(ranks[lead.id][1], split_config.train, split_config.val)
        for record in members:
            assignment[record.id] = pins.get(record.id, shared)
    for index, record in enumerate(records):
        if index not in grouped:
            assignment[record.id] = record.split or split_for_point(
                rank_and_point(record.id)[1], split_config.train, split_config.val)
    return assignment


def _pins(members: Sequence[Record]) -> dict[str, str]:
    """Pinned split per id; an id pinned to several splits takes test over val over train
    (keeping an eval example out of train is the safe side)."""
    pins: dict[str, str] = {}
    for record in members:
        if record.split is not None:
            pins[record.id] = max(pins.get(record.id, "train"), record.split, key=_EVAL_FIRST.index)
    return pins


_EVAL_FIRST = ("train", "val", "test")


@dataclass
class SplitManifest:
    """What `write_splits` wrote: enough to check the files and to key caches on them."""

    path: Path
    algorithm: str
    counts: dict[str, int]
    sha256: dict[str, str]
    ratios: dict[str, float] | None
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "split_hash": f"sha256('{ALGORITHM}' + NUL + id): bytes 0-7 rank, 8-15 point",
            "near_duplicates": MINHASH_ALGORITHM,
            "counts": self.counts,
            "files": {split: f"{split}.jsonl" for split in SPLITS},
            "label_counts": self.label_counts,
            "ratios": self.ratios,
            "sha256": self.sha256,
        }


def _line(record: Record) -> str:
    return json.dumps(record.to_canonical(), ensure_ascii=False, sort_keys=True,
                      separators=(",", ":"))


def write_splits(records: Sequence[Record], assignment: dict[str, str], out_dir: str | Path,
                 split_config: SplitConfig | None = None) -> SplitManifest:
    """Write `{train,val,test}.jsonl` (canonical records sorted by id, then content) and
    `manifest.json` into `out_dir`, each atomically; the manifest last, so a complete manifest
    means complete files. Same records and assignment -> byte-identical files, in any order."""
    target = Path(out_dir)
    lines: dict[str, list[tuple[str, str]]] = {split: [] for split in SPLITS}
    labels: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    for record in records:
        split = record.split or assignment.get(record.id)  # a pin wins even over its id's split
        if split not in lines:
            raise ValueError(f"record {record.id!r} ({record.file}:{record.line}) has no split "
                             f"assigned (got {split!r})")
        lines[split].append((record.id, _line(record)))
        if record.label is not None:
            labels[split][record.label] += 1
    sha256: dict[str, str] = {}
    for split in SPLITS:
        blob = "".join(text + "\n" for _, text in sorted(lines[split])).encode("utf-8")
        atomic_write_bytes(target / f"{split}.jsonl", blob)
        sha256[split] = sha256_bytes(blob)
    manifest = SplitManifest(
        path=target / "manifest.json",
        algorithm=ALGORITHM,
        counts={split: len(lines[split]) for split in SPLITS},
        sha256=sha256,
        ratios=(None if split_config is None else
                {split: float(getattr(split_config, split)) for split in SPLITS}),
        label_counts={split: dict(sorted(labels[split].items())) for split in SPLITS
                      if labels[split]},
    )
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(manifest.path, text.encode("utf-8"))
    return manifest


def cluster_and_assign(records: Sequence[Record], config: FtciConfig
                       ) -> tuple[list[list[int]], dict[str, str]]:
    """Near-duplicate clusters of the inputs, and the split assignment that keeps each cluster
    together: what `data check`, `data stats`, `data split` and `train` all start from."""
    from ftci.data.minhash import near_duplicate_clusters

    checks = config.data.checks
    clusters = near_duplicate_clusters([record.input_text() for record in records],
                                       checks.near_duplicate_threshold, checks.shingle)
    return clusters, assign_splits(records, config.data.split, clusters)


def split_sources(config: FtciConfig, root: Path, out_dir: Path) -> SplitManifest:
    """`ftci data split`: load every source, refuse unreadable data, assign and write."""
    from ftci.data.loaders import load_sources
    from ftci.errors import DataError

    result = load_sources(config.data, root)
    if result.unreadable:
        first = result.problems[0]
        raise DataError(f"{len(result.problems)} record(s) could not be read, first: "
                        f"{first.message}", path=str(first.file), line=first.line,
                        hint="run `ftci data check` for the full list")
    _, assignment = cluster_and_assign(result.records, config)
    return write_splits(result.records, assignment, out_dir, config.data.split)


# --- reading split files back ----------------------------------------------------------------


@dataclass(frozen=True)
class SplitLine:
    """One record of a split file: its line number, its size in bytes, the record itself."""

    number: int
    size: int
    record: dict[str, Any]


def iter_split(path: Path) -> Iterator[SplitLine]:
    """The records of one split file as `write_splits` wrote them, each checked, blank lines
    skipped. Training and eval both read through here, so a missing file or a damaged line is
    the same SplitFileError (exit 2) naming the file and line, whichever command meets it."""
    if not path.is_file():
        raise SplitFileError(f"no such split file (the {path.stem} split is missing)",
                             path=str(path), hint=REWRITE_HINT)
    with open(path, "rb") as handle:  # bytes: a line that is not UTF-8 is reported by number
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                raise SplitFileError(f"not JSON ({exc}); expected {SPLIT_RECORD}",
                                     path=str(path), line=number, hint=REWRITE_HINT) from exc
            problem = _record_problem(record)
            if problem:
                raise SplitFileError(f"not a canonical split record: {problem}; expected "
                                     f"{SPLIT_RECORD}", path=str(path), line=number,
                                     hint=REWRITE_HINT)
            yield SplitLine(number, len(line), record)


def read_split(path: Path) -> list[dict[str, Any]]:
    """Every record of one split file (see `iter_split`)."""
    return [line.record for line in iter_split(path)]


def read_split_records(path: Path) -> list[Record]:
    """The records of one split file as `Record`s that point back at their file and line."""
    return [Record(messages=line.record["messages"], id=line.record["id"],
                   label=line.record.get("label"), target=line.record.get("target"),
                   meta=line.record.get("meta") or {}, file=str(path), line=line.number)
            for line in iter_split(path)]


def _record_problem(record: Any) -> str | None:
    """What keeps `record` from being a canonical split record, or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if not isinstance(record.get("id"), str) or not record["id"]:
        return "no string `id`"
    messages = record.get("messages")
    if not isinstance(messages, list):
        return "no `messages` list"
    for index, message in enumerate(messages):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            return f"messages[{index}] is not a {{role, content}} object of strings"
    if record.get("label") is not None and not isinstance(record["label"], str):
        return "`label` is not a string"
    if record.get("meta") is not None and not isinstance(record["meta"], dict):
        return "`meta` is not an object"
    return None
