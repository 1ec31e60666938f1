"""`ftci release`: the steps from an evaluated candidate to a tagged version in a registry.

    keys -> version -> candidate -> merge -> check -> quantize -> gate -> assemble (card,
    manifest) -> publish (registry) -> alias candidate -> tag (push) -> GitHub Release

Decisions:
- **Idempotent.** The version is decided from the registry before any work (ftci/release/
  version.py): the same commit or the same release key is "already released as vX.Y.Z", exit 0;
  the later steps (tag, push, GitHub Release) are then completed if a crash cut them short.
- **Resumable.** Work happens in the state directory's `releases/<version>-<release key>/`;
  each step's output appears by an atomic rename when the step is done, so a rerun after
  `kill -9` skips what finished and redoes only the step that was cut. Publishing is
  idempotent per version (registry/base.py).
- **Serve what you evaluated.** The gate evaluates the quantized files that ship, through the
  engine that serves them; its per-item results ship beside them.
- `dry_run` does every step up to the gate in a temporary directory that is removed, and
  writes nothing to the registry, git or GitHub.
- A patch release (same model key) reuses the previous version's artifact bytes instead of
  quantizing again; it still merges (for the gate) and runs the gate on today's test split.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError, GateFailed, InfraError
from ftci.release import layout

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.contracts.release import GateSummary, ReleaseManifest
    from ftci.release.candidate import Candidate
    from ftci.release.registry.base import Registry

MERGE_CHECK_PROMPTS = 8
RECORD_FILES = (layout.CARD, layout.EVAL_RESULTS, layout.QUANT_RESULTS)  # no weights
SHOWN_WORST = 5


@dataclass
class ReleaseOutcome:
    """What `ftci --json release` prints."""

    version: str
    tag: str
    released: bool
    already: bool
    dry_run: bool
    registry: str
    release_dir: str | None = None
    bump: str | None = None
    previous: str | None = None
    files: dict[str, int] = field(default_factory=dict)  # path -> bytes
    sizes: dict[str, int] = field(default_factory=dict)  # adapter | merged | model -> bytes
    steps: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    github_release: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "released": self.released, "already": self.already,
                "dry_run": self.dry_run, "version": self.version, "tag": self.tag,
                "bump": self.bump, "previous": self.previous, "registry": self.registry,
                "release_dir": self.release_dir, "files": self.files, "sizes": self.sizes,
                "steps": self.steps, "quantization_gate": self.gate, "notes": self.notes,
                "github_release": self.github_release}


@dataclass
class Release:
    """One `ftci release` invocation: the config, the keys, the work directory, the timings."""

    loaded: LoadedConfig
    dry_run: bool = False
    push: bool = True
    pr: int | None = None
    by: str = field(default_factory=lambda: actor())
    on_step: Callable[[str, float], None] | None = None
    steps: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.loaded.root

    @property
    def project(self) -> str:
        return self.loaded.config.project.name

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        seconds = round(time.perf_counter() - started, 3)
        self.steps[name] = round(self.steps.get(name, 0.0) + seconds, 3)
        if self.on_step is not None:
            self.on_step(name, seconds)


def run_release(loaded: LoadedConfig, *, dry_run: bool = False, push: bool = True,
                pr: int | None = None,
                on_step: Callable[[str, float], None] | None = None) -> ReleaseOutcome:
    """Release the candidate of `loaded`'s repository at HEAD (see the module docstring)."""
    from ftci.release.registry import open_registry
    from ftci.state import refuse_committed_state

    refuse_committed_state(loaded.root)
    _quiet_libraries()
    job = Release(loaded, dry_run=dry_run, push=push,
                  pr=pr if pr is not None else _env_pr(loaded.root), on_step=on_step)
    registry = open_registry(loaded.config.release, project=job.project, root=loaded.root)
    try:
        return _release(job, registry)
    finally:
        registry.close()


