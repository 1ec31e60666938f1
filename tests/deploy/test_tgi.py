"""Serving a release on TGI: the launcher flags read from a real release layout, the server's
identity, and ftci's OpenAI client generating through it.

TGI itself cannot run here (a container image; no container engine, not on PyPI), so the
server is tests/helpers/tgi_standin.py: TGI's documented routes on loopback, generating with a
REAL tiny Llama through transformers. What is faked is only TGI's process, not the model."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ftci.config.schema import FtciConfig
from ftci.contracts.release import ReleaseManifest
from ftci.deploy.identity import check_identity, served_identity
from ftci.deploy.spec import ServeSpec, build_spec, tgi_args
from ftci.errors import InfraError
from ftci.evals.backends.base import GenerationParams
from ftci.evals.backends.openai import OpenAIBackend
from tests.helpers.release_manifests import banking_release_manifest
from tests.helpers.starter import starter_dir
from tests.helpers.tgi_standin import StandInError, TGIStandIn

HUB_REPO = "acme/banking-intents"
HUB_SHA = "3f1c" + "0" * 36
CHATS = [
    [{"role": "user", "content": "I still have not received my new card, when will it come?"}],
    [{"role": "system", "content": "Answer with the intent."},
     {"role": "user", "content": "My PIN is blocked after three tries."}],
    [{"role": "user", "content": "How do I top up by bank transfer?"}],
]


def tgi_model_dir(source: Path, dest: Path) -> Path:
    """`source` as a release ships it for TGI: the chat template inlined in
    tokenizer_config.json (TGI does not read chat_template.jinja). The weights are linked,
    not copied."""
    dest.mkdir(parents=True)
    for path in source.iterdir():
        if path.name != "tokenizer_config.json":
            (dest / path.name).symlink_to(path.resolve())
    config = json.loads((source / "tokenizer_config.json").read_text("utf-8"))
    if not config.get("chat_template"):
        config["chat_template"] = (source / "chat_template.jinja").read_text("utf-8")
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2), "utf-8")
    return dest


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TGIStandIn]:
    """The stand-in serving the starter model (SmolLM2-135M-Instruct): a real instruct
    model, so greedy answers are words, not the tiny random Llama's newlines."""
    model_dir = tgi_model_dir(starter_dir(), tmp_path_factory.mktemp("tgi") / "model")
    server = TGIStandIn(model_dir, model_id=HUB_REPO, model_sha=HUB_SHA,
                        max_input_tokens=96, max_total_tokens=128).start()
    yield server
    server.stop()


def release_manifest(**extra: Any) -> ReleaseManifest:
    return banking_release_manifest("0.3.0", "0.2.0", pr=21, **extra)


def tgi_config() -> FtciConfig:
    return FtciConfig.model_validate({
        "project": {"name": "banking-intents"},
        "task": {"type": "classification", "labels": ["card_arrival", "pin_blocked"]},
        "base_model": "starter:smollm2-135m-instruct",
        "data": {"sources": [{"path": "data/train.csv"}]},
        "train": {"max_seq_len": 96}, "eval": {"max_new_tokens": 32},
        "deploy": {"target": "tgi"}})


def release_dir(tiny_llama_dir: Path, tmp_path: Path) -> Path:
    tgi_model_dir(tiny_llama_dir, tmp_path / "release" / "model")
    return tmp_path / "release"


def flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, args
    return args[args.index(name) + 1]


def test_tgi_flags_for_a_w8a8_release_on_the_hub(tiny_llama_dir: Path, tmp_path: Path) -> None:
    spec = build_spec(release_manifest(hub_repo=HUB_REPO, hub_revision=HUB_SHA),
                      release_dir(tiny_llama_dir, tmp_path), tgi_config(), cpu=True)
    args = tgi_args(spec, host="0.0.0.0", port=8080)
    assert flag(args, "--model-id") == HUB_REPO
    assert flag(args, "--revision") == HUB_SHA
    assert flag(args, "--quantize") == "compressed-tensors"
    assert flag(args, "--max-input-tokens") == "96"  # train.max_seq_len
    assert flag(args, "--max-total-tokens") == "128"  # + eval.max_new_tokens, within 256
    assert int(flag(args, "--max-input-tokens")) < int(flag(args, "--max-total-tokens"))
    assert (flag(args, "--hostname"), flag(args, "--port")) == ("0.0.0.0", "8080")


