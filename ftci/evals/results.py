"""results.json: everything one eval run measured, for reports and for later comparison.

Its shape is the `EvalResults` contract (ftci/contracts/results.py; `ftci schema results`):
{schema_version, schema, ftci_version, created_at, config, passed, exit_status,
 candidate / baseline: {spec, description, backend, identity, details},
 eval_sets: {split: {hash, n}},
 gates: [{test, gate, metric, passed, value, n, interval, confidence, threshold, baseline,
          comparison, message, worst, eval_set_hash, family, p_value, p_adjusted,
          hypothesis, bound, strict, items: [{id, score, output, expected,
          baseline_score?, baseline_output?, input, digest}]}],
 tests: {nodeid: passed|failed|error|skipped}, family: {method, alpha, members, failed},
 bad_input: [messages],
 infra_errors: [messages]}

Every string in it is redacted (ftci/redact.py): items hold test inputs, references and model
outputs, node ids hold parametrised labels, and results.json is uploaded and rendered.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftci.evals.session import EvalSession

def build_results(state: EvalSession, outcomes: dict[str, str], exit_status: int
                  ) -> dict[str, Any]:
    """The JSON of results.json, validated against the contract it promises."""
    from ftci import __version__
    from ftci.contracts import EvalResults
    from ftci.redact import redact_value

    records = state.records
    models: dict[str, Any] = {}
    for role, model in state._models.items():
        ref = model.ref
        identity = ref.identity
        models[role] = {"spec": ref.spec, "description": ref.description,
                        "backend": ref.backend, "identity": identity, "details": ref.details}
    gates = [record.to_dict() for record in records]
    failed_tests = [node for node, outcome in outcomes.items() if outcome in ("failed", "error")]
    results = _finite(redact_value({
        "schema_version": EvalResults.VERSION,
        "schema": 1,  # what readers before schema_version saw
        "ftci_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": str(state._loaded.path) if state._loaded is not None else None,
        "passed": not failed_tests and all(gate["passed"] for gate in gates),
        "exit_status": int(exit_status),
        "candidate": models.get("candidate"),
        "baseline": models.get("baseline"),
        "eval_sets": {split: {"hash": testset.hash, "n": len(testset)}
                      for split, testset in state._testsets.items()},
        "gates": gates,
        "tests": dict(sorted(outcomes.items())),
        "family": state.family,  # {method, alpha, members, failed}, or None (no member)
        "bad_input": list(state.bad_input),
        "infra_errors": list(state.infra_errors),
    }))
    return EvalResults.from_dict(results, source="results.json").to_dict()


def _finite(value: Any) -> Any:
    """JSON has no Infinity or NaN (Python writes them, strict parsers refuse them): an
    undetectable effect or an unbounded interval end is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