def _release(job: Release, registry: Registry) -> ReleaseOutcome:
    from ftci.release.version import Released, decide

    config = job.loaded.config
    with job.step("keys"):
        commit = _head_commit(job.root)
        keys = release_keys(job.loaded)
        released = [Released(v.version, v.commit, v.release_key) for v in registry.versions()]
        decision = decide(released, setting=config.release.version, commit=commit,
                          model_key=keys["model_key"], release_key=keys["release_key"])
    tag = layout.tag_name(job.project, decision.version)
    location = _location(registry)
    if decision.already:
        outcome = ReleaseOutcome(decision.version, tag, released=False, already=True,
                                 dry_run=job.dry_run, registry=location, bump="already",
                                 previous=decision.previous, steps=job.steps, notes=job.notes)
        if not job.dry_run:
            _finish_publication(job, registry, decision.version, commit, outcome)
        return outcome

    if job.dry_run:
        scratch = Path(tempfile.mkdtemp(prefix="ftci-release-dry-"))
        work = scratch / keys["release_key"][:16]
    else:
        from ftci.state import releases_dir

        scratch = None
        work = releases_dir(job.root) / f"{decision.version}-{keys['release_key'][:12]}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        release_dir, manifest = _build(job, registry, decision, keys, commit, work)
        outcome = ReleaseOutcome(
            decision.version, tag, released=not job.dry_run, already=False,
            dry_run=job.dry_run, registry=location, bump=decision.bump,
            previous=decision.previous, steps=job.steps, notes=job.notes,
            files={path: entry.size for path, entry in manifest.files.items()},
            sizes=_sizes(manifest),
            gate=manifest.quantization_gate.to_dict() if manifest.quantization_gate else None)
        if job.dry_run:
            return outcome
        with job.step("publish"):
            published = registry.publish(release_dir, by=job.by)
        outcome.release_dir = published.location
        _finish_publication(job, registry, decision.version, commit, outcome)
        return outcome
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


# ---- keys -----------------------------------------------------------------------------------
ARTIFACT_SETTINGS = ("merge_adapter", "quantization", "calibration", "calibration_items")


def release_keys(loaded: LoadedConfig) -> dict[str, Any]:
    """The run key, the model key (run key + the settings that shape the files) and the release
    key (`<model key>.<evidence key>`; the evidence: eval config, suites' files, test split,
    the gate's settings)."""
    from ftci.digests import canonical_json, sha256_file, sha256_text
    from ftci.evals.runner import resolve_suites
    from ftci.release.version import release_key
    from ftci.train.runkey import compute_run_inputs

    config = loaded.config
    inputs = compute_run_inputs(loaded, loaded.root)
    release = config.release.model_dump(mode="json")
    model_key = sha256_text(canonical_json(
        {"run_key": inputs.key, **{name: release[name] for name in ARTIFACT_SETTINGS}}))[:32]
    suites: dict[str, str] = {}
    for suite in resolve_suites([s for s in config.eval.suites if not s.startswith("builtin:")],
                                loaded.root):
        files = sorted(suite.rglob("*.py")) if suite.is_dir() else [suite]
        for path in files:
            suites[str(path.relative_to(loaded.root))] = sha256_file(path)
    evidence = {
        "eval": config.eval.model_dump(mode="json"),
        "builtin_suites": [s for s in config.eval.suites if s.startswith("builtin:")],
        "suites": suites,
        "test": inputs.split_sha256.get("test"),
        "gate": {name: release[name] for name in ("max_quantization_drop", "metric")},
        "version": release["version"],
    }
    evidence_key = sha256_text(canonical_json(evidence))[:32]
    return {"run_key": inputs.key, "inputs": inputs, "model_key": model_key,
            "evidence_key": evidence_key, "release_key": release_key(model_key, evidence_key)}