def test_tgi_flags_for_a_mounted_model_carry_no_revision(tiny_llama_dir: Path,
                                                          tmp_path: Path) -> None:
    """A container mount is the release's verified files: a Hub revision would not apply."""
    spec = build_spec(release_manifest(hub_repo=HUB_REPO, hub_revision=HUB_SHA),
                      release_dir(tiny_llama_dir, tmp_path), tgi_config(), cpu=True)
    args = tgi_args(spec, host="0.0.0.0", port=80, model="/model")
    assert flag(args, "--model-id") == "/model"
    assert "--revision" not in args
    local = build_spec(release_manifest(), release_dir(tiny_llama_dir, tmp_path / "b"),
                       tgi_config(), cpu=True)
    assert flag(tgi_args(local, host="h", port=1), "--model-id") == str(local.model_dir)
    assert "--revision" not in tgi_args(local, host="h", port=1)


def test_the_standin_refuses_a_template_tgi_would_not_read(tiny_llama_dir: Path) -> None:
    config = json.loads((tiny_llama_dir / "tokenizer_config.json").read_text("utf-8"))
    assert not config.get("chat_template")  # the fixture ships chat_template.jinja only
    with pytest.raises(StandInError, match="no inlined chat_template"):
        TGIStandIn(tiny_llama_dir, model_id="x").start()


def test_health_info_and_metrics_speak_tgi(standin: TGIStandIn) -> None:
    with urllib.request.urlopen(standin.url + "/health", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(standin.url + "/info", timeout=10) as response:
        info = json.load(response)
    assert info["model_id"] == HUB_REPO and info["model_sha"] == HUB_SHA
    assert (info["max_input_tokens"], info["max_total_tokens"]) == (96, 128)
    with urllib.request.urlopen(standin.url + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert "tgi_queue_size 0" in metrics and "tgi_batch_current_size 0" in metrics


def test_identity_of_the_served_release(standin: TGIStandIn, tmp_path: Path) -> None:
    spec = ServeSpec(engine="tgi", project="banking-intents", version="0.3.0", release_key="k",
                     served_name="banking-intents", model_dir=tmp_path / "model",
                     quantization="w8a8-int8", serve_flags=(), max_model_len=128,
                     max_input_tokens=96, hub_repo=HUB_REPO, hub_revision=HUB_SHA)
    identity = served_identity(standin.url, "tgi")
    assert (identity.model_id, identity.model_sha) == (HUB_REPO, HUB_SHA)
    assert check_identity(spec, identity) == []

    moved = "9" * 40
    problems = check_identity(spec, identity, revision=moved)
    assert len(problems) == 1
    assert f":{standin.port}" in problems[0] and HUB_SHA in problems[0] and moved in problems[0]

    other = ServeSpec(**{**spec.__dict__, "hub_repo": "acme/other-model"})
    [problem] = check_identity(other, identity)
    assert "serves acme/banking-intents, not acme/other-model: a stale server?" in problem


def direct_greedy(model_dir: Path, chats: list[list[dict[str, str]]],
                  max_new_tokens: int) -> list[str]:
    """The reference: transformers itself, with the template TGI reads, one chat at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    template = json.loads((model_dir / "tokenizer_config.json").read_text())["chat_template"]
    answers = []
    for chat in chats:
        ids = tokenizer.apply_chat_template(chat, chat_template=template, tokenize=True,
                                            add_generation_prompt=True, return_dict=True,
                                            return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        answers.append(str(tokenizer.decode(out[0, ids["input_ids"].shape[1]:],
                                            skip_special_tokens=True)).strip())
    return answers


def test_the_openai_backend_generates_what_transformers_generates(standin: TGIStandIn) -> None:
    backend = OpenAIBackend(standin.url + "/v1", HUB_REPO, concurrency=2, max_retries=0)
    try:
        served = backend.generate(CHATS, GenerationParams(max_new_tokens=12))
    finally:
        backend.close()
    assert served == direct_greedy(standin.model_dir, CHATS, 12)
    assert all(answer.strip() for answer in served), served  # words to compare, not blanks
    assert standin.requests_served >= len(CHATS)


def test_generate_and_the_token_budget(standin: TGIStandIn) -> None:
    """TGI refuses an over-budget prompt with 422; ftci's client reports it at once."""
    body = {"inputs": "Where is my card?", "parameters": {"max_new_tokens": 8}}
    request = urllib.request.Request(standin.url + "/generate", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert isinstance(json.load(response)["generated_text"], str)

    too_long = [{"role": "user", "content": "card " * 400}]
    backend = OpenAIBackend(standin.url + "/v1", HUB_REPO, max_retries=3)
    try:
        with pytest.raises(InfraError, match="422.*must have less than 96 tokens"):
            backend.generate([too_long], GenerationParams(max_new_tokens=8))
    finally:
        backend.close()

    body["parameters"] = {"max_new_tokens": 127}  # + the prompt > 128
    request = urllib.request.Request(standin.url + "/generate", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 422
    assert json.load(refused.value)["error_type"] == "validation"
