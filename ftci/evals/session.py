"""The eval session: what one evaluation shares (config, test sets, models, the output cache
and the recorder its expectations go to).

No pytest here: the plugin (ftci/evals/plugin.py) creates one per pytest session and closes it
at the end, and code outside pytest (a scheduled regression, tests) uses it directly:

    with EvalSession("ftci.yaml", candidate_spec=run_dir) as session:
        verdicts = evaluate_gates(session, session.loaded.config.eval.gates)
        session.settle()  # the family's verdicts
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.evals.expect import Recorder

if TYPE_CHECKING:
    from contextvars import Token

    from ftci.config.loader import LoadedConfig
    from ftci.evals.expect import GateRecord
    from ftci.evals.model import EvalModel, PromptSetting
    from ftci.evals.testset import Testset


@dataclass(eq=False)
class EvalSession:
    """The config, test sets, models and output cache one evaluation shares, loaded lazily.

    `defer_family` (the default, as in `ftci eval`): the family's verdicts wait for
    `settle()`; otherwise each expectation decides at once (a plain pytest run)."""

    config_path: str | Path | None = None
    overrides: Sequence[str] = ()
    candidate_spec: str | None = None  # default: the latest training run
    baseline_spec: str | None = None  # default: eval.baseline
    limit: int | None = None  # only the first N items of each split
    use_cache: bool = True
    defer_family: bool = True
    started: float = field(default_factory=time.time)
    bad_input: list[str] = field(default_factory=list)
    infra_errors: list[str] = field(default_factory=list)
    recorder: Recorder = field(init=False)
    family: dict[str, Any] | None = None  # how the family was settled (results.json)
    outcomes: dict[str, str] = field(default_factory=dict)  # test id -> passed|failed|...
    _loaded: Any = None
    _prompt: Any = None
    _testsets: dict[str, Any] = field(default_factory=dict)
    _models: dict[str, Any] = field(default_factory=dict)
    _cache: Any = None
    _outputs: dict[tuple[str, str, str], list[Any]] = field(default_factory=dict)
    _activation: list[Token[Recorder | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recorder = Recorder(family=self.defer_family)

    @property
    def records(self) -> list[GateRecord]:
        """Every expectation recorded in this session, in order."""
        return self.recorder.records

    @property
    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            from ftci.config import load_config

            self._loaded = load_config(self.config_path, self.overrides, lint=False)
            self.recorder.min_items = self._loaded.config.eval.min_items
        return self._loaded

    def testset(self, split: str) -> Testset:
        if split not in self._testsets:
            from ftci.evals.testset import load_testset
            from ftci.state import split_path

            config = self.loaded.config
            path = split_path(self.loaded.root, split)
            testset = load_testset(path, name=split, labels=config.task.labels,
                                   system_prompt=self.prompt().system_prompt,
                                   task_type=config.task.type, limit=self.limit)
            if not len(testset):
                from ftci.errors import BadInputError

                raise BadInputError(f"{path} holds no items",
                                    hint="add data or change data.split so the split is "
                                         "not empty")
            self._testsets[split] = testset
        return self._testsets[split]

    @property
    def cache(self) -> Any:
        if self._cache is None and self.use_cache:
            from ftci.evals.cache import OutputCache, cache_path

            self._cache = OutputCache(cache_path(self.loaded.root))
        return self._cache

    def prompt(self) -> PromptSetting:
        """The chat template and system prompt the candidate is evaluated with (a run's own,
        else ftci.yaml's): the baseline and the test set get the same, so a paired comparison
        never mixes a model change with a prompt change."""
        if self._prompt is None:
            from ftci.errors import BadInputError
            from ftci.evals.resolve import candidate_prompt, config_prompt

            try:
                self._prompt = candidate_prompt(self.candidate_spec, self.loaded)
            except BadInputError:  # no candidate yet: a suite may use the test set alone
                self._prompt = config_prompt(self.loaded)
        return self._prompt

    def model(self, role: str) -> EvalModel:
        if role not in self._models:
            from ftci.evals.model import EvalModel
            from ftci.evals.resolve import resolve_model

            spec = {"candidate": self.candidate_spec, "base": "base",
                    "baseline": self.baseline_spec or self.loaded.config.eval.baseline}[role]
            prompt = None if role == "candidate" else self.prompt()
            self._models[role] = EvalModel(
                resolve_model(spec, role=role, loaded=self.loaded, prompt=prompt), self.cache,
                max_new_tokens=self.loaded.config.eval.max_new_tokens)
        return self._models[role]

    def outputs(self, role: str, split: str) -> list[Any]:
        """The task's default outputs for a split: labels (classification) or generations."""
        key = (role, split, "default")
        if key not in self._outputs:
            model, testset = self.model(role), self.testset(split)
            if testset.task_type == "classification":
                self._outputs[key] = model.classify(testset)
            else:
                self._outputs[key] = model.generate(testset)
        return self._outputs[key]

    def settle(self) -> list[str]:
        """Decide the family's verdicts now that every member's p-value is known (Holm at
        `eval.alpha`, or each alone with `eval.multiplicity: none`; ftci/evals/family.py),
        once; returns the tests (keys of `outcomes`) whose gate the family failed, now
        marked failed there."""
        from ftci.evals.family import settle_family
        from ftci.redact import redact_text

        members = [record for record in self.records if record.family]
        if not members or self.family is not None:
            return []
        try:
            evaluation = self.loaded.config.eval
            alpha, method = evaluation.alpha, evaluation.multiplicity
        except Exception:  # noqa: BLE001 - the config failed earlier; that error is reported
            alpha, method = 0.05, "holm"
        self.family = settle_family(members, alpha=alpha, method=method)
        failed = {record.test for record in members if not record.passed}
        tests = [test for test in self.outcomes if redact_text(test) in failed]
        for test in tests:
            self.outcomes[test] = "failed"
        return tests

    # ---- lifetime ------------------------------------------------------------------------------
    def activate(self) -> None:
        """Send suites' `expect()` calls to this session's recorder until `deactivate` (a
        session inside a session, as pytester runs them, restores the outer one then)."""
        self._activation.append(self.recorder.activate())

    def deactivate(self) -> None:
        if self._activation:
            self.recorder.deactivate(self._activation.pop())

    def close(self) -> None:
        """Release the models and the output cache."""
        for model in self._models.values():
            model.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> EvalSession:
        self.activate()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.close()
        finally:
            self.deactivate()
