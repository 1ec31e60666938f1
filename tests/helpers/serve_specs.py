"""The ServeSpec of a banking-intents W8A8 release as deploy builds it from a release
directory, for the launcher tests that render commands and manifests without a release on
disk (docker, kubernetes): the model path is where a serving host would keep it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftci.deploy.spec import ServeSpec

MODEL_DIR = Path("/srv/ftci/releases/banking-intents/0.2.0/model")


def banking_serve_spec(engine: str = "vllm", version: str = "0.2.0",
                       **fields: Any) -> ServeSpec:
    """`engine` (vllm or tgi, with TGI's flag for the compressed-tensors checkpoint) serving
    `version` from MODEL_DIR; `fields` sets any other ServeSpec field."""
    return ServeSpec(engine=engine, project="banking-intents", version=version,  # type: ignore[arg-type]
                     release_key="k", served_name="banking-intents", model_dir=MODEL_DIR,
                     quantization="w8a8-int8",
                     serve_flags=("--quantize", "compressed-tensors") if engine == "tgi" else (),
                     max_model_len=512, max_input_tokens=384, **fields)
