"""The smoke eval (ftci/deploy/smoke.py) against a real vLLM CPU server on loopback.

The release is a directory as `ftci release` lays it out: `model/` and
`quantization/results.json`, written by the real quantization gate
(`ftci.release.qgate.run_quantization_gate`) through vLLM's offline engine in the vLLM venv,
with the model as both "merged" and "quantized" (the baseline's outputs come from the output
cache). So the recorded answers come from another engine than the server under test, as in
a real deploy. One server serves the release for the module; a second one serves the model
under a chat template that drops the user's message.

The model is the starter (SmolLM2-135M-Instruct), not the tiny random Llama of
tests/helpers/tiny_model.py: that one answers every prompt alike (the same label; an empty
generation, its first token is <|im_end|>), so no template fault could change its answers and
agreement would prove nothing. The task is a chat task (greedy text, 12 new tokens) gated on
exact_match: generated text is the sharper check of engine drift.

The fault-proxy test is here too (the server is a module fixture; starting another would
cost 20-40 s): the proxy of tests/helpers/fault_proxy.py is a real HTTP server between the
client and the real vLLM server. Tests that pair items without a server come first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftci.config import load_config
from ftci.config.loader import LoadedConfig
from ftci.contracts.results import EvalResults, Gate, GateItem
from ftci.deploy.smoke import (
    SmokeResult,
    paired_items,
    pick_gate,
    recorded_results,
    run_smoke_eval,
    smoke_message,
)
from ftci.errors import BadInputError
from ftci.evals.testset import item_digest, load_testset
from ftci.release.layout import EVAL_RESULTS, MODEL, QUANT_RESULTS
from ftci.state import split_path
from tests.helpers.fault_proxy import FaultProxy
from tests.helpers.run_repo import SYSTEM, write_messages
from tests.helpers.skips import skip_or_fail
from tests.helpers.starter import starter_dir
from tests.helpers.vllm_server import VLLMServer, missing_vllm, start_vllm_server

PER_LABEL = 80  # 3 intents x 80 messages: ~60 test items at test 0.25
SMOKE_ITEMS = 64
MIN_AGREEMENT = 0.95
NEW_TOKENS = 12
slow = [pytest.mark.slow, pytest.mark.integration]
# A served template that drops the user's message (renders a `text` key messages lack).
BLIND_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + (message['text'] or '') + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def write_repo(root: Path, base_model: Path, *, task: str = "classification") -> LoadedConfig:
    """data/messages.jsonl (3 banking77 intents) and ftci.yaml: a classification task, or a
    chat task answering with the intent's name (gated on exact_match, 12 new tokens)."""
    labels = write_messages(root, PER_LABEL)
    metric = "accuracy" if task == "classification" else "exact_match"
    task_labels = f"labels: {json.dumps(labels)}, " if task == "classification" else ""
    config = root / "ftci.yaml"
    config.write_text(
        "project: {name: smoke}\n"
        f"task: {{type: {task}, {task_labels}system_prompt: {json.dumps(SYSTEM)}}}\n"
        f"base_model: {json.dumps(str(base_model))}\n"
        "data:\n  sources: [data/]\n  split: {train: 0.65, val: 0.1, test: 0.25}\n"
        f"eval: {{suites: [], baseline: base, max_new_tokens: {NEW_TOKENS}, "
        f"gates: [{{metric: {metric}, min: 0.0}}]}}\n"
        "deploy: {target: vllm}\n", encoding="utf-8")
    return load_config(config)


def write_results(path: Path, items: list[GateItem], *, metric: str = "accuracy") -> None:
    results = EvalResults(gates=[Gate(metric=metric, items=items, n=len(items))])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results.to_dict()), encoding="utf-8")


def split_items(loaded: LoadedConfig) -> list[GateItem]:
    """Every test item as a recorded gate item whose output is the reference (score 1)."""
    testset = load_testset(split_path(loaded.root, "test"), labels=loaded.config.task.labels,
                           system_prompt=loaded.config.task.system_prompt)
    return [GateItem(id=item.id, digest=item_digest(item), output=item.expected,
                     expected=item.expected, score=1.0) for item in testset]


# ---- pairing, without a server ---------------------------------------------------------------

def test_missing_split_is_written_and_items_pair_in_recorded_order(tmp_path: Path) -> None:
    loaded = write_repo(tmp_path / "repo", tmp_path / "no-model")
    test_split = split_path(loaded.root, "test")
    assert not test_split.exists()
    gate = Gate(metric="accuracy", items=[])
    with pytest.raises(BadInputError, match="none of the 0 items"):
        paired_items(loaded, gate, 5, source=tmp_path / "r.json")
    assert test_split.is_file()  # written from data/ as `ftci train` would
    recorded = split_items(loaded)
    recorded.reverse()
    stranger = GateItem(id="gone", digest="0" * 64, output="x")
    gate = Gate(metric="accuracy", items=[stranger, *recorded])
    testset, chosen, unpaired = paired_items(loaded, gate, 5, source=tmp_path / "r.json")
    assert [item.id for item in testset] == [item.id for item in recorded[:5]]
    assert [item.id for item in chosen] == [item.id for item in recorded[:5]]
    assert unpaired == 1
    assert testset[0].messages[0] == {"role": "system", "content": SYSTEM}
    assert tuple(testset.labels) == tuple(loaded.config.task.labels)


