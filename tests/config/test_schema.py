"""The JSON Schema editors use: forbids unknown keys everywhere and documents the defaults."""

from __future__ import annotations

from typing import Any

from ftci.config import json_schema


def _objects(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_objects(value))
    return found


def test_schema_forbids_unknown_keys_at_every_level() -> None:
    schema = json_schema()
    objects = _objects(schema)
    assert len(objects) >= 10
    assert all(obj.get("additionalProperties") is False for obj in objects)


def test_schema_carries_required_keys_and_defaults() -> None:
    schema = json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["required"]) == {"project", "task", "base_model"}
    lora = schema["$defs"]["LoraConfig"]["properties"]
    assert (lora["r"]["default"], lora["alpha"]["default"], lora["dropout"]["default"]) == (
        16, 32, 0.05)
    for key in ("base_model", "task", "data", "train", "eval", "release", "deploy",
                "regression", "project"):
        assert key in schema["properties"]


def test_task_types_agree_between_cli_and_config() -> None:
    """The CLI lists task types without loading pydantic; both lists must stay the same."""
    from typing import get_args

    from ftci.config.schema import TaskType
    from ftci.tasks import TASK_TYPES

    assert get_args(TaskType) == TASK_TYPES
