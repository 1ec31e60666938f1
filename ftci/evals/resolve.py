"""Which model a name means: `--model` / `--baseline` / `eval.baseline` to a `ModelRef`.

- nothing (candidate): the latest complete training run of the repository;
- `base`: the config's base model (the baseline until a release exists);
- `production`: the released model; until a release exists, the base model (said in a note);
- a run key (or a unique prefix of one) under the state directory's runs, or a run directory;
- a directory holding an adapter (`adapter_config.json`, on the config's base model) or a
  full model (`config.json`);
- `http(s)://HOST/v1#MODEL`: an OpenAI-compatible endpoint (vLLM, TGI), served name after `#`;
- `vllm:PATH`: vLLM's offline engine on a model directory.

Prompts: a paired comparison must change the model, not the prompt. A training run is
evaluated with the chat template it was trained with (the `chat_template.jinja` its artifact
ships) and records its `task.system_prompt`; every other local model (`base`, `production`,
a directory, `vllm:PATH`) renders with the `prompt` passed in, the candidate's
(`candidate_prompt`), else ftci.yaml's (`train.chat_template`, `task.system_prompt`); with no
template there, the model's own. The sha256 of the template text is in each model's
`details["chat_template_sha256"]` and in every cache key. An endpoint renders with the
server's template, which ftci cannot see.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError
from ftci.evals.model import ModelRef, PromptSetting

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.evals.backends.base import ModelBackend
    from ftci.train.cache import CachedRun


def resolve_model(spec: str | None, *, role: str, loaded: LoadedConfig,
                  prompt: PromptSetting | None = None) -> ModelRef:
    """The model `spec` names; `prompt` (the candidate's, for a baseline) is what a model that
    is not a training run renders with, instead of ftci.yaml's."""
    from ftci.state import is_runs_dir, root_of_run
    from ftci.train.cache import find_cached, latest_run, runs_dir

    root = loaded.root

    def shared() -> PromptSetting:  # read only for the models that use it
        return prompt or config_prompt(loaded)

    if spec is None or spec == "latest":
        run = latest_run(root)
        if run is None:
            raise BadInputError(f"no trained {role}: {runs_dir(root)} holds no complete run",
                                hint="run `ftci train` first, or pass --model PATH")
        return _run_ref(run, role, loaded)
    if spec in ("base", "production"):
        ref = _base_ref(role, loaded, shared())
        if spec == "production":
            ref.spec = "production"
            ref.details["note"] = "no release exists yet: production is the base model"
        return ref
    if spec.startswith(("http://", "https://")):
        return _endpoint_ref(spec, role)
    if spec.startswith("vllm:"):
        return _vllm_ref(spec[len("vllm:"):], role, loaded, shared())
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() / path) if path.exists() else root / path
    if not path.exists() and len(spec) >= 6 and all(c in "0123456789abcdef" for c in spec):
        matches = sorted(p for p in runs_dir(root).glob(spec + "*") if p.is_dir())
        if len(matches) > 1:
            raise BadInputError(f"run key prefix {spec!r} matches {len(matches)} runs",
                                hint="give more characters of the run key")
        if matches:
            path = matches[0]
    if (path / "manifest.json").is_file() and (path / "inputs.json").is_file():
        run = find_cached(root_of_run(path), path.name) if is_runs_dir(path.parent) else None
        if run is None:
            raise BadInputError(f"{path} is not a complete training run",
                                hint="finish it with `ftci train` (it resumes)")
        return _run_ref(run, role, loaded)
    if (path / "adapter_config.json").is_file():
        base = _base_dir(loaded)
        return _hf_ref(role, spec, base, path, f"adapter {path} on {loaded.config.base_model}",
                       shared())
    if (path / "config.json").is_file():
        return _hf_ref(role, spec, path, None, f"model {path}", shared())
    raise BadInputError(
        f"cannot find the {role} model {spec!r}",
        hint="give a run key, a run/adapter/model directory, `base`, `production`, "
             "an endpoint URL (http://host:port/v1#served-name) or vllm:PATH")


def candidate_prompt(spec: str | None, loaded: LoadedConfig) -> PromptSetting:
    """The prompt setting the candidate `spec` is evaluated with (a run's own, else
    ftci.yaml's), to pass to the baseline's `resolve_model`. Reads no weights."""
    ref = resolve_model(spec, role="candidate", loaded=loaded)
    return ref.prompt or config_prompt(loaded)


def config_prompt(loaded: LoadedConfig) -> PromptSetting:
    """ftci.yaml's `train.chat_template` (its text; None: each model's own) and
    `task.system_prompt`."""
    from ftci.data.tokenizer import chat_template_override

    config = loaded.config
    return PromptSetting(chat_template_override(config, loaded.root), config.task.system_prompt,
                         "ftci.yaml")


def run_prompt(run: CachedRun) -> PromptSetting:
    """What a training run was trained with: the chat template its artifact ships (written
    from the training tokenizer, `train.chat_template` applied) and the `task.system_prompt`
    its manifest records."""
    from ftci.evals.backends.identity import own_chat_template

    artifact = run.run_dir / ("model" if (run.run_dir / "model").is_dir() else "adapter")
    system_prompt = (_recorded_task(run.manifest) or {}).get("system_prompt")
    return PromptSetting(own_chat_template(artifact),
                         system_prompt if isinstance(system_prompt, str) and system_prompt
                         else None, f"run {run.key[:12]}")