def test_changed_data_pairs_nothing_and_says_so(tmp_path: Path) -> None:
    """Pairing fails before any request: the URL has no server behind it."""
    loaded = write_repo(tmp_path / "repo", tmp_path / "no-model")
    release = tmp_path / "release"
    write_results(release / QUANT_RESULTS, [GateItem(id="a", digest="1" * 64, output="x")])
    with pytest.raises(BadInputError) as caught:
        run_smoke_eval(loaded, release, base_url="http://127.0.0.1:9/v1", served_name="m",
                       items=8, min_agreement=0.95)
    assert "changed since the release" in caught.value.message
    assert caught.value.hint and "commit the release was made at" in caught.value.hint


def test_recorded_results_fall_back_to_the_pr_eval(tmp_path: Path) -> None:
    release = tmp_path / "release"
    with pytest.raises(BadInputError, match="no per-item results"):
        recorded_results(release)
    items = [GateItem(id="a", digest="1" * 64, output="x")]
    results = EvalResults(gates=[Gate(metric="rouge_l", items=[]),
                                 Gate(metric="recall[a]", items=items),
                                 Gate(metric="macro_f1", items=items),
                                 Gate(metric="accuracy", items=items)])
    (release / EVAL_RESULTS).parent.mkdir(parents=True)
    (release / EVAL_RESULTS).write_text(json.dumps(results.to_dict()), encoding="utf-8")
    found, source = recorded_results(release)
    assert source == EVAL_RESULTS
    assert pick_gate(found, "accuracy", source=release).metric == "accuracy"
    # no metric named: the first gate with items on a metric that scores outputs
    assert pick_gate(found, None, source=release).metric == "macro_f1"
    write_results(release / QUANT_RESULTS, items)
    assert recorded_results(release)[1] == QUANT_RESULTS


# ---- a real server ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vllm_python_env() -> Iterator[None]:
    reason = missing_vllm()
    if reason:
        skip_or_fail(reason)
    from tests.helpers.vllm_server import vllm_python

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FTCI_VLLM_PYTHON", str(vllm_python()))
        yield


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory,
             vllm_python_env: None) -> tuple[LoadedConfig, Path]:
    """The repository (a chat task) and a release directory whose quantization/results.json
    the real quantization gate wrote through vLLM's offline engine."""
    from ftci.release.qgate import run_quantization_gate

    starter = starter_dir()
    base = tmp_path_factory.mktemp("smoke")
    loaded = write_repo(base / "repo", starter, task="chat")
    release = base / "release"
    release.mkdir()
    (release / MODEL).symlink_to(starter, target_is_directory=True)
    summary = run_quantization_gate(loaded, release / MODEL, release / MODEL,
                                    release / QUANT_RESULTS, metric="exact_match", margin=0.5)
    assert summary.items >= 40 and summary.delta == 0.0
    return loaded, release


