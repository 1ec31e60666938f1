"""What one stage writes and another reads: typed, versioned models with a shipped JSON Schema.

- `DataReport`: `ftci --json data check` (`data-check.json` of `ftci run`);
- `RunManifest`: a training run's `manifest.json`; `TrainOutcome`: `ftci --json train`, which
  embeds the manifest;
- `EvalResults`: `results.json` of `ftci eval`;
- `ReleaseManifest`: `release.json` of a released version (`ftci release`);
- `DeploymentRecord`: one row of the deployments ledger (`ftci deploy`).

Each carries `schema_version` ("MAJOR.MINOR"; see ftci/contracts/_base.py for the rule) and
reads with `from_dict` / `read` (every problem a BadInputError, exit 2) and writes with
`to_dict`. `ftci schema NAME` prints the JSON Schema shipped in ftci/contracts/schemas/, and
`python -m ftci.contracts` regenerates those files from the models. Import-light: pydantic only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftci.contracts._base import Contract
from ftci.contracts.data_check import CheckedData, DataReport
from ftci.contracts.deployment import DeploymentRecord
from ftci.contracts.release import ReleaseManifest
from ftci.contracts.results import EvalResults, Gate, GateItem, WorstItem
from ftci.contracts.run import RunManifest, TrainOutcome, TrainResult

__all__ = ["SCHEMAS", "CheckedData", "Contract", "DataReport", "DeploymentRecord", "EvalResults",
           "Gate", "GateItem", "ReleaseManifest", "RunManifest", "TrainOutcome", "TrainResult",
           "WorstItem", "json_schema", "schema_path", "shipped_schema"]

SCHEMAS: dict[str, type[Contract]] = {
    model.SCHEMA_NAME: model for model in (DataReport, RunManifest, TrainOutcome, EvalResults,
                                     ReleaseManifest, DeploymentRecord)}
SCHEMA_DIR = Path(__file__).parent / "schemas"


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of contract `name`, generated from its model."""
    model = SCHEMAS[name]
    schema = model.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_path(name: str) -> Path:
    return SCHEMA_DIR / f"{name}.schema.json"


def shipped_schema(name: str) -> str:
    """The schema file shipped in the package, as text (nothing is generated to print it)."""
    return schema_path(name).read_text(encoding="utf-8")


def schema_text(name: str) -> str:
    return json.dumps(json_schema(name), indent=2, ensure_ascii=False) + "\n"


def write_schemas() -> list[Path]:
    """Regenerate every shipped schema file from the models."""
    written = []
    for name in SCHEMAS:
        schema_path(name).write_text(schema_text(name), encoding="utf-8")
        written.append(schema_path(name))
    return written