# ---- the build ------------------------------------------------------------------------------
def _build(job: Release, registry: Registry, decision: Any, keys: dict[str, Any],
           commit: str | None, work: Path) -> tuple[Path, ReleaseManifest]:
    from ftci.contracts import EvalResults
    from ftci.contracts.release import QuantizationInfo, ReleaseManifest

    config = job.loaded.config
    release = config.release
    run_key = keys["run_key"]
    with job.step("candidate"):
        candidate = _candidate(job, run_key, work)
    eval_results = EvalResults.read(candidate.results_path) if candidate.results_path else None
    manifest_of_run = json.loads((candidate.run_dir / "manifest.json").read_text("utf-8"))
    method = config.train.method
    base_dir = _base_dir(job, manifest_of_run)
    adapter_dir = candidate.run_dir / ("model" if method == "full" else "adapter")

    staged = work / "release"
    staged.mkdir(exist_ok=True)
    merged_dir = work / "merged"
    if release.merge_adapter and method != "full":
        with job.step("merge"):
            if not merged_dir.is_dir():
                from ftci.release.merge import merge_adapter

                merge_adapter(base_dir, adapter_dir, merged_dir, method=method,
                              quantization=config.train.quantization)
        with job.step("merge_check"):
            _check_merge(job, base_dir, adapter_dir, merged_dir, method)
    elif method == "full":
        merged_dir = adapter_dir
    else:
        merged_dir = adapter_dir  # quantization: none with the adapter alone (schema-checked)

    model_dir = staged / layout.MODEL
    info: QuantizationInfo
    with job.step("quantize"):
        if release.merge_adapter or method == "full":
            info = _quantize(job, registry, decision, merged_dir, model_dir, work)
        else:
            info = QuantizationInfo(scheme="none", serve_flags={
                "vllm": ["--enable-lora"], "tgi": []})
    gate: GateSummary | None
    with job.step("quantization_gate"):
        gate = _gate(job, merged_dir, model_dir, info, work) if model_dir.is_dir() else None
    if gate is not None and not gate.passed and not gate.skipped:
        raise GateFailed(_gate_message(gate))

    with job.step("assemble"):
        if method != "full":
            _copy_tree(adapter_dir, staged / layout.ADAPTER)
        if candidate.results_path is not None:
            (staged / layout.EVAL_RESULTS).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate.results_path, staged / layout.EVAL_RESULTS)
        quant_results = work / "gate" / "results.json"
        if quant_results.is_file():
            (staged / layout.QUANT_RESULTS).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(quant_results, staged / layout.QUANT_RESULTS)
        manifest = _manifest(job, decision, keys, commit, candidate, manifest_of_run, info,
                             gate, eval_results, merged_dir, staged)
        previous = _previous_manifest(registry, decision.previous, work)
        _write_card(job, manifest, eval_results, previous, registry, work, staged)
        manifest.files = _files(staged)
        manifest.steps = dict(job.steps)
        from ftci.io import atomic_write_text

        atomic_write_text(staged / layout.MANIFEST,
                          json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n")
        manifest = ReleaseManifest.read(staged / layout.MANIFEST)
    return staged, manifest


def _candidate(job: Release, run_key: str, work: Path) -> Candidate:
    from ftci.release.candidate import find_candidate, where_looked

    candidate = find_candidate(job.root, run_key, work)
    if (candidate is None or candidate.results_path is None) and \
            job.loaded.config.release.on_missing_candidate == "retrain" and not job.dry_run:
        from ftci.pipeline import run_pipeline

        job.notes.append(f"no evaluated run {run_key[:12]}: trained and evaluated it here "
                         "(release.on_missing_candidate: retrain)")
        result = run_pipeline(job.loaded.path, start="data", until="eval")
        if result.exit_code != 0:
            raise GateFailed(f"retraining run {run_key[:12]} for the release failed "
                             f"(exit {result.exit_code}); see {result.report_dir}")
        candidate = find_candidate(job.root, run_key, work)
    if candidate is None:
        raise GateFailed(
            f"no candidate to release: no training run with main's run key {run_key[:12]} in "
            f"{where_looked(job.root, run_key)}. The pull request's train-eval job trains and "
            "evaluates it; a merge whose data or config differs from the PR head's has "
            "another key. Fix: rerun the PR workflow on the merged commit, run `ftci run` "
            "here, or set release.on_missing_candidate: retrain")
    if candidate.results_path is None:
        raise GateFailed(
            f"run {run_key[:12]} ({candidate.source}) has no passing eval results: no "
            "results.json that evaluated it as the candidate with every gate passing",
            hint="run `ftci eval` (or `ftci run`) on it first; a release ships only what "
                 "the gates approved")
    return candidate


def _base_dir(job: Release, run_manifest: dict[str, Any]) -> Path:
    recorded = run_manifest.get("base_model_path")
    if isinstance(recorded, str) and Path(recorded).is_dir():
        return Path(recorded)
    from ftci.models.starter import resolve_base_model

    return Path(resolve_base_model(job.loaded.config.base_model, job.root))


def _check_merge(job: Release, base_dir: Path, adapter_dir: Path, merged_dir: Path,
                 method: str) -> None:
    marker = merged_dir.parent / "merge-check.json"
    if marker.is_file():
        return
    from ftci.data.split import read_split
    from ftci.io import atomic_write_text
    from ftci.release.merge import check_merge
    from ftci.state import split_path

    prompts = []
    for record in read_split(split_path(job.root, "test"))[:MERGE_CHECK_PROMPTS]:
        users = [m["content"] for m in record.get("messages", []) if m.get("role") == "user"]
        if users:
            prompts.append(users[-1])
    check = check_merge(base_dir, adapter_dir, merged_dir, method=method,
                        quantization=job.loaded.config.train.quantization, prompts=prompts)
    if not check.passed:
        raise InfraError(
            f"the merged model's logits differ from base+adapter's by up to "
            f"{check.max_abs_logit_diff:.3g} (tolerance {check.tolerance:.3g}) on "
            f"{len(prompts)} test prompts: the merge changed the model",
            hint="report this with FTCI_DEBUG=1 output; release with release.merge_adapter: "
                 "false and quantization: none to ship the adapter alone")
    atomic_write_text(marker, json.dumps({
        "max_abs_logit_diff": check.max_abs_logit_diff,
        "mean_abs_logit_diff": check.mean_abs_logit_diff,
        "argmax_agreement": check.argmax_agreement, "tolerance": check.tolerance,
        "prompts": len(prompts)}, indent=2) + "\n")
    job.notes.append(f"merge check: max |logit diff| {check.max_abs_logit_diff:.2g} "
                     f"<= {check.tolerance:.2g} on {len(prompts)} test prompts")


def _quantize(job: Release, registry: Registry, decision: Any, merged_dir: Path,
              model_dir: Path, work: Path) -> Any:
    from ftci.contracts.release import QuantizationInfo
    from ftci.io import atomic_write_text

    info_path = work / "quantization.json"
    if model_dir.is_dir() and info_path.is_file():
        return QuantizationInfo.model_validate_json(info_path.read_text("utf-8"))
    release = job.loaded.config.release
    if decision.reuse is not None:
        info = _reuse_artifact(registry, decision.reuse, model_dir, work)
        job.notes.append(f"patch release: the model files of v{decision.reuse} are reused "
                         "(same run and release settings)")
    else:
        from ftci.release.quantize import quantize

        result = quantize(merged_dir, model_dir, scheme=release.quantization,
                          calibration=release.calibration,
                          calibration_chats=_calibration_chats(job, release.calibration_items),
                          max_seq_len=job.loaded.config.train.max_seq_len, root=job.root)
        info = result.info
    atomic_write_text(info_path, json.dumps(info.to_dict(), indent=2) + "\n")
    return info


def _reuse_artifact(registry: Registry, version: str, model_dir: Path, work: Path) -> Any:
    from ftci.contracts.release import ReleaseManifest

    fetched = work / f"previous-{version}"
    if not (fetched / layout.MANIFEST).is_file():
        shutil.rmtree(fetched, ignore_errors=True)
        registry.fetch(version, fetched)
    previous = ReleaseManifest.read(fetched / layout.MANIFEST)
    _copy_tree(fetched / layout.MODEL, model_dir)
    return previous.quantization


def _calibration_chats(job: Release, count: int) -> list[list[dict[str, str]]]:
    if job.loaded.config.release.calibration == "data-free":
        return []
    from ftci.data.split import read_split
    from ftci.state import split_path

    chats = []
    for record in read_split(split_path(job.root, "train"))[:count]:
        messages = record.get("messages")
        if isinstance(messages, list) and messages:
            chats.append([{"role": str(m["role"]), "content": str(m["content"])}
                          for m in messages])
    if job.loaded.config.task.system_prompt:
        system = {"role": "system", "content": job.loaded.config.task.system_prompt}
        chats = [chat if chat[0]["role"] == "system" else [system, *chat] for chat in chats]
    return chats


def _gate(job: Release, merged_dir: Path, model_dir: Path, info: Any,
          work: Path) -> GateSummary | None:
    from ftci.contracts.release import GateSummary

    release = job.loaded.config.release
    summary_path = work / "gate" / "summary.json"
    if summary_path.is_file():
        return GateSummary.model_validate_json(summary_path.read_text("utf-8"))
    scheme = info.scheme
    alpha = job.loaded.config.eval.alpha
    from ftci.release.qgate import default_gate_metric

    metric = default_gate_metric(job.loaded.config)
    skipped: str | None = None
    if scheme == "none":
        skipped = "nothing quantized: the served model is the merged one the PR evaluated"
    elif scheme == "bnb-nf4":
        skipped = ("bnb-nf4 quantizes at load in TGI, which cannot run here: the merged 16-bit "
                   "weights ship and no quantized outputs were measured")
    if skipped is None:
        from ftci.release.quantize import cpu_servable

        if not cpu_servable(scheme) and not _cuda():
            raise BadInputError(
                f"release.quantization {scheme}: the quantization gate evaluates the artifact "
                "through the engine that serves it, and vLLM serves it only on a GPU "
                "(this machine has none)",
                hint="run the release on the GPU runner, or use w8a8-int8 (served on CPUs too)")
        from ftci.release.qgate import run_quantization_gate

        gate = run_quantization_gate(job.loaded, merged_dir, model_dir,
                                     work / "gate" / "results.json", metric=metric,
                                     margin=release.max_quantization_drop)
    else:
        gate = GateSummary(metric=metric, engine="none", items=0, delta=0.0,
                           margin=release.max_quantization_drop, alpha=alpha, passed=True,
                           skipped=skipped)
    from ftci.io import atomic_write_text

    summary_path.parent.mkdir(parents=True, exist_ok=True)
    if gate.passed or gate.skipped:
        atomic_write_text(summary_path, json.dumps(gate.to_dict(), indent=2) + "\n")
    return gate


def _gate_message(gate: GateSummary) -> str:
    from ftci.release.tables import gate_lines

    lines = [gate_lines(gate)[0].replace("**", "") + " (release.max_quantization_drop)"]
    for item in gate.worst[:SHOWN_WORST]:
        lines.append(f"  - {item.get('id') or item.get('digest', '')[:12]}: expected "
                     f"{item.get('expected')!r}, merged {item.get('merged')!r}, quantized "
                     f"{item.get('quantized')!r}")
    lines.append("Fix: calibrate on more items (release.calibration_items), use "
                 "release.calibration: smoothquant-gptq, or another release.quantization")
    return "\n".join(lines)


def _manifest(job: Release, decision: Any, keys: dict[str, Any], commit: str | None,
              candidate: Candidate, run_manifest: dict[str, Any], info: Any,
              gate: GateSummary | None, eval_results: Any, merged_dir: Path,
              staged: Path) -> ReleaseManifest:
    from ftci import __version__
    from ftci.contracts.release import ReleaseManifest
    from ftci.digests import canonical_json, sha256_file, sha256_text

    config = job.loaded.config
    inputs = keys["inputs"]
    adapter = staged / layout.ADAPTER
    digests: dict[str, str | None] = {
        "config": sha256_file(job.loaded.path),
        "resolved_config": sha256_text(canonical_json(config.model_dump(mode="json"))),
        **{f"data.{split}": inputs.split_sha256.get(split) for split in ("train", "val", "test")},
        "base_model": inputs.base_model.get("digest"),
        "chat_template": inputs.chat_template,
        "adapter": _tree_digest(adapter) if adapter.is_dir() else None,
        "eval_results": sha256_file(staged / layout.EVAL_RESULTS)
        if (staged / layout.EVAL_RESULTS).is_file() else None,
        "model": _tree_digest(staged / layout.MODEL) if (staged / layout.MODEL).is_dir()
        else None,
    }
    versions = dict(inputs.versions)
    versions["ftci"] = __version__
    if info.tool:
        versions["quantizer"] = info.tool
    if gate is not None and gate.engine:
        versions["gate_engine"] = gate.engine
    merged = {} if merged_dir == staged / layout.MODEL else _files(merged_dir)
    return ReleaseManifest(
        project=job.project, version=decision.version,
        tag=layout.tag_name(job.project, decision.version), release_key=keys["release_key"],
        run_key=keys["run_key"], commit=commit, pr=job.pr,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        created_by=job.by, method=config.train.method,
        base_model={"ref": config.base_model, "digest": inputs.base_model.get("digest")},
        inputs=digests, versions=versions, quantization=info, quantization_gate=gate,
        merged=merged, eval=_eval_summary(eval_results), previous=decision.previous,
        bump=decision.bump, candidate=candidate.source,
        model_key=keys["model_key"])


def _eval_summary(results: Any) -> dict[str, Any]:
    if results is None:
        return {}
    return {"passed": results.all_passed, "created_at": results.created_at,
            "gates": [{"gate": gate.gate, "metric": gate.metric, "value": gate.value,
                       "interval": gate.interval, "baseline": gate.baseline_value,
                       "delta": gate.delta, "passed": gate.passed, "n": gate.n}
                      for gate in results.gates],
            "eval_sets": {name: each.to_dict() for name, each in results.eval_sets.items()}}


def _previous_manifest(registry: Registry, version: str | None,
                       work: Path) -> ReleaseManifest | None:
    if version is None:
        return None
    from ftci.contracts.release import ReleaseManifest

    fetched = _record_dir(work, version)
    if not (fetched / layout.MANIFEST).is_file():
        shutil.rmtree(fetched, ignore_errors=True)
        registry.fetch(version, fetched, only=RECORD_FILES)
    return ReleaseManifest.read(fetched / layout.MANIFEST)


def _record_dir(work: Path, version: str) -> Path:
    """Where the previous version's manifest and eval results are fetched (not its model)."""
    return work / f"previous-{version}-record"


def _write_card(job: Release, manifest: ReleaseManifest, eval_results: Any,
                previous: ReleaseManifest | None, registry: Registry, work: Path,
                staged: Path) -> None:
    from ftci.contracts import EvalResults
    from ftci.io import atomic_write_text
    from ftci.release.card import render_model_card

    previous_eval = None
    if previous is not None:
        path = _record_dir(work, previous.version) / layout.EVAL_RESULTS
        previous_eval = EvalResults.read(path) if path.is_file() else None
    relation = "quantized" if manifest.quantization.scheme not in ("none", "bnb-nf4") else (
        "finetune" if job.loaded.config.release.merge_adapter else "adapter")
    card = render_model_card(manifest, config=job.loaded.config, eval_results=eval_results,
                             data_report=_data_report(job), previous=previous,
                             previous_eval=previous_eval, relation=relation)
    atomic_write_text(staged / layout.CARD, card)


def _data_report(job: Release) -> Any:
    from ftci.data.check import run_checks

    return run_checks(job.loaded.config, job.root).to_contract()


# ---- after publishing -----------------------------------------------------------------------
def _finish_publication(job: Release, registry: Registry, version: str, commit: str | None,
                        outcome: ReleaseOutcome) -> None:
    """The candidate alias, the git tag (pushed) and the GitHub Release: each idempotent, so a
    rerun after a crash completes them."""
    # Once per version: a rerun after a crash between publishing and here sets it; a rerun
    # after `promote` moved things on does not move it back.
    if not any(event.version == version for event in registry.alias_history("candidate")):
        registry.set_alias("candidate", version, by=job.by, reason="released")
    if commit is None:
        outcome.notes.append("not a git repository: no tag")
        return
    from ftci.contracts.release import ReleaseManifest
    from ftci.release import gitops

    fetched = Path(tempfile.mkdtemp(prefix="ftci-release-"))
    try:
        with job.step("tag"):
            record = registry.get(version)
            tag_commit = record.commit if record is not None and record.commit else commit
            created = gitops.create_tag(job.root, outcome.tag, tag_commit,
                                        f"{job.project} v{version}\n\nReleased by ftci.")
            if created:
                outcome.notes.append(f"tagged {outcome.tag} on {tag_commit[:12]}")
            if job.push and _has_remote(job.root, "origin"):
                gitops.push_tag(job.root, outcome.tag, remote="origin",
                                token=os.environ.get("GITHUB_TOKEN"))
        token, repository = os.environ.get("GITHUB_TOKEN"), os.environ.get("GITHUB_REPOSITORY")
        if token and repository:
            with job.step("github_release"):
                registry.fetch(version, fetched / "this", only=RECORD_FILES)
                manifest = ReleaseManifest.read(fetched / "this" / layout.MANIFEST)
                outcome.github_release = _github_release(job, registry, manifest, fetched,
                                                         token, repository, outcome)
    finally:
        shutil.rmtree(fetched, ignore_errors=True)


def _github_release(job: Release, registry: Registry, manifest: ReleaseManifest, fetched: Path,
                    token: str, repository: str, outcome: ReleaseOutcome) -> str | None:
    from ftci.contracts import EvalResults
    from ftci.release.github import GitHubReleases
    from ftci.release.notes import render_release_notes

    this_eval = fetched / "this" / layout.EVAL_RESULTS
    previous = previous_eval = None
    if manifest.previous:
        registry.fetch(manifest.previous, fetched / "previous", only=RECORD_FILES)
        from ftci.contracts.release import ReleaseManifest

        previous = ReleaseManifest.read(fetched / "previous" / layout.MANIFEST)
        path = fetched / "previous" / layout.EVAL_RESULTS
        previous_eval = EvalResults.read(path) if path.is_file() else None
    diff = _data_diff(job, previous.tag if previous else None, manifest.tag)
    server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
    links = {"registry": outcome.registry,
             "tag": f"{server}/{repository}/tree/{manifest.tag}"}
    if manifest.pr:
        links["pull request"] = f"{server}/{repository}/pull/{manifest.pr}"
    body = render_release_notes(manifest, eval_results=EvalResults.read(this_eval)
                                if this_eval.is_file() else None, previous=previous,
                                previous_eval=previous_eval, data_diff=diff, links=links)
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com")
    made = GitHubReleases(api, repository, token).create(
        manifest.tag, f"{job.project} v{manifest.version}", body,
        target_commitish=manifest.commit or "")
    return str(made.get("html_url") or made.get("url") or "") or None


def _data_diff(job: Release, previous_tag: str | None, tag: str) -> str | None:
    """`ftci data diff <previous tag> <this tag>` as Markdown; None for a first release or when
    the previous tag is not in this clone."""
    if previous_tag is None:
        return None
    from ftci.data.diff import DiffSide, diff_data, render_diff_markdown

    try:
        diff = diff_data(DiffSide(revision=previous_tag), DiffSide(revision=tag),
                         job.loaded.path)
    except BadInputError as exc:
        job.notes.append(f"no data diff since {previous_tag}: {exc}")
        return None
    return render_diff_markdown(diff)


# ---- small helpers --------------------------------------------------------------------------
def _files(directory: Path) -> dict[str, Any]:
    from ftci.contracts.run import ArtifactFile
    from ftci.digests import sha256_file

    return {path.relative_to(directory).as_posix(): ArtifactFile(size=path.stat().st_size,
                                                                 sha256=sha256_file(path))
            for path in sorted(directory.rglob("*"))
            if path.is_file() and path.name != layout.MANIFEST}


def _tree_digest(directory: Path) -> str:
    from ftci.digests import canonical_json, sha256_text

    return sha256_text(canonical_json({path: entry.sha256
                                       for path, entry in _files(directory).items()}))


def _sizes(manifest: ReleaseManifest) -> dict[str, int]:
    sizes = {"adapter": 0, "model": 0}
    for path, entry in manifest.files.items():
        top = path.split("/", 1)[0]
        if top in sizes:
            sizes[top] += entry.size
    sizes["merged"] = sum(entry.size for entry in manifest.merged.values()) or sizes["model"]
    return sizes


def _copy_tree(source: Path, dest: Path) -> None:
    if dest.is_dir():
        return
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, ignore=shutil.ignore_patterns("checkpoints", "*.bin",
                                                                   "*.pt", "*.pth"))
    partial.rename(dest)


