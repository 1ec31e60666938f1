"""Which model a name means: `--model` / `--baseline` / `eval.baseline` to a `ModelRef`.

- nothing (candidate): the latest complete training run of the repository;
- `base`: the config's base model (the baseline until a release exists);
- `production`: the released model; until a release exists, the base model (said in a note);
- a run key (or a unique prefix of one) under `.ftci/runs/`, or a run directory;
- a directory holding an adapter (`adapter_config.json`, on the config's base model) or a
  full model (`config.json`);
- `http(s)://HOST/v1#MODEL`: an OpenAI-compatible endpoint (vLLM, TGI), served name after `#`;
- `vllm:PATH`: vLLM's offline engine on a model directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ftci.errors import BadInputError
from ftci.evals.model import ModelRef

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.evals.backends.base import ModelBackend


def resolve_model(spec: str | None, *, role: str, loaded: LoadedConfig) -> ModelRef:
    from ftci.train.cache import find_cached, latest_run, runs_dir

    root = loaded.root
    if spec is None or spec == "latest":
        run = latest_run(root)
        if run is None:
            raise BadInputError(f"no trained {role}: {runs_dir(root)} holds no complete run",
                                hint="run `ftci train` first, or pass --model PATH")
        return _run_ref(run.run_dir, run.key, run.manifest, role, loaded)
    if spec in ("base", "production"):
        ref = _base_ref(role, loaded)
        if spec == "production":
            ref.spec = "production"
            ref.details["note"] = "no release exists yet: production is the base model"
        return ref
    if spec.startswith(("http://", "https://")):
        return _endpoint_ref(spec, role)
    if spec.startswith("vllm:"):
        return _vllm_ref(spec[len("vllm:"):], role, loaded)
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
        in_runs = path.parent.name == "runs" and path.parent.parent.name == ".ftci"
        run = find_cached(path.parent.parent.parent, path.name) if in_runs else None  # <root>
        if run is None:
            raise BadInputError(f"{path} is not a complete training run",
                                hint="finish it with `ftci train` (it resumes)")
        return _run_ref(run.run_dir, run.key, run.manifest, role, loaded)
    if (path / "adapter_config.json").is_file():
        base = _base_dir(loaded)
        return _hf_ref(role, spec, base, path, f"adapter {path} on {loaded.config.base_model}")
    if (path / "config.json").is_file():
        return _hf_ref(role, spec, path, None, f"model {path}")
    raise BadInputError(
        f"cannot find the {role} model {spec!r}",
        hint="give a run key, a run/adapter/model directory, `base`, `production`, "
             "an endpoint URL (http://host:port/v1#served-name) or vllm:PATH")


def _base_dir(loaded: LoadedConfig) -> Path:
    from ftci.models.starter import resolve_base_model

    return resolve_base_model(loaded.config.base_model, loaded.root)


def _base_ref(role: str, loaded: LoadedConfig) -> ModelRef:
    return _hf_ref(role, "base", _base_dir(loaded), None,
                   f"base model {loaded.config.base_model}")


def _run_ref(run_dir: Path, key: str, manifest: dict[str, object], role: str,
             loaded: LoadedConfig) -> ModelRef:
    full = run_dir / "model"
    if full.is_dir():
        return _hf_ref(role, key, full, None, f"run {key[:12]} (full fine-tune)",
                       run_key=key)
    recorded = manifest.get("base_model_path")
    base = Path(str(recorded)) if isinstance(recorded, str) and Path(recorded).is_dir() \
        else _base_dir(loaded)
    return _hf_ref(role, key, base, run_dir / "adapter",
                   f"run {key[:12]} (adapter on {manifest.get('base_model', base)})",
                   run_key=key)


def _hf_ref(role: str, spec: str, model_dir: Path, adapter_dir: Path | None,
            description: str, run_key: str | None = None) -> ModelRef:
    def build() -> ModelBackend:
        from ftci.evals.backends.hf import HFBackend

        return HFBackend(model_dir, adapter_dir)

    details: dict[str, object] = {"model_dir": str(model_dir)}
    if adapter_dir is not None:
        details["adapter_dir"] = str(adapter_dir)
    if run_key is not None:
        details["run_key"] = run_key
    return ModelRef(role, spec, "hf", description, build, None, details)


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
                    build, None, {"base_url": base_url, "served_model": served})


def _vllm_ref(path_text: str, role: str, loaded: LoadedConfig) -> ModelRef:
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = loaded.root / path
    if not (path / "config.json").is_file():
        raise BadInputError(f"vllm:{path_text}: {path} is not a model directory",
                            hint="vLLM's offline engine needs a merged model directory")

    def build() -> ModelBackend:
        from ftci.evals.backends.vllm import VLLMBackend

        return VLLMBackend(path)

    return ModelRef(role, f"vllm:{path_text}", "vllm", f"vLLM engine on {path}", build, None,
                    {"model_dir": str(path)})
