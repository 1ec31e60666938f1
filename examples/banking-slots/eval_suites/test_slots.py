"""This repository's own eval suite: plain pytest with ftci's fixtures.

`ftci eval` (and `ftci run`) run it with the declarative gates of ftci.yaml; so does
`pytest eval_suites --ftci-config ftci.yaml`. The outputs are generated once per model and
shared with the gates (the output cache).
"""

from __future__ import annotations

from ftci.evals.metrics import field_f1, parse_json_output

# Amounts and dates move money: they must be found most reliably.
MIN_FIELD_RECALL = {"amount_of_money": 0.8, "date": 0.7}
MIN_GROUNDED = 0.9  # share of returned values that are words of the message
MIN_EMPTY_RIGHT = 0.8  # share of slot-free messages answered with {}


def test_money_and_dates_are_found(candidate, testset):
    fields = field_f1(candidate.generate(testset), testset).details["fields"]
    weak = {name: round(fields[name]["recall"], 3) for name, floor in MIN_FIELD_RECALL.items()
            if name in fields and fields[name]["recall"] < floor}
    assert not weak, f"slots recalled below their floor {MIN_FIELD_RECALL}: {weak}"


def test_values_are_copied_from_the_message(candidate, testset):
    """Extraction, not invention: each value returned is words of the message itself."""
    values, invented = 0, []
    for item, output in zip(testset, candidate.generate(testset), strict=True):
        parsed, answer = parse_json_output(output)
        if not parsed or not isinstance(answer, dict):
            continue  # the json_valid gate counts these
        for name, value in answer.items():
            values += 1
            if not isinstance(value, str) or value.casefold() not in item.input_text.casefold():
                invented.append(f"{item.id}: {name}={value!r} in {item.input_text!r}")
    grounded = 1 - len(invented) / values if values else 1.0
    assert grounded >= MIN_GROUNDED, (
        f"{grounded:.3f} of {values} values appear in their message (floor {MIN_GROUNDED}); "
        "first invented: " + "; ".join(invented[:5]))


def test_messages_without_slots_get_an_empty_object(candidate, testset):
    empty = [(item, output) for item, output in zip(testset, candidate.generate(testset),
                                                    strict=True) if item.target == {}]
    assert empty, "the test split holds no message without slots"
    wrong = [f"{item.id}: {output!r}" for item, output in empty
             if parse_json_output(output) != (True, {})]
    right = 1 - len(wrong) / len(empty)
    assert right >= MIN_EMPTY_RIGHT, (
        f"{right:.3f} of {len(empty)} slot-free messages answered {{}} (floor "
        f"{MIN_EMPTY_RIGHT}); first wrong: " + "; ".join(wrong[:5]))