def _recorded_task(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """manifest["inputs"]["config"]["task"]: the task section the run key hashed."""
    node: Any = manifest
    for name in ("inputs", "config", "task"):
        node = node.get(name) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _base_dir(loaded: LoadedConfig) -> Path:
    from ftci.models.starter import resolve_base_model

    return resolve_base_model(loaded.config.base_model, loaded.root)


def _base_ref(role: str, loaded: LoadedConfig, prompt: PromptSetting) -> ModelRef:
    return _hf_ref(role, "base", _base_dir(loaded), None,
                   f"base model {loaded.config.base_model}", prompt)


def _run_ref(run: CachedRun, role: str, loaded: LoadedConfig) -> ModelRef:
    key, manifest = run.key, run.manifest
    prompt = run_prompt(run)
    full = run.run_dir / "model"
    if full.is_dir():
        ref = _hf_ref(role, key, full, None, f"run {key[:12]} (full fine-tune)", prompt,
                      run_key=key)
    else:
        recorded = manifest.get("base_model_path")
        base = Path(str(recorded)) if isinstance(recorded, str) and Path(recorded).is_dir() \
            else _base_dir(loaded)
        ref = _hf_ref(role, key, base, run.run_dir / "adapter",
                      f"run {key[:12]} (adapter on {manifest.get('base_model', base)})",
                      prompt, run_key=key)
    if _recorded_task(manifest) is not None and \
            prompt.system_prompt != (loaded.config.task.system_prompt or None):
        ref.details["note"] = (f"run {key[:12]} was trained with another task.system_prompt "
                               "than ftci.yaml's")
    return ref


def _hf_ref(role: str, spec: str, model_dir: Path, adapter_dir: Path | None,
            description: str, prompt: PromptSetting, run_key: str | None = None) -> ModelRef:
    from ftci.evals.backends.hf import tokenizer_dir

    template = _template(prompt, tokenizer_dir(model_dir, adapter_dir))

    def build() -> ModelBackend:
        from ftci.evals.backends.hf import HFBackend

        return HFBackend(model_dir, adapter_dir, chat_template=template)

    details: dict[str, object] = {"model_dir": str(model_dir)}
    if adapter_dir is not None:
        details["adapter_dir"] = str(adapter_dir)
    if run_key is not None:
        details["run_key"] = run_key
    details.update(_template_details(template, prompt))
    return ModelRef(role, spec, "hf", description, build, None, details,
                    chat_template=template, prompt=prompt)


def _template(prompt: PromptSetting, tokenizer_dir: Path) -> str | None:
    """The template text a local model renders with: the prompt setting's, else its own."""
    from ftci.evals.backends.identity import own_chat_template

    return prompt.chat_template if prompt.chat_template is not None else \
        own_chat_template(tokenizer_dir)


def _template_details(template: str | None, prompt: PromptSetting) -> dict[str, object]:
    from ftci.evals.backends.identity import text_sha256

    source = prompt.source if prompt.chat_template is not None else "the model's own"
    return {"chat_template_sha256": text_sha256(template), "chat_template_source": source}


def _endpoint_ref(url: str, role: str) -> ModelRef:
    base_url, _, served = url.partition("#")
    if not served:
        raise BadInputError(f"{role} endpoint {url!r} does not name the served model",
                            hint=f"append it: {base_url}#NAME (GET {base_url.rstrip('/')}"
                                 "/models lists the names)")

    def build() -> ModelBackend:
        from ftci.evals.backends.openai import OpenAIBackend

        return OpenAIBackend(base_url, served)

    return ModelRef(role, url, "openai", f"endpoint {base_url} ({served})",
                    build, None, {"base_url": base_url, "served_model": served,
                                  "chat_template_sha256": None,
                                  "chat_template_source": "the server's own (not visible)"})


def _vllm_ref(path_text: str, role: str, loaded: LoadedConfig,
              prompt: PromptSetting) -> ModelRef:
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = loaded.root / path
    if not (path / "config.json").is_file():
        raise BadInputError(f"vllm:{path_text}: {path} is not a model directory",
                            hint="vLLM's offline engine needs a merged model directory")
    template = _template(prompt, path)

    def build() -> ModelBackend:
        return _vllm_backend(path, template, loaded.root)

    return ModelRef(role, f"vllm:{path_text}", "vllm", f"vLLM engine on {path}", build, None,
                    {"model_dir": str(path), **_template_details(template, prompt)},
                    chat_template=template, prompt=prompt)


def _vllm_backend(path: Path, template: str | None, root: Path) -> ModelBackend:
    """vLLM in this interpreter when it imports `vllm`; else a worker in the vLLM venv
    (ftci/envs.py), with vLLM's CPU engine settings where there is no accelerator."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        from ftci.evals.backends.vllm import VLLMBackend

        return VLLMBackend(path, chat_template=template)
    from ftci import envs
    from ftci.evals.backends.vllm_worker import VLLMWorkerBackend, cpu_engine_defaults

    try:
        python = envs.tool_python(envs.VLLM, root)
    except BadInputError as exc:
        raise BadInputError(f"vllm:{path}: {exc.message}",
                            hint="`make vllm-venv` builds the vLLM CPU venv (or `pip install "
                                 "vllm` on a CUDA machine), or set FTCI_VLLM_PYTHON") from exc
    return VLLMWorkerBackend(path, python=python, chat_template=template,
                             **cpu_engine_defaults())
