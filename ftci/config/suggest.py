"""'Did you mean ...?' for unknown keys and names: edit distance plus common synonyms."""

from __future__ import annotations

from collections.abc import Iterable

# Names users bring from other tools (transformers, peft, axolotl) for ftci's keys.
SYNONYMS: dict[str, str] = {
    "rank": "r",
    "lora_r": "r",
    "lora_rank": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "lr": "learning_rate",
    "num_epochs": "epochs",
    "num_train_epochs": "epochs",
    "epoch": "epochs",
    "max_length": "max_seq_len",
    "max_seq_length": "max_seq_len",
    "sequence_len": "max_seq_len",
    "model": "base_model",
    "model_name": "base_model",
    "model_id": "base_model",
    "base_model_name_or_path": "base_model",
    "batch_size": "micro_batch_size",
    "per_device_train_batch_size": "micro_batch_size",
    "gradient_accumulation": "gradient_accumulation_steps",
    "label": "labels",
    "classes": "labels",
    "datasets": "sources",
    "dataset": "sources",
    "files": "sources",
    "suite": "suites",
    "gate": "gates",
    "load_in_4bit": "quantization",
}


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute; each costs 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate a typo most likely meant, or None when nothing is close enough."""
    options = list(candidates)
    lowered = name.lower().replace("-", "_")
    synonym = SYNONYMS.get(lowered)
    if synonym in options:
        return synonym
    if lowered in options:
        return lowered
    best: tuple[int, str] | None = None
    for option in options:
        distance = edit_distance(lowered, option.lower())
        if best is None or distance < best[0]:
            best = (distance, option)
    if best is None:
        return None
    allowed = max(1, min(3, len(name) // 3))
    if best[0] <= allowed:
        return best[1]
    # A shortened or versioned name: `smollm3` for `smollm2-135m-instruct`.
    stem = lowered[: max(4, len(lowered) - 2)]
    prefixed = [option for option in options if option.lower().startswith(stem)]
    return prefixed[0] if len(prefixed) == 1 else None
