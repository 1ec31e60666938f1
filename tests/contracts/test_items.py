"""results.json records every item of every gate: input, digest, expected, both models' outputs
and scores; the HTML report shows every item's input. Real metrics on a real Testset."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from ftci.contracts import EvalResults
from ftci.evals.expect import Recorder, expect, failure_text
from ftci.evals.metrics import accuracy
from ftci.evals.testset import Testset, item_digest
from ftci.evals.types import Item
from ftci.report.build import build_report
from ftci.report.html import render_html
from tests.helpers.report_repo import fixture_json, make_repo, write_results

LABELS = ("refund", "cancel")


def _testset(count: int = 12) -> Testset:
    items = tuple(Item(id=f"item-{n}", messages=({"role": "user", "content": f"message {n}"},),
                       expected=LABELS[n % 2], label=LABELS[n % 2]) for n in range(count))
    return Testset("test", items, LABELS, "classification")


def _gates() -> tuple[Testset, list[dict]]:
    testset = _testset()
    candidate = [item.expected for item in testset]
    candidate[3] = "cancel" if candidate[3] == "refund" else "refund"
    baseline = ["refund"] * len(testset)
    recorder = Recorder()
    cand, base = accuracy(candidate, testset), accuracy(baseline, testset)
    expect(cand, recorder=recorder, test="t::floor").at_least(0.5)
    expect(cand, recorder=recorder, test="t::compare").not_worse_than(base, margin=0.2)
    return testset, [record.to_dict() for record in recorder.records]


def test_every_item_of_every_gate_carries_input_digest_expected_outputs_and_scores() -> None:
    testset, gates = _gates()
    floor, compare = gates
    for gate in gates:
        assert [item["id"] for item in gate["items"]] == list(testset.ids)
        for item, source in zip(gate["items"], testset, strict=True):
            assert item["input"] == source.input_text
            assert item["digest"] == item_digest(source) and len(item["digest"]) == 64
            assert item["expected"] == source.expected
            assert isinstance(item["output"], str) and item["score"] in (0.0, 1.0)
    assert floor["items"][3]["score"] == 0.0
    assert floor["items"][3]["output"] != floor["items"][3]["expected"]
    assert "baseline_score" not in floor["items"][0]  # a floor has one model
    for item in compare["items"]:
        assert item["baseline_output"] == "refund"
        assert item["baseline_score"] == float(item["expected"] == "refund")
    # the digests pair items across runs: the same item, another run, the same digest
    assert item_digest(_testset()[5]) == floor["items"][5]["digest"]
    assert len({item["digest"] for item in floor["items"]}) == len(testset)


def test_worst_items_and_the_failure_text_come_from_the_typed_views() -> None:
    testset = _testset()
    recorder = Recorder()
    wrong = ["cancel" if item.expected == "refund" else "refund" for item in testset]
    try:
        expect(accuracy(wrong, testset), recorder=recorder, test="t").at_least(0.9,
                                                                              strict="point")
    except AssertionError as failure:
        text = str(failure)
    else:
        raise AssertionError("a floor every item misses must fail")
    (record,) = recorder.records
    assert text == failure_text(record) and "worst items:" in text
    assert "[item-0] input: message 0" in text and "baseline:" not in text
    assert record.worst[0].candidate == "cancel" and record.worst[0].candidate_score == 0.0


def test_results_with_every_item_validate_and_the_html_shows_every_input(tmp_path: Path) -> None:
    testset, gates = _gates()
    results = fixture_json("results.json") | {"schema_version": "1.0", "gates": gates}
    EvalResults.from_dict(json.loads(json.dumps(results)))  # the contract holds them
    repo = make_repo(tmp_path / "repo")
    path = tmp_path / "results.json"
    write_results(path, results)
    html = render_html(build_report(repo, eval_results=path, discover=False))
    rows = html.split('<table id="items">', 1)[1].split("</table>", 1)[0].split("<tr ")[1:]
    assert len(rows) == len(testset)
    for row, item in zip(rows, testset, strict=True):
        assert f"<code>{item.id}</code>" in row and f"<pre>{item.input_text}</pre>" in row


def test_a_legacy_results_json_still_shows_the_inputs_it_kept(tmp_path: Path) -> None:
    """Files from before per-item inputs had them only in the worst items: those show, the
    rest show a dash."""
    repo = make_repo(tmp_path / "repo")
    html = render_html(build_report(repo))
    legacy = fixture_json("results.json")
    kept = {item["id"]: item["input"] for gate in legacy["gates"] for item in gate["worst"]}
    rows = html.split('<table id="items">', 1)[1].split("</table>", 1)[0].split("<tr ")[1:]
    assert rows
    for row in rows:
        item_id = row.split("<code>", 1)[1].split("</code>", 1)[0]
        shown = escape(kept[item_id], quote=True) if item_id in kept else "—"
        assert f"<pre>{shown}</pre>" in row
