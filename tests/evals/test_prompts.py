"""Candidate and baseline see the same prompts: the chat template training used reaches the
`base` baseline (ftci.evals.resolve), is recorded per model and keys the output cache.

Real components: the tiny Llama, a repository with splits and ftci.yaml, and a training run
directory laid out as `ftci train` leaves it (a full fine-tune whose `model/` is the tiny
model with the run's template; its weights are not trained, which changes nothing here).
Prompts are captured where the hf backend turns them into token ids (`HFBackend.render`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pytest

from ftci.config import load_config
from ftci.config.loader import LoadedConfig
from ftci.evals.backends.hf import HFBackend
from ftci.evals.cache import OutputCache
from ftci.evals.model import EvalModel
from ftci.evals.resolve import candidate_prompt, resolve_model
from ftci.evals.testset import Testset, load_testset
from tests.helpers.eval_repo import SYSTEM, make_eval_repo


def _template(tag: str) -> str:
    """A template unlike the tiny model's ChatML, ending turns with the same <|im_end|>."""
    return ("{% for m in messages %}{{ '[" + tag + ":' + m['role'] + '] ' + m['content'] + "
            "'<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '[" + tag +
            ":assistant] ' }}{% endif %}")


CONFIGURED, TRAINED = _template("cfg"), _template("run")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _render(template: str, messages: list[dict[str, str]]) -> str:
    return jinja2.Template(template).render(messages=messages, add_generation_prompt=True)


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Every prompt each hf backend renders (keyed by its model directory's name)."""
    seen: dict[str, list[str]] = {}
    real = HFBackend.render

    def spy(self: HFBackend, chat: list[dict[str, str]]) -> str:
        text = real(self, chat)
        seen.setdefault(self.model_dir.name, []).append(text)
        return text

    monkeypatch.setattr(HFBackend, "render", spy)
    return seen


def _repo(tmp_path: Path, base: Path, template: str | None = CONFIGURED) -> LoadedConfig:
    config = make_eval_repo(tmp_path / "repo", base, n_test=5)
    if template is not None:
        (config.parent / "chat.jinja").write_text(template)
        config.write_text(config.read_text() + "train: {method: full, chat_template: chat.jinja}\n")
    return load_config(config, lint=False)


def _testset(loaded: LoadedConfig) -> Testset:
    config = loaded.config
    return load_testset(loaded.root / ".ftci" / "splits" / "test.jsonl", labels=config.task.labels,
                        system_prompt=config.task.system_prompt)


def _fake_run(loaded: LoadedConfig, base: Path, template: str, system_prompt: str) -> str:
    """A complete full-fine-tune run: `model/` ships the template training rendered with."""
    from ftci.train.cache import artifact_files, run_dir_for

    key = "0123456789abcdef"
    run_dir = run_dir_for(loaded.root, key)
    shutil.copytree(base, run_dir / "model")
    (run_dir / "model" / "chat_template.jinja").write_text(template)
    inputs = {"config": {"task": {"type": "classification", "system_prompt": system_prompt}},
              "chat_template": _sha(template)}
    (run_dir / "inputs.json").write_text(json.dumps({"run_key": key, "inputs": inputs}))
    (run_dir / "manifest.json").write_text(json.dumps({
        "complete": True, "run_key": key, "inputs": inputs, "files": artifact_files(run_dir),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
    return key


def test_the_base_baseline_renders_with_the_configured_chat_template(
        tiny_llama_dir: Path, tmp_path: Path, rendered: dict[str, list[str]]) -> None:
    loaded = _repo(tmp_path, tiny_llama_dir)
    testset = _testset(loaded)
    candidate = resolve_model(str(tiny_llama_dir), role="candidate", loaded=loaded)
    baseline = resolve_model("base", role="baseline", loaded=loaded,
                             prompt=candidate_prompt(str(tiny_llama_dir), loaded))
    EvalModel(baseline).classify(testset)
    expected = [_render(CONFIGURED, list(item.messages)) for item in testset]
    assert rendered[tiny_llama_dir.name] == expected
    assert expected[0].startswith(f"[cfg:system] {SYSTEM}<|im_end|>[cfg:user] ")
    for ref in (candidate, baseline):
        assert ref.details["chat_template_sha256"] == _sha(CONFIGURED)
        assert ref.details["chat_template_source"] == "ftci.yaml"
    own = (tiny_llama_dir / "chat_template.jinja").read_text()
    assert _sha(own) != _sha(CONFIGURED)


def test_without_a_configured_template_each_model_keeps_its_own(
        tiny_llama_dir: Path, tmp_path: Path, rendered: dict[str, list[str]]) -> None:
    loaded = _repo(tmp_path, tiny_llama_dir, template=None)
    baseline = resolve_model("base", role="baseline", loaded=loaded)
    chat = [{"role": "user", "content": "hello"}]
    EvalModel(baseline).generate([chat], max_new_tokens=1)
    own = (tiny_llama_dir / "chat_template.jinja").read_text()
    assert rendered[tiny_llama_dir.name] == [_render(own, chat)]
    assert baseline.details["chat_template_sha256"] == _sha(own)
    assert baseline.details["chat_template_source"] == "the model's own"


def test_a_run_candidate_gives_the_baseline_the_template_it_was_trained_with(
        tiny_llama_dir: Path, tmp_path: Path, rendered: dict[str, list[str]]) -> None:
    """ftci.yaml's template has changed since the run was trained: the run and the base model
    both render with the run's, and the run's recorded system prompt is read."""
    loaded = _repo(tmp_path, tiny_llama_dir)
    key = _fake_run(loaded, tiny_llama_dir, TRAINED, "An older system prompt.")
    prompt = candidate_prompt(None, loaded)  # the latest run
    assert (prompt.chat_template, prompt.system_prompt) == (TRAINED, "An older system prompt.")
    assert prompt.source == f"run {key[:12]}"
    candidate = resolve_model(None, role="candidate", loaded=loaded)
    baseline = resolve_model("base", role="baseline", loaded=loaded, prompt=prompt)
    assert "another task.system_prompt" in candidate.details["note"]
    testset = _testset(loaded)
    EvalModel(candidate).classify(testset)
    EvalModel(baseline).classify(testset)
    expected = [_render(TRAINED, list(item.messages)) for item in testset]
    assert rendered["model"] == expected  # the run's model/ directory
    assert rendered[tiny_llama_dir.name] == expected  # the base model
    for ref in (candidate, baseline):
        assert ref.details["chat_template_sha256"] == _sha(TRAINED)
        assert ref.details["chat_template_source"] == f"run {key[:12]}"


def test_two_templates_never_share_cache_entries(tiny_llama_dir: Path, tmp_path: Path,
                                                 rendered: dict[str, list[str]]) -> None:
    cache_path = tmp_path / "outputs.sqlite"
    chats = [[{"role": "user", "content": "my card has not arrived"}]]
    configured = _repo(tmp_path / "a", tiny_llama_dir)
    other = _repo(tmp_path / "b", tiny_llama_dir, template=TRAINED)

    def classify(loaded: LoadedConfig) -> OutputCache:
        cache = OutputCache(cache_path)
        EvalModel(resolve_model("base", role="baseline", loaded=loaded), cache).classify(
            chats, ["card_arrival", "pin_blocked"])
        return cache

    assert classify(configured).misses == 1
    assert classify(configured).hits == 1  # the same template: read back, nothing rendered
    assert len(rendered[tiny_llama_dir.name]) == 1
    assert classify(other).hits == 0  # same weights, other template: computed again
    assert rendered[tiny_llama_dir.name][-1].startswith("[run:user] ")


def test_an_endpoint_records_that_its_template_is_the_servers(tiny_llama_dir: Path,
                                                              tmp_path: Path) -> None:
    loaded = _repo(tmp_path, tiny_llama_dir)
    ref = resolve_model("http://127.0.0.1:9/v1#served", role="candidate", loaded=loaded)
    assert ref.details["chat_template_sha256"] is None
    assert EvalModel(ref, OutputCache(tmp_path / "outputs.sqlite")).identity is None