def _location(registry: Registry) -> str:
    return str(getattr(registry, "location", None) or registry.kind)


def _head_commit(root: Path) -> str | None:
    from ftci.release import gitops

    try:
        return gitops.head_commit(root)
    except BadInputError:
        return None


def _has_remote(root: Path, name: str) -> bool:
    import subprocess

    done = subprocess.run(["git", "-C", str(root), "remote"], capture_output=True, text=True,
                          check=False)
    return name in done.stdout.split()


def _env_pr(root: Path) -> int | None:
    """FTCI_PR_NUMBER, else in GitHub Actions the merged pull request of HEAD (a push to main
    does not carry its number)."""
    value = os.environ.get("FTCI_PR_NUMBER", "").strip()
    if value.isdigit():
        return int(value)
    token, repository = os.environ.get("GITHUB_TOKEN"), os.environ.get("GITHUB_REPOSITORY")
    commit = _head_commit(root)
    if os.environ.get("GITHUB_ACTIONS") != "true" or not (token and repository and commit):
        return None
    from ftci.release.github import pull_request_of

    try:
        return pull_request_of(os.environ.get("GITHUB_API_URL", "https://api.github.com"),
                               repository, token, commit)
    except InfraError:
        return None  # the number is provenance, not a reason to stop a release


def _quiet_libraries() -> None:
    """No progress bars or advisory warnings from transformers, huggingface_hub and the
    workers (they inherit the environment): the steps print their own lines. FTCI_DEBUG=1
    keeps them."""
    if os.environ.get("FTCI_DEBUG") == "1":
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import logging
    import warnings

    # bitsandbytes' CPU backend says it cannot fetch an optional kernel from the Hub (offline)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations inside peft


def actor() -> str:
    """Who runs this: the GitHub actor in a workflow, else the local user ("unknown" where the
    user has no passwd entry, as in some containers)."""
    if os.environ.get("GITHUB_ACTOR"):
        return os.environ["GITHUB_ACTOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _cuda() -> bool:
    import shutil as _shutil

    return _shutil.which("nvidia-smi") is not None
