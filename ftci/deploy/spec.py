"""What a release is served with: `ServeSpec`, read from the release and ftci.yaml, and the
engine command lines every launcher renders from it (vLLM, TGI).

Everything here comes from the release, never from the serving host's guesses:

- the served model name is `deploy.served_name`, default `project.name`: the same for every
  release, so clients never change;
- the quantization is the release's (vLLM detects compressed-tensors from the checkpoint's
  `quantization_config`; TGI is told with `--quantize`, from the release's `serve_flags`);
- the chat template is the one the model was trained and evaluated with, shipped in the
  release (`chat_template.jinja`, inlined in `tokenizer_config.json` for TGI, which does not
  read the .jinja file), and the generation config is the release's `generation_config.json`;
- the context length is `deploy.max_model_len`, else `train.max_seq_len + eval.max_new_tokens`,
  capped at the model's `max_position_embeddings`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ftci.errors import BadInputError

if TYPE_CHECKING:
    from ftci.config.schema import FtciConfig
    from ftci.contracts.release import ReleaseManifest

Engine = Literal["vllm", "tgi"]
VLLM_IMAGE = "vllm/vllm-openai:v0.32.0"
TGI_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.6"
# vLLM on a machine without an accelerator, as the quantization gate ran it
# (ftci/evals/backends/vllm_worker.py CPU_ENGINE): the smoke eval compares with those outputs.
CPU_FLAGS: tuple[tuple[str, ...], ...] = (("--dtype", "bfloat16"), ("--enforce-eager",))


@dataclass(frozen=True)
class ServeSpec:
    """One release, ready to serve."""

    engine: Engine
    project: str
    version: str
    release_key: str
    served_name: str
    model_dir: Path  # the release's model directory on this host (fetched, verified)
    quantization: str  # the release's scheme: w8a8-int8 | fp8 | w4a16 | bnb-nf4 | none
    serve_flags: tuple[str, ...]  # what the release says this engine needs (--quantize ...)
    max_model_len: int
    max_input_tokens: int  # TGI: the prompt budget (train.max_seq_len, capped)
    engine_args: tuple[str, ...] = ()  # deploy.engine_args, verbatim
    cpu: bool = False  # no accelerator here: vLLM's CPU settings
    hub_repo: str | None = None  # hf registry: where the release lives (TGI --model-id)
    hub_revision: str | None = None  # ... and its commit (TGI --revision)
    template_file: bool = True  # chat_template.jinja ships (else only tokenizer_config's)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def chat_template(self) -> Path:
        return self.model_dir / "chat_template.jinja"

    @property
    def label(self) -> str:
        return f"{self.project} v{self.version}"

    def image(self, configured: str | None) -> str:
        return configured or (VLLM_IMAGE if self.engine == "vllm" else TGI_IMAGE)


def build_spec(manifest: ReleaseManifest, release_dir: Path, config: FtciConfig, *,
               cpu: bool | None = None) -> ServeSpec:
    """The spec of `manifest`'s release, fetched into `release_dir`; BadInputError when the
    release cannot be served by `deploy.target` (an adapter-only release, a bitsandbytes
    artifact on vLLM, a model without a chat template)."""
    from ftci.release import layout

    engine: Engine = config.deploy.target or "vllm"
    model_dir = Path(release_dir) / layout.MODEL
    if not (model_dir / "config.json").is_file():
        raise BadInputError(
            f"v{manifest.version} ships no model directory ({layout.MODEL}/config.json): an "
            "adapter-only release (release.merge_adapter: false) cannot be served",
            hint="release with release.merge_adapter: true (the default), then deploy that")
    scheme = manifest.quantization.scheme
    flags = manifest.quantization.serve_flags.get(engine)
    if not manifest.quantization.serve_flags:  # a manifest that records none: the scheme's
        from ftci.release.quantize import SERVE_FLAGS

        flags = SERVE_FLAGS.get(scheme, {}).get(engine)
    if flags is None:
        other = "tgi" if engine == "vllm" else "vllm"
        raise BadInputError(
            f"v{manifest.version} is quantized as {scheme}, which {engine} does not serve",
            hint=f"set deploy.target: {other}, or release with another release.quantization")
    if not _has_chat_template(model_dir):
        raise BadInputError(
            f"v{manifest.version}: {model_dir} has no chat template (chat_template.jinja or "
            "tokenizer_config.json's chat_template)",
            hint="serve what you evaluated: release from a run whose tokenizer has a template")
    from ftci.evals.backends.vllm import fit_model_len

    wanted = config.deploy.max_model_len or \
        config.train.max_seq_len + config.eval.max_new_tokens
    max_model_len = fit_model_len(model_dir, wanted) or wanted
    if cpu is None:
        from ftci.evals.backends.identity import accelerator_possible

        cpu = not accelerator_possible()
    hub = manifest.model_extra or {}
    return ServeSpec(
        engine=engine, project=manifest.project, version=manifest.version,
        release_key=manifest.release_key,
        served_name=config.deploy.served_name or manifest.project, model_dir=model_dir,
        quantization=scheme, serve_flags=tuple(flags), max_model_len=max_model_len,
        max_input_tokens=min(config.train.max_seq_len, max_model_len - 1),
        engine_args=tuple(config.deploy.engine_args), cpu=cpu,
        hub_repo=hub.get("hub_repo"), hub_revision=hub.get("hub_revision"),
        template_file=(model_dir / "chat_template.jinja").is_file())


def vllm_args(spec: ServeSpec, *, host: str, port: int, model: str | None = None) -> list[str]:
    """Flags for vLLM's OpenAI server (`python -m vllm.entrypoints.openai.api_server` or
    `vllm serve`); `model`: the model path as the server sees it (a container mount)."""
    where = model or str(spec.model_dir)
    args = ["--model", where, "--served-model-name", spec.served_name,
            "--host", host, "--port", str(port),
            "--max-model-len", str(spec.max_model_len),
            "--generation-config", where]
    if spec.template_file:  # else vLLM reads tokenizer_config.json's template by itself
        args += ["--chat-template", f"{where.rstrip('/')}/chat_template.jinja"]
    args += list(spec.serve_flags)
    if spec.cpu:  # each unless deploy.engine_args sets that flag itself
        for flag in CPU_FLAGS:
            if flag[0] not in spec.engine_args:
                args += flag
    return args + list(spec.engine_args)


def tgi_args(spec: ServeSpec, *, host: str, port: int, model: str | None = None) -> list[str]:
    """Flags for TGI's launcher (`text-generation-launcher`); `model`: a path as the server
    sees it, default the Hub repo (with `--revision`) where the release lives there."""
    args = ["--model-id", model or spec.hub_repo or str(spec.model_dir)]
    if model is None and spec.hub_repo and spec.hub_revision:
        args += ["--revision", spec.hub_revision]
    args += ["--hostname", host, "--port", str(port),
             "--max-input-tokens", str(spec.max_input_tokens),
             "--max-total-tokens", str(spec.max_model_len), *spec.serve_flags]
    return args + list(spec.engine_args)


def engine_args(spec: ServeSpec, *, host: str, port: int, model: str | None = None
                ) -> list[str]:
    render = vllm_args if spec.engine == "vllm" else tgi_args
    return render(spec, host=host, port=port, model=model)


def _has_chat_template(model_dir: Path) -> bool:
    if (model_dir / "chat_template.jinja").is_file():
        return True
    try:
        config = json.loads((model_dir / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return bool(config.get("chat_template"))
