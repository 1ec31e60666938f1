"""Metric functions: hand-computed cases, cross-checks against sklearn, rouge_score, sacrebleu.

Texts are banking77 test messages and NLU++ banking slot values (PolyAI, CC BY 4.0; see
../shared/datasets/README.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ftci.config.schema import KNOWN_METRICS, TaskConfig, TaskType
from ftci.errors import BadInputError, MissingExtraError
from ftci.evals import metrics
from ftci.evals.metrics import (
    METRICS,
    TASK_TYPES,
    accuracy,
    banned_phrases,
    chrf,
    class_labels,
    classification_report,
    default_metrics,
    exact_match,
    field_f1,
    field_precision,
    field_recall,
    get_metric,
    json_schema_valid,
    json_valid,
    length_ok,
    macro_f1,
    micro_f1,
    recall,
    regex_match,
    rouge_l,
)
from ftci.evals.testset import Testset
from ftci.evals.types import Item

LABELS = ("card_arrival", "top_up_failed", "exchange_rate", "lost_or_stolen_card",
          "card_not_working")
# (message, reference label, model output)
INTENTS = [
    ("How do I locate my card?", "card_arrival", "card_arrival"),
    ("I still have not received my new card, I ordered over a week ago.", "card_arrival",
     " Card_Arrival\n"),
    ("I ordered a card but it has not arrived. Help please!", "card_arrival",
     "lost_or_stolen_card"),
    ("The app denied my topped up.", "top_up_failed", "top_up_failed"),
    ("I have a top up that didn't go through.  Why?", "top_up_failed",
     "I think the top up failed."),
    ("I need to know your exchange rates.", "exchange_rate", "exchange_rate"),
    ("What exchange rates do you offer?", "exchange_rate", "card_arrival"),
    ("I can't find my card and think it may have been stolen.", "lost_or_stolen_card",
     "lost_or_stolen_card"),
    ("Someone stole my card. I need to report it stolen.", "lost_or_stolen_card",
     "card_not_working"),
    ("Is there a way to know when my card will arrive?", "card_arrival", "lost_or_stolen_card"),
]
PREDS = [pred for _, _, pred in INTENTS]


def item(number: int, text: str, expected: str, *, label: str | None = None,
         target: Any = None) -> Item:
    return Item(id=f"item-{number}", messages=({"role": "user", "content": text},),
                expected=expected, label=label, target=target)


def intents_testset(labels: tuple[str, ...] = LABELS) -> Testset:
    items = tuple(item(n, text, label, label=label) for n, (text, label, _) in enumerate(INTENTS))
    return Testset("banking77", items, labels, "classification")


def normalised(values: list[str]) -> np.ndarray:
    return np.array([" ".join(value.split()).casefold() for value in values])


def sklearn_f1(refs: np.ndarray, preds: np.ndarray, average: str, labels: Any = None) -> float:
    if labels is None:
        labels = sorted(set(refs))
    return float(f1_score(refs, preds, labels=labels, average=average, zero_division=0))


# -- classification -----------------------------------------------------------------------------

def test_accuracy_normalises_labels_and_fills_the_result() -> None:
    testset = intents_testset()
    result = accuracy(PREDS, testset)
    assert result.value == pytest.approx(0.5)
    assert result.item_scores.tolist() == [1, 1, 0, 1, 0, 1, 0, 1, 0, 0]
    assert result.kind == "proportion"
    assert result.item_ids == testset.ids
    assert result.predictions == tuple(PREDS)
    assert result.references[2] == "card_arrival"
    assert result.inputs[0] == "How do I locate my card?"
    assert result.eval_set_hash == testset.hash


def test_a_plain_item_list_has_no_eval_set_hash() -> None:
    result = accuracy(PREDS, list(intents_testset()))
    assert result.eval_set_hash is None
    assert result.value == pytest.approx(0.5)


def test_length_mismatch_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="got 9 predictions for 10 test items"):
        macro_f1(PREDS[:-1], intents_testset())


def test_macro_and_micro_f1_by_hand_and_against_sklearn() -> None:
    testset = intents_testset()
    macro, micro = macro_f1(PREDS, testset), micro_f1(PREDS, testset)
    # card_arrival 4/7, top_up_failed 2/3, exchange_rate 2/3, lost_or_stolen_card 2/5;
    # card_not_working is only predicted (support 0) and is not averaged in.
    assert macro.value == pytest.approx((4 / 7 + 2 / 3 + 2 / 3 + 2 / 5) / 4)
    # tp 5; fp 4 (the invalid output is nobody's false positive); fn 5.
    assert micro.value == pytest.approx(10 / 19)
    refs, preds = normalised([ref for _, ref, _ in INTENTS]), normalised(PREDS)
    assert macro.value == pytest.approx(sklearn_f1(refs, preds, "macro"))
    assert micro.value == pytest.approx(sklearn_f1(refs, preds, "micro", labels=list(LABELS)))
    assert macro.kind == micro.kind == "corpus"
    assert macro.item_scores.tolist() == accuracy(PREDS, testset).item_scores.tolist()


def test_f1_aggregate_on_bootstrap_indices_matches_sklearn_on_repeated_arrays() -> None:
    testset = intents_testset()
    macro, micro = macro_f1(PREDS, testset), micro_f1(PREDS, testset)
    refs, preds = normalised([ref for _, ref, _ in INTENTS]), normalised(PREDS)
    rng = np.random.default_rng(7)
    draws = [np.array([0, 0, 0, 2, 2, 5, 9])] + [rng.integers(0, len(PREDS), len(PREDS))
                                                  for _ in range(25)]
    for indices in draws:
        assert macro.value_on(indices) == pytest.approx(
            sklearn_f1(refs[indices], preds[indices], "macro"))
        assert micro.value_on(indices) == pytest.approx(
            sklearn_f1(refs[indices], preds[indices], "micro", labels=list(LABELS)))
    repeated = Testset("resampled", tuple(testset.items[i] for i in draws[0]), LABELS)
    assert macro.value_on(draws[0]) == pytest.approx(
        macro_f1([PREDS[i] for i in draws[0]], repeated).value)
    assert np.isnan(macro.value_on(np.array([], dtype=np.int64)))


def test_undeclared_labels_are_the_union_of_references_and_outputs() -> None:
    testset = intents_testset(labels=())
    refs, preds = normalised([ref for _, ref, _ in INTENTS]), normalised(PREDS)
    assert macro_f1(PREDS, testset).value == pytest.approx(sklearn_f1(refs, preds, "macro"))
    # Every output is a label now, so each miss is someone's false positive: micro = accuracy.
    assert micro_f1(PREDS, testset).value == pytest.approx(0.5)
    report = classification_report(PREDS, testset)
    assert report["labels"]["I think the top up failed."]["support"] == 0
    assert report["outside_labels"] == 0


def test_classification_report_per_label_and_confusions() -> None:
    report = classification_report(PREDS, intents_testset())
    assert report["labels"]["card_arrival"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 4, "f1": 4 / 7, "support": 4})
    assert report["labels"]["top_up_failed"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert report["labels"]["card_not_working"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                    "support": 0}
    assert report["confusions"][0] == {"expected": "card_arrival",
                                       "predicted": "lost_or_stolen_card", "count": 2}
    assert {"expected": "top_up_failed", "predicted": "i think the top up failed.",
            "count": 1} in report["confusions"]
    assert report["outside_labels"] == 1
    assert report["accuracy"] == pytest.approx(0.5)
    assert macro_f1(PREDS, intents_testset()).details == report


# -- exact match and JSON -----------------------------------------------------------------------

def test_exact_match_normalisation_and_raw_mode() -> None:
    expected = ["Your card will arrive in 3 working days", "exchange_rate", "GBP", "yes"]
    outputs = ['"your card will arrive in  3 working days."', " Exchange_Rate\n", "'gbp'.",
               "yes, it is"]
    testset = [item(n, "q", ref) for n, ref in enumerate(expected)]
    assert exact_match(outputs, testset).item_scores.tolist() == [1, 1, 1, 0]
    assert exact_match(outputs, testset, normalize=False).value == 0.0
    assert exact_match(expected, testset, normalize=False).value == 1.0


def test_json_valid_accepts_one_fenced_block_only() -> None:
    outputs = [
        '{"intent": "card_arrival"}',
        '```json\n{"intent": "card_arrival"}\n```',
        '```\n["pin", "new"]\n```\n',
        'Here you go:\n```json\n{"intent": "card_arrival"}\n```',
        '```json\n{"a": 1}\n```\n```json\n{"b": 2}\n```',
        '{"amount": NaN}',
        "card_arrival",
    ]
    result = json_valid(outputs, [item(n, "q", "{}") for n in range(len(outputs))])
    assert result.item_scores.tolist() == [1, 1, 1, 0, 0, 0, 0]


SLOT_SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "number"}, "currency": {"enum": ["GBP", "EUR", "USD"]}},
    "required": ["amount", "currency"],
}


def test_json_schema_valid_from_dict_and_file(tmp_path: Path) -> None:
    outputs = ['{"amount": 60.02, "currency": "GBP"}', '```json\n{"amount": 740, '
               '"currency": "USD"}\n```', '{"amount": "67.27", "currency": "EUR"}',
               "67.27 euros"]
    testset = [item(n, "I spent 60.02 pounds", "{}") for n in range(4)]
    result = json_schema_valid(outputs, testset, SLOT_SCHEMA)
    assert result.item_scores.tolist() == [1, 1, 0, 0]
    assert "is not of type 'number'" in result.details["errors"]["item-2"]
    assert result.details["errors"]["item-3"] == "not valid JSON"
    schema_file = tmp_path / "slots.schema.json"
    schema_file.write_text(json.dumps(SLOT_SCHEMA), encoding="utf-8")
    assert json_schema_valid(outputs, testset, str(schema_file)).value == pytest.approx(0.5)


def test_json_schema_problems_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="cannot read the JSON Schema"):
        json_schema_valid(["{}"], [item(0, "q", "{}")], tmp_path / "missing.json")
    with pytest.raises(BadInputError, match="not a valid JSON Schema"):
        json_schema_valid(["{}"], [item(0, "q", "{}")], {"type": "objekt"})


# -- field-level metrics ------------------------------------------------------------------------

def slot_testset() -> list[Item]:
    return [
        item(0, "I spent 60.02 pounds from my current account this morning.", "",
             target={"amount_of_money": {"amount": 60.02, "currency": "GBP"},
                     "time_period": "morning"}),
        # No target: the reference is the expected text as JSON; a null field is absent.
        item(1, "Standing order to latrice song for 740 dollars.",
             '{"amount_of_money": {"amount": 740, "currency": "USD"}, '
             '"person_name": "latrice song", "date_period": null}'),
        item(2, "I tried to send the money and it wasn't sent! I'm waiting already 6 days", "",
             target={"number": 6}),
        item(3, "How long does it usually take to get a new pin?", "{}"),
        item(4, "Create a new standing order.", "{}"),
        item(5, "No, I cannot do anything before 15 past 9 night.", "",
             target={"time_to": {"hour": 21, "minute": 15}}),
    ]


SLOT_OUTPUTS = [
    '```json\n{"amount_of_money": {"amount": 60.02, "currency": "gbp"}, '
    '"time_period": "this morning"}\n```',  # tp 2, fp 1, fn 1
    '{"amount_of_money": {"amount": 740.0, "currency": "USD"}, "person_name": "Latrice Song."}',
    "I could not find the amount.",  # unparseable: fn 1
    "{}",
    "Sorry, there is nothing to extract.",  # unparseable, but nothing to find
    '{"time_to": {"hour": 21, "minute": 15}, "number": 9, "currency": "GBP"}',  # tp 2, fp 2
]


def test_field_metrics_on_nested_objects() -> None:
    testset = slot_testset()
    precision = field_precision(SLOT_OUTPUTS, testset)
    recall = field_recall(SLOT_OUTPUTS, testset)
    f1 = field_f1(SLOT_OUTPUTS, testset)
    assert precision.item_scores.tolist() == pytest.approx([2 / 3, 1, 0, 1, 1, 1 / 2])
    assert recall.item_scores.tolist() == pytest.approx([2 / 3, 1, 0, 1, 1, 1])
    assert f1.item_scores.tolist() == pytest.approx([2 / 3, 1, 0, 1, 1, 2 / 3])
    # Micro over all fields: tp 7, fp 3, fn 2.
    assert precision.value == pytest.approx(7 / 10)
    assert recall.value == pytest.approx(7 / 9)
    assert f1.value == pytest.approx(14 / 19)
    fields = f1.details["fields"]
    assert fields["amount_of_money.amount"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                                "support": 2}
    assert fields["time_period"]["f1"] == 0.0
    assert "date_period" not in fields
    assert f1.references[1].startswith('{"amount_of_money"')


def test_field_aggregate_sums_counts_over_repeated_indices() -> None:
    testset = slot_testset()
    f1, precision = field_f1(SLOT_OUTPUTS, testset), field_precision(SLOT_OUTPUTS, testset)
    indices = np.array([0, 0, 5])  # tp 6, fp 4, fn 2
    assert f1.value_on(indices) == pytest.approx(12 / 18)
    assert precision.value_on(indices) == pytest.approx(6 / 10)
    repeated = [testset[i] for i in indices]
    assert f1.value_on(indices) == pytest.approx(
        field_f1([SLOT_OUTPUTS[i] for i in indices], repeated).value)


def test_field_values_compare_lists_as_multisets_and_numbers_by_value() -> None:
    references = [{"intents": ["deny", "affirm"]}, {"intents": ["deny", "deny"]},
                  {"number": 6}, {"flag": True}, {"amount": 740}]
    outputs = ['{"intents": ["Affirm", "deny"]}', '{"intents": ["deny"]}', '{"number": 6.0}',
               '{"flag": 1}', '{"amount": "740"}']
    testset = [item(n, "q", "", target=ref) for n, ref in enumerate(references)]
    assert field_f1(outputs, testset).item_scores.tolist() == [1, 0, 1, 0, 0]


def test_a_reference_that_is_not_an_object_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="item 'item-0': the reference is not a JSON object"):
        field_f1(["{}"], [item(0, "q", "card_arrival")])


# -- formatting ---------------------------------------------------------------------------------

def test_regex_match_is_a_full_match_after_stripping() -> None:
    outputs = ["GBP 60.02\n", "GBP 60.02 pounds", "gbp 60", "EUR 67.27"]
    testset = [item(n, "q", "") for n in range(len(outputs))]
    result = regex_match(outputs, testset, r"(GBP|EUR|USD) \d+(\.\d{2})?")
    assert result.item_scores.tolist() == [1, 0, 0, 1]
    with pytest.raises(BadInputError, match="not a valid regular expression"):
        regex_match(outputs, testset, "(GBP")


def test_length_ok_bounds() -> None:
    outputs = ["Your card is on its way.", "  ok  ", "word " * 30]
    testset = [item(n, "q", "") for n in range(3)]
    assert length_ok(outputs, testset, min_chars=3).item_scores.tolist() == [1, 0, 1]
    assert length_ok(outputs, testset, max_chars=40).item_scores.tolist() == [1, 1, 0]
    assert length_ok(outputs, testset, max_words=5).item_scores.tolist() == [0, 1, 0]
    with pytest.raises(BadInputError, match="at least one of"):
        length_ok(outputs, testset)


def test_banned_phrases_ignore_case_and_spacing() -> None:
    outputs = ["As an AI  language model, I cannot check your card.",
               "Your card should arrive within 5 working days.",
               "Please contact SUPPORT for a refund."]
    testset = [item(n, "q", "") for n in range(3)]
    result = banned_phrases(outputs, testset, ["as an ai language model", "contact support"])
    assert result.item_scores.tolist() == [0, 1, 0]
    assert result.higher_is_better
    assert result.details["hits"] == {"as an ai language model": 1, "contact support": 1}


# -- style --------------------------------------------------------------------------------------

REPLIES = [
    ("Your new card should arrive within 5 working days.",
     "The new card will arrive in about 5 working days."),
    ("Top ups can fail if your card issuer declines them; please try another card.",
     "Your top up may have been declined by your card issuer."),
    ("We use the interbank exchange rate.", "Our exchange rates are the interbank rates."),
]


def test_rouge_l_matches_rouge_score() -> None:
    from rouge_score.rouge_scorer import RougeScorer

    testset = [item(n, "q", ref) for n, (ref, _) in enumerate(REPLIES)]
    outputs = [out for _, out in REPLIES]
    result = rouge_l(outputs, testset)
    scorer = RougeScorer(["rougeL"])
    expected = [scorer.score(ref, out)["rougeL"].fmeasure for ref, out in REPLIES]
    assert result.item_scores.tolist() == pytest.approx(expected)
    assert result.value == pytest.approx(np.mean(expected))
    assert result.kind == "mean"


def test_chrf_items_are_sentence_scores_and_the_value_is_corpus_chrf() -> None:
    from sacrebleu.metrics import CHRF

    testset = [item(n, "q", ref) for n, (ref, _) in enumerate(REPLIES)]
    refs, outputs = [ref for ref, _ in REPLIES], [out for _, out in REPLIES]
    result = chrf(outputs, testset)
    scorer = CHRF()
    assert result.item_scores.tolist() == pytest.approx(
        [scorer.sentence_score(out, [ref]).score / 100 for ref, out in REPLIES])
    assert result.value == pytest.approx(scorer.corpus_score(outputs, [refs]).score / 100)
    assert result.value != pytest.approx(float(np.mean(result.item_scores)))
    indices = np.array([2, 2, 0])
    assert result.value_on(indices) == pytest.approx(scorer.corpus_score(
        [outputs[i] for i in indices], [[refs[i] for i in indices]]).score / 100)


def test_a_missing_extra_names_the_eval_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rouge_score.rouge_scorer", None)
    with pytest.raises(MissingExtraError) as raised:
        rouge_l(["a"], [item(0, "q", "a")])
    assert raised.value.hint == "pip install 'ftci[eval]'"
    assert "rouge-score" in raised.value.message


# -- registry -----------------------------------------------------------------------------------

def test_registry_names_are_the_configs_known_metrics() -> None:
    assert tuple(METRICS) == KNOWN_METRICS
    assert TASK_TYPES == get_args(TaskType)
    for name, spec in METRICS.items():
        assert spec.name == name
        assert set(spec.task_types) <= set(TASK_TYPES)


def test_every_registered_function_returns_its_declared_name_and_kind() -> None:
    testset = [item(n, "How do I locate my card?", '{"intent": "card_arrival"}',
                    label="card_arrival") for n in range(3)]
    outputs = ['{"intent": "card_arrival"}'] * 3
    arguments = {"schema": {"type": "object"}, "pattern": r"\{.*\}", "phrases": ["refund"],
                 "label": "card_arrival"}
    for name, spec in METRICS.items():
        if spec.function is None:
            assert spec.provided_by == "ftci.evals.forgetting"
            assert not spec.higher_is_better
            continue
        extra = {arg: arguments[arg] for arg in spec.required_args}
        if name == "length_ok":
            extra["max_words"] = 10
        result = spec.function(outputs, testset, **extra)
        shown = f"{name}[card_arrival]" if name == "recall" else name  # one class's recall
        assert (result.name, result.kind, result.higher_is_better) == (
            shown, spec.kind, spec.higher_is_better)
        assert result.n == 3


def test_unknown_metric_names_get_a_suggestion() -> None:
    assert get_metric("field_f1").function is field_f1
    with pytest.raises(BadInputError, match="did you mean `macro_f1`"):
        get_metric("macro_f2")
    with pytest.raises(BadInputError, match="known: accuracy, macro_f1"):
        get_metric("perplexity")


def test_default_metrics_per_task_type() -> None:
    assert default_metrics("classification") == ("accuracy", "macro_f1")
    assert default_metrics("extraction") == ("json_valid", "field_f1")
    assert default_metrics("style") == ("rouge_l", "chrf")
    assert default_metrics("chat") == ("rouge_l",)
    assert default_metrics("formatting") == ("json_valid",)
    pattern_task = TaskConfig(type="formatting", output_pattern=r"[A-Z]{3} \d+")
    assert default_metrics(pattern_task) == ("regex_match",)
    schema_task = TaskConfig(type="formatting", output_schema="schema.json")
    assert default_metrics(schema_task) == ("json_schema_valid",)
    for task_type in TASK_TYPES:
        for name in default_metrics(task_type):
            assert task_type in METRICS[name].task_types
    with pytest.raises(BadInputError, match="did you mean `extraction`"):
        default_metrics("extration")


def test_metric_arguments_come_from_params_or_the_task() -> None:
    task = TaskConfig(type="formatting", output_pattern=r"[A-Z]{3} \d+")
    assert get_metric("regex_match").arguments_from(task) == {"pattern": r"[A-Z]{3} \d+"}
    assert get_metric("regex_match").arguments_from(task, {"pattern": "GBP"}) == {
        "pattern": "GBP"}
    with pytest.raises(BadInputError, match="needs `schema`") as raised:
        get_metric("json_schema_valid").arguments_from(task)
    assert raised.value.hint is not None and "task.output_schema" in raised.value.hint
    with pytest.raises(BadInputError, match="needs `phrases`"):
        get_metric("banned_phrases").arguments_from(task)
    assert get_metric("banned_phrases").arguments_from(task, {"phrases": ["refund"]}) == {
        "phrases": ["refund"]}
    assert metrics.get_metric("accuracy").arguments_from(task) == {}


def test_recall_of_one_class_is_a_proportion_over_that_classes_items() -> None:
    testset = [item(n, f"message {n}", label, label=label)
               for n, label in enumerate(["a", "b", "a", "a", "c"])]
    result = recall(["a", "a", "b", "a", "c"], testset, "a")
    assert (result.value, result.n, result.kind) == (2 / 3, 3, "proportion")
    assert result.item_ids == ("item-0", "item-2", "item-3") and result.details["support"] == 3
    assert recall(["x"] * 5, testset, "b").value == 0.0
    assert class_labels(testset) == ["a", "b", "c"]