@pytest.fixture(scope="module")
def server(released: tuple[LoadedConfig, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    _, release = released
    log = tmp_path_factory.mktemp("server") / "vllm.log"
    started = start_vllm_server(release / MODEL, log, served_name="intents")
    yield started
    started.stop()


def smoke(loaded: LoadedConfig, release: Path, base_url: str) -> SmokeResult:
    return run_smoke_eval(loaded, release, base_url=base_url, served_name="intents",
                          items=SMOKE_ITEMS, min_agreement=MIN_AGREEMENT)


@pytest.mark.slow
@pytest.mark.integration
def test_the_released_model_served_passes(released: tuple[LoadedConfig, Path],
                                          server: VLLMServer) -> None:
    loaded, release = released
    result = smoke(loaded, release, server.base_url)
    print("\n" + smoke_message(result))
    recorded = EvalResults.read(release / QUANT_RESULTS).gates[0]
    assert result.passed, smoke_message(result)
    assert result.items == len(recorded.items) and result.source == QUANT_RESULTS
    assert result.agreement >= MIN_AGREEMENT and result.agreed >= MIN_AGREEMENT * result.items
    assert result.metric == "exact_match" and result.recorded == pytest.approx(recorded.value)
    assert abs(result.live - result.recorded) <= 1 - result.agreement + 1e-9
    assert result.p_value is not None and result.p_value >= result.alpha == 0.05
    assert result.template == "equal" and result.reasons == [] and result.unpaired == 0
    assert json.loads(json.dumps(result.to_dict()))["passed"] is True


@pytest.mark.slow
@pytest.mark.integration
def test_a_different_record_fails_with_the_numbers(released: tuple[LoadedConfig, Path],
                                                   server: VLLMServer, tmp_path: Path) -> None:
    """A record whose answers are all right (score 1): the untuned starter's live answers
    agree with hardly any, and its exact_match is far lower."""
    loaded, release = released
    altered = tmp_path / "release"
    altered.mkdir()
    (altered / MODEL).symlink_to(release / MODEL, target_is_directory=True)
    results = EvalResults.read(release / QUANT_RESULTS)
    gate = results.gates[0]
    changed = 0
    for item in gate.items:
        changed += item.output != item.expected
        item.output, item.score = item.expected, 1.0
    assert changed >= 20
    (altered / QUANT_RESULTS).parent.mkdir(parents=True)
    (altered / QUANT_RESULTS).write_text(json.dumps(results.to_dict()), encoding="utf-8")
    result = smoke(loaded, altered, server.base_url)
    message = smoke_message(result)
    print("\n" + message)
    assert not result.passed
    assert result.agreed <= result.items - changed + 2
    assert result.recorded == 1.0 and result.live <= 0.5
    assert result.p_value is not None and result.p_value < 0.01
    assert f"smoke eval: {result.agreed}/{result.items} live answers agree" in message
    assert f"needs 95%); exact_match {result.live:.2f} live vs 1.00 recorded" in message
    assert "FAILED" in message and "hint: the server renders a different chat template" in message
    assert len(result.disagreements) == 5
    for row in result.disagreements:
        assert row["recorded"] == row["expected"] != row["live"]
    assert any("worse than" in reason for reason in result.reasons)


@pytest.fixture(scope="module")
def blind_server(released: tuple[LoadedConfig, Path],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    """The release's model (its files linked) under a chat template that drops the user's
    message."""
    _, release = released
    base = tmp_path_factory.mktemp("blind")
    model = base / "model"
    model.mkdir()
    for path in (release / MODEL).iterdir():
        if path.name != "chat_template.jinja":
            (model / path.name).symlink_to(path.resolve())
    (model / "chat_template.jinja").write_text(BLIND_TEMPLATE, encoding="utf-8")
    started = start_vllm_server(model, base / "vllm.log", served_name="intents")
    yield started
    started.stop()


@pytest.mark.slow
@pytest.mark.integration
def test_a_server_with_the_wrong_chat_template_fails(released: tuple[LoadedConfig, Path],
                                                     blind_server: VLLMServer) -> None:
    loaded, release = released
    result = smoke(loaded, release, blind_server.base_url)
    message = smoke_message(result)
    print("\n" + message)
    assert not result.passed
    assert result.agreement < 0.5  # one rendered prompt, one answer for every item
    assert result.reasons and "live answers agree" in result.reasons[0]
    assert result.disagreements and "hint:" in message


@pytest.mark.slow
@pytest.mark.integration
def test_faults_between_client_and_server_change_no_verdict(
        released: tuple[LoadedConfig, Path], server: VLLMServer) -> None:
    """20% of requests answered 500/502/503 by the proxy, the rest delayed 0-200 ms."""
    from ftci.evals.backends.base import GenerationParams
    from ftci.evals.backends.openai import OpenAIBackend

    loaded, release = released
    gate = EvalResults.read(release / QUANT_RESULTS).gates[0]
    testset, _, _ = paired_items(loaded, gate, SMOKE_ITEMS, source=release)
    chats = [list(item.messages) for item in testset]
    params = GenerationParams(NEW_TOKENS, 0.0)
    direct = smoke(loaded, release, server.base_url)
    direct_answers = OpenAIBackend(server.base_url, "intents").generate(chats, params)
    with FaultProxy(server.base_url, fault_rate=0.2, max_delay_s=0.2, seed=7) as proxy:
        proxied = smoke(loaded, release, proxy.base_url)
        proxied_answers = OpenAIBackend(proxy.base_url, "intents",
                                        max_retries=6).generate(chats, params)
    print(f"\nproxy: {proxy.faults} faults injected, {proxy.forwarded} forwarded; direct "
          f"{direct.seconds:.1f} s, proxied {proxied.seconds:.1f} s; "
          f"{len(set(direct_answers))} distinct answers")
    assert proxy.faults > 0 and proxy.forwarded > direct.items
    assert proxied.passed == direct.passed
    assert (proxied.agreed, proxied.agreement) == (direct.agreed, direct.agreement)
    assert (proxied.live, proxied.p_value) == (direct.live, direct.p_value)
    assert proxied.disagreements == direct.disagreements
    assert proxied_answers == direct_answers
