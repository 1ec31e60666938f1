"""`ftci data check`: load, split, run every rule, apply configured severities, give a verdict.

Exit codes: 2 when records could not be read (the parse rule found unreadable lines or a source
matched no file), 1 when any rule reports an error, else 0.

Findings leave here with secrets and PII redacted (ftci/redact.py), whatever rule made them:
messages, details (excerpts of inputs and answers, labels) and the records they point at.
"""

from __future__ import annotations

import importlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.data.findings import CheckContext, Finding, Verdict, split_of, verdict_for
from ftci.data.records import SPLITS, Record, RecordRef
from ftci.errors import EXIT_BAD_INPUT, EXIT_GATE_FAILED, EXIT_OK

if TYPE_CHECKING:
    from ftci.config.schema import FtciConfig
    from ftci.contracts import DataReport as DataCheckFile

# Rule -> module under ftci.data.checks (parse is the loader's own). Order = report order.
RULE_MODULES: dict[str, str] = {
    "volume": "volume",
    "exact_duplicates": "duplicates",
    "near_duplicates": "near_duplicates",
    "conflicts": "conflicts",
    "leakage": "leakage",
    "label_health": "labels",
    "length": "length",
    "pii": "pii",
    "chat_template": "chat_template",
    "review_coverage": "review",
    "semantic_duplicates": "semantic",
}
OFF_BY_DEFAULT = {"semantic_duplicates"}


@dataclass
class DataReport:
    verdict: Verdict
    findings: list[Finding]
    records: list[Record]
    splits: dict[str, str]
    files: list[Path]
    unreadable: bool
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.unreadable:
            return EXIT_BAD_INPUT
        if any(finding.severity == "error" for finding in self.findings):
            return EXIT_GATE_FAILED
        return EXIT_OK

    def counts(self) -> dict[str, Any]:
        by_rule: dict[str, dict[str, int]] = {}
        for finding in self.findings:
            slot = by_rule.setdefault(finding.rule, {"error": 0, "warn": 0, "info": 0})
            slot[finding.severity] += 1
        split_counts = Counter(split_of(record, self.splits) for record in self.records)
        return {
            "records": len(self.records),
            "files": len(self.files),
            "errors": sum(f.severity == "error" for f in self.findings),
            "warnings": sum(f.severity == "warn" for f in self.findings),
            "splits": {split: split_counts.get(split, 0) for split in SPLITS},
            "labels": len({r.label for r in self.records if r.label is not None}),
            "by_rule": by_rule,
        }

    def to_contract(self) -> DataCheckFile:
        """What `ftci --json data check` prints: the `DataReport` contract (ftci/contracts/)."""
        from ftci.contracts import DataReport as DataCheckFile

        return DataCheckFile(
            verdict=self.verdict, exit_code=self.exit_code, counts=self.counts(),
            findings=self.findings, files=[str(path) for path in self.files], notes=self.notes,
            seconds={stage: round(value, 3) for stage, value in self.seconds.items()})

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON of `ftci --json data check` (documented in the README)."""
        return self.to_contract().to_dict()


def configured_severity(config: FtciConfig, rule: str) -> str | None:
    """The user's severity for `rule` (error | warn | off), or None for the rule's default."""
    return config.data.checks.rules.get(rule)  # type: ignore[call-overload]


def run_checks(config: FtciConfig, root: Path, *, use_tokenizer: bool = True,
               rules: list[str] | None = None) -> DataReport:
    """Run the data quality gate over `config.data.sources` (paths relative to `root`)."""
    from ftci.data.loaders import load_sources
    from ftci.data.split import cluster_and_assign

    timings: dict[str, float] = {}
    started = time.perf_counter()
    loaded = load_sources(config.data, root)
    timings["load"] = time.perf_counter() - started
    records = loaded.records
    findings = [_parse_finding(problem) for problem in loaded.problems]

    started = time.perf_counter()
    checks = config.data.checks
    clusters, splits = cluster_and_assign(records, config)
    timings["near_duplicates+split"] = time.perf_counter() - started

    notes: list[str] = []
    tokenizer = None
    unavailable = "not available locally"
    if use_tokenizer:
        from ftci.data.tokenizer import load_base_tokenizer
        from ftci.errors import MissingExtraError

        try:
            tokenizer = load_base_tokenizer(config, root)
        except MissingExtraError as exc:  # a lean install (the CPU data job): estimate instead
            unavailable = f"not loaded without transformers ({exc.hint})"
    if tokenizer is None:
        notes.append(f"base tokenizer for {config.base_model} {unavailable}: token "
                     "counts are estimated and the chat-template rule is skipped")
    context = CheckContext(records=records, config=config, root=root, splits=splits,
                           tokenizer=tokenizer, near_duplicate_clusters=clusters)
    for rule, module_name in RULE_MODULES.items():
        severity = configured_severity(config, rule)
        if severity == "off" or (rules is not None and rule not in rules):
            continue
        if rule in OFF_BY_DEFAULT and severity is None:
            continue
        started = time.perf_counter()
        module = importlib.import_module(f"ftci.data.checks.{module_name}")
        for finding in module.check(context):
            findings.append(_with_severity(finding, severity))
        timings[rule] = time.perf_counter() - started
    parse_severity = configured_severity(config, "parse")
    findings = [f if f.rule != "parse" else _with_severity(f, parse_severity) for f in findings
                if not (f.rule == "parse" and parse_severity == "off")]
    findings += _committed_state_findings(root)
    findings = [_redacted(finding) for finding in findings]
    verdict = verdict_for(findings, len(records), checks.recommended_examples)
    return DataReport(verdict=verdict, findings=findings, records=records, splits=splits,
                      files=list(loaded.files), unreadable=loaded.unreadable, seconds=timings,
                      notes=notes)


def _committed_state_findings(root: Path) -> list[Finding]:
    """An error, always (no severity in ftci.yaml can lower it: a pull request controls that
    file), when git tracks files under the state directory: state there is never read
    (ftci/state.py)."""
    from ftci.state import COMMITTED_STATE_HINT, committed_state, committed_state_message

    tracked = committed_state(root)
    if not tracked:
        return []
    return [Finding(rule="committed_state", severity="error",
                    message=f"{committed_state_message(tracked)}; {COMMITTED_STATE_HINT}",
                    records=[RecordRef(id="", file=path, line=1) for path in tracked[:20]],
                    details={"paths": tracked[:200], "count": len(tracked)})]


def _with_severity(finding: Finding, severity: str | None) -> Finding:
    """Configured severities re-grade error and warn findings; info stays info."""
    if severity in ("error", "warn") and finding.severity != "info":
        finding.severity = severity  # type: ignore[assignment]
    return finding


def _redacted(finding: Finding) -> Finding:
    """The finding with secrets and PII in its text redacted (the `pii` rule's own findings are
    already redacted, and stay as they are): every renderer and `--json` read findings from
    here, so none can show what a record holds. Record ids are redacted too (an explicit id can
    be an e-mail address); file names are the repository's own and stay exact, so that
    `file:line` and annotations point at the file (the loader escaped their control
    characters)."""
    from ftci.redact import redact_text, redact_value

    finding.message = redact_text(finding.message)
    finding.details = redact_value(finding.details)
    finding.records = [RecordRef(id=redact_text(ref.id), file=ref.file, line=ref.line)
                       for ref in finding.records]
    return finding


def _parse_finding(problem: Any) -> Finding:
    message = problem.message + (f" ({problem.hint})" if getattr(problem, "hint", None) else "")
    return Finding(rule="parse", severity="error", message=message,
                   records=[RecordRef(id="", file=str(problem.file), line=problem.line or 0)])
