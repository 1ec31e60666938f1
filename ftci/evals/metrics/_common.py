"""What every metric shares: aligning outputs with items, building results, normalising."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ftci.errors import MissingExtraError
from ftci.evals.testset import Testset, item_digest
from ftci.evals.types import Item, MetricKind, MetricResult

if TYPE_CHECKING:
    pass

Items: TypeAlias = "Testset | Sequence[Item]"

TASK_TYPES = ("classification", "extraction", "formatting", "style", "chat")
_QUOTE_PAIRS = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}
# The whole output is one fenced block: ```json ... ``` (or a bare ``` fence).
_JSON_FENCE = re.compile(r"\A\s*```(?:json)?[ \t]*\n(.*?)\n?[ \t]*```\s*\Z",
                         re.DOTALL | re.IGNORECASE)
_NOT_A_LABEL_WIDTH = 80


@dataclass(frozen=True)
class _Batch:
    items: tuple[Item, ...]
    preds: tuple[str, ...]
    eval_set_hash: str | None


def _align(name: str, preds: Sequence[str], testset: Items) -> _Batch:
    if isinstance(preds, str):
        raise TypeError(f"{name}: preds must be a sequence of outputs, one per item, not a str")
    items, outputs = tuple(testset), tuple(preds)
    if len(outputs) != len(items):
        raise ValueError(f"{name}: got {len(outputs)} predictions for {len(items)} test items; "
                         "pass exactly one output per item, in the test set's order")
    for index, output in enumerate(outputs):
        if not isinstance(output, str):
            raise TypeError(f"{name}: prediction {index} (item {items[index].id!r}) is "
                            f"{type(output).__name__}, expected str")
    return _Batch(items, outputs, testset.hash if isinstance(testset, Testset) else None)


def _result(name: str, batch: _Batch, scores: Sequence[float] | np.ndarray, *, kind: MetricKind,
            references: Sequence[str] | None = None, value: float | None = None,
            aggregate: Callable[[np.ndarray], float] | None = None,
            details: dict[str, Any] | None = None, higher_is_better: bool = True) -> MetricResult:
    item_scores = np.asarray(scores, dtype=np.float64)
    if value is None:
        value = float(item_scores.mean()) if len(item_scores) else float("nan")
    return MetricResult(
        name=name, value=value, item_scores=item_scores,
        item_ids=tuple(item.id for item in batch.items), kind=kind,
        higher_is_better=higher_is_better, aggregate=aggregate, predictions=batch.preds,
        references=tuple(references if references is not None
                         else (item.expected for item in batch.items)),
        inputs=tuple(item.input_text for item in batch.items), details=details or {},
        eval_set_hash=batch.eval_set_hash,
        item_digests=tuple(item_digest(item) for item in batch.items))


def _import_extra(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(package, "eval") from exc


def normalize_label(text: str) -> str:
    """A label as compared: surrounding whitespace stripped, inner runs collapsed, casefolded."""
    return " ".join(text.split()).casefold()


def normalize_answer(text: str) -> str:
    """exact_match's normalisation: normalize_label, then surrounding quotes, a trailing period."""
    text = normalize_label(text).removesuffix(".").rstrip()
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text.removesuffix(".").rstrip()


# -- classification -----------------------------------------------------------------------------
