"""`ftci data diff BASE HEAD`: what a pull request changes in the training data.

Each side is a git revision (the config's directory is read at that revision with git, into a
temporary directory: the working tree is never touched) or, only when asked for explicitly
(`--base-path`, `--head-path`), a path: a repository directory with its own ftci.yaml, or a data
file/directory read with the current config. A revision is never looked up as a path: a pull
request that adds a directory named like the base commit (or `main`) must not stand in for it.
Records are keyed by id, so an edited answer to the same input shows as "modified", not as one
removal plus one add. Everything shown of a record (input, output, label) is redacted.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ftci.config.loader import CONFIG_FILENAME, LoadedConfig, load_config, load_config_text
from ftci.data.check import DataReport, run_checks
from ftci.data.records import Record
from ftci.errors import BadInputError, InfraError
from ftci.redact import redact_text
from ftci.report.escape import markdown_code, markdown_inline, markdown_text

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
EXAMPLES = 3


@dataclass(frozen=True)
class DiffSide:
    """One side of a diff: a git revision, or a path (only ever when the user says so)."""

    revision: str | None = None
    path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else str(self.revision)


@dataclass
class DataDiff:
    base: str
    head: str
    added: list[Record]
    removed: list[Record]
    modified: list[tuple[Record, Record]]
    label_deltas: dict[str, tuple[int, int]]
    length_stats: dict[str, dict[str, float]]
    introduced: list[dict[str, Any]]
    fixed: list[dict[str, Any]]
    verdicts: tuple[str, str]
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def brief(record: Record) -> dict[str, Any]:
            row = shown(record)
            return {**row, "input": row["input"][:200], "output": row["output"][:200]}

        return {
            "base": self.base,
            "head": self.head,
            "verdict": {"base": self.verdicts[0], "head": self.verdicts[1]},
            "counts": {"added": len(self.added), "removed": len(self.removed),
                       "modified": len(self.modified), "unchanged": self.unchanged},
            "added": [brief(r) for r in self.added],
            "removed": [brief(r) for r in self.removed],
            "modified": [{"before": brief(a), "after": brief(b)} for a, b in self.modified],
            "labels": {label: {"base": a, "head": b, "delta": b - a}
                       for label, (a, b) in self.label_deltas.items()},
            "length_words": self.length_stats,
            "findings_introduced": self.introduced,
            "findings_fixed": self.fixed,
        }


def shown(record: Record) -> dict[str, Any]:
    """What the diff shows of a record (its JSON and its Markdown): redacted, unclipped."""
    return {"id": redact_text(record.id), "file": record.file, "line": record.line,
            "input": redact_text(record.input_text()),
            "output": redact_text(record.output_text())}


def diff_data(base: DiffSide, head: DiffSide, config_path: Path,
              overrides: tuple[str, ...] = ()) -> DataDiff:
    current = load_config(config_path, overrides, lint=False)
    with tempfile.TemporaryDirectory(prefix="ftci-diff-") as scratch:
        base_report = _side_report(base, "base", current, overrides, Path(scratch) / "base")
        head_report = _side_report(head, "head", current, overrides, Path(scratch) / "head")
    return compare(base.name, head.name, base_report, head_report)


def compare(base: str, head: str, before: DataReport, after: DataReport) -> DataDiff:
    old = {record.id: record for record in before.records}
    new = {record.id: record for record in after.records}
    added = [new[key] for key in new if key not in old]
    removed = [old[key] for key in old if key not in new]
    modified = [(old[key], new[key]) for key in new
                if key in old and old[key].content_hash() != new[key].content_hash()]
    # labels are shown, so counted redacted (two labels that redact alike count as one)
    old_labels = Counter(redact_text(r.label) for r in before.records if r.label is not None)
    new_labels = Counter(redact_text(r.label) for r in after.records if r.label is not None)
    label_deltas = {label: (old_labels[label], new_labels[label])
                    for label in sorted(set(old_labels) | set(new_labels))
                    if old_labels[label] != new_labels[label]}
    old_keys = {_finding_key(f): f for f in before.findings}
    new_keys = {_finding_key(f): f for f in after.findings}
    return DataDiff(
        base=base, head=head, added=added, removed=removed, modified=modified,
        label_deltas=label_deltas,
        length_stats={"base": _lengths(before.records), "head": _lengths(after.records)},
        introduced=[new_keys[k].to_dict() for k in new_keys if k not in old_keys],
        fixed=[old_keys[k].to_dict() for k in old_keys if k not in new_keys],
        verdicts=(before.verdict, after.verdict),
        unchanged=len(new) - len(added) - len(modified),
    )


def _finding_key(finding: Any) -> tuple[Any, ...]:
    ids = tuple(sorted(ref.id for ref in finding.records if ref.id))
    return (finding.rule, ids) if ids else (finding.rule, finding.message)


def _lengths(records: list[Record]) -> dict[str, float]:
    words = sorted(len(record.input_text().split()) for record in records)
    if not words:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    return {"mean": round(statistics.fmean(words), 2), "p50": float(words[len(words) // 2]),
            "p95": float(words[min(len(words) - 1, int(len(words) * 0.95))]),
            "max": float(words[-1])}


def _side_report(side: DiffSide, which: Literal["base", "head"], current: LoadedConfig,
                 overrides: tuple[str, ...], scratch: Path) -> DataReport:
    if side.path is not None:
        return _path_report(side.path, which, current, overrides)
    root = current.root.resolve()
    top = Path(_git(root, "rev-parse", "--show-toplevel").strip())
    commit = _resolve_revision(top, str(side.revision), which)
    relative_dir = root.relative_to(top)
    listing = _git(top, "ls-tree", "-r", "-z", "--name-only", commit, "--",
                   str(relative_dir) if str(relative_dir) != "." else ".")
    wanted = [name for name in listing.split("\0") if name and (
        name.endswith(DATA_SUFFIXES) or Path(name).name == CONFIG_FILENAME)]
    for name in wanted:
        blob = subprocess.run(["git", "-C", str(top), "show", f"{commit}:{name}"],
                              capture_output=True, check=True).stdout
        target = scratch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    side_root = scratch / relative_dir
    side_root.mkdir(parents=True, exist_ok=True)
    side_config = side_root / CONFIG_FILENAME
    if side_config.is_file():
        text = side_config.read_text(encoding="utf-8")
        config = load_config_text(text, side_config, overrides, lint=False).config
    else:
        config = current.config
    return run_checks(config, side_root, use_tokenizer=False)


def _path_report(path: Path, which: str, current: LoadedConfig,
                 overrides: tuple[str, ...]) -> DataReport:
    """A directory with its own ftci.yaml, or a data file/directory read with the current config."""
    if not path.exists():
        raise BadInputError(f"--{which}-path {path}: no such file or directory",
                            hint="pass a data file, a data directory or a directory with an "
                                 "ftci.yaml")
    if path.is_dir() and (path / CONFIG_FILENAME).is_file():
        loaded = load_config(path, overrides, lint=False)
        return run_checks(loaded.config, loaded.root, use_tokenizer=False)
    config = current.config.model_copy(deep=True)
    config.data.sources = [source.model_copy(update={"path": str(path.resolve())})
                           for source in config.data.sources[:1]]
    return run_checks(config, current.root, use_tokenizer=False)


def _resolve_revision(top: Path, revision: str, which: str) -> str:
    """The commit `revision` names in the repository at `top` (git only: never a path)."""
    done = None
    if revision and not revision.startswith("-"):  # never let a name pass as a git option
        done = subprocess.run(["git", "-C", str(top), "rev-parse", "--verify", "--quiet",
                               f"{revision}^{{commit}}"], capture_output=True, text=True)
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip()
    if revision and Path(revision).exists():
        raise BadInputError(f"{revision!r} is not a git revision in {top} (it is a path; "
                            "BASE and HEAD are always revisions)",
                            hint=f"to compare that path, pass --{which}-path {revision}")
    raise BadInputError(f"{revision!r} is not a git revision in {top}",
                        hint="pass a commit, branch or tag (e.g. origin/main), or a directory "
                             "or data file with --base-path / --head-path")


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise InfraError("git is not installed", hint="install git to diff revisions") from None
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "git failed"
        raise BadInputError(f"git {' '.join(args[:2])}: {message}",
                            hint="run inside a git repository, or compare paths with "
                                 "--base-path and --head-path")
    return done.stdout


def render_diff_markdown(diff: DataDiff) -> str:
    """The diff as Markdown; every piece of record text renders as plain text."""
    counts = diff.to_dict()["counts"]
    lines = [f"### data diff {markdown_code(diff.base, 80, table=False)} → "
             f"{markdown_code(diff.head, 80, table=False)}", "",
             f"Verdict: {diff.verdicts[0]} → **{diff.verdicts[1]}** · "
             f"+{counts['added']} added · −{counts['removed']} removed · "
             f"~{counts['modified']} modified · {counts['unchanged']} unchanged"]
    if diff.label_deltas:
        lines += ["", "| label | base | head | Δ |", "|---|---:|---:|---:|"]
        for label, (a, b) in diff.label_deltas.items():
            lines.append(f"| {markdown_code(label, 80)} | {a} | {b} | {b - a:+d} |")
    base_len, head_len = diff.length_stats["base"], diff.length_stats["head"]
    lines += ["", "| input words | mean | p50 | p95 | max |", "|---|---:|---:|---:|---:|",
              "| base | " + " | ".join(f"{base_len[k]:g}" for k in ("mean", "p50", "p95", "max"))
              + " |",
              "| head | " + " | ".join(f"{head_len[k]:g}" for k in ("mean", "p50", "p95", "max"))
              + " |"]
    for title, items in (("findings introduced", diff.introduced),
                         ("findings fixed", diff.fixed)):
        if items:
            lines += ["", f"<details><summary>{len(items)} {title}</summary>", ""]
            lines += [f"- {markdown_code(str(item['rule']), table=False)} {item['severity']}: "
                      f"{markdown_inline(str(item['message']))}" for item in items[:20]]
            lines += ["", "</details>"]
    sample = [("added", r) for r in diff.added[:EXAMPLES]] + [
        ("removed", r) for r in diff.removed[:EXAMPLES]] + [
        ("modified", b) for _, b in diff.modified[:EXAMPLES]]
    if sample:
        lines += ["", "<details><summary>example rows</summary>", "",
                  "| change | input | output |", "|---|---|---|"]
        for change, record in sample:
            row = shown(record)
            lines.append(f"| {change} | {_cell(row['input'])} | {_cell(row['output'])} |")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return markdown_text(text, 80)
