"""ftci.yaml: the pydantic model, the loader with line numbers, overrides and lints."""

from __future__ import annotations

from ftci.config.loader import CONFIG_FILENAME, LoadedConfig, load_config, load_config_text
from ftci.config.schema import FtciConfig


def json_schema() -> dict[str, object]:
    """The JSON Schema of ftci.yaml, for editors (yaml-language-server) and other tools."""
    schema = FtciConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


__all__ = [
    "CONFIG_FILENAME",
    "FtciConfig",
    "LoadedConfig",
    "json_schema",
    "load_config",
    "load_config_text",
]
