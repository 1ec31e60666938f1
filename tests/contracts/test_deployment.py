"""The deployment record contract: `ftci schema deployment` prints the shipped schema, which
accepts a record a real ledger wrote and refuses a broken one; the model reads older and newer
minors and refuses a newer major. (The shipped file matching the model is
test_contracts.py's parametrized check over every contract, this one included.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.contracts import SCHEMAS, json_schema, shipped_schema
from ftci.contracts.deployment import DeploymentRecord
from ftci.deploy.ledger import DeploymentLedger
from ftci.errors import BadInputError


def ledger_record(tmp_path: Path) -> dict[str, Any]:
    """A refused deployment as the ledger writes and reads it."""
    with DeploymentLedger(tmp_path) as ledger:
        row = ledger.begin(environment="production", project="intents", version="0.2.0",
                           release_key="abc.def", engine="vllm", launcher="process",
                           endpoint="http://127.0.0.1:8080/v1", server={"port": 8101},
                           by="ci", previous="0.1.0")
        ledger.update_server(row, {"launcher": "process", "version": "0.2.0",
                                   "url": "http://127.0.0.1:8101", "port": 8101, "pid": 99,
                                   "name": None, "log": "/tmp/log", "model": "/m", "extra": {}})
        ledger.update_checks(row, {"health": 2.5, "smoke": {"agreement": 0.5, "items": 8,
                                                            "metrics": {"accuracy": 0.5}}})
        ledger.mark_refused(row, "smoke", "agreement 0.50 < 0.95")
        record = ledger.get(row)
    assert record is not None
    return record.to_dict()


def test_deployment_is_a_registered_contract_with_a_current_shipped_schema() -> None:
    assert SCHEMAS["deployment"] is DeploymentRecord
    assert json.loads(shipped_schema("deployment")) == json_schema("deployment"), \
        "ftci/contracts/schemas/deployment.schema.json is stale: run `python -m ftci.contracts`"


def test_ftci_schema_deployment_validates_a_ledger_record_and_is_not_vacuous(
        tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema", "deployment"])
    assert result.exit_code == 0, result.output
    assert result.output == shipped_schema("deployment")
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    record = ledger_record(tmp_path)
    validator.validate(record)
    for broken in ({**record, "state": "paused"}, {**record, "server": {"url": "x"}},
                   {**record, "engine": "llamacpp"}, {k: v for k, v in record.items()
                                                      if k != "endpoint"}):
        assert list(validator.iter_errors(broken)), broken


def test_a_record_reads_a_newer_minor_and_refuses_a_newer_major(tmp_path: Path) -> None:
    record = ledger_record(tmp_path)
    newer = DeploymentRecord.from_dict({**record, "schema_version": "1.4", "region": "eu"})
    assert newer.state == "refused" and newer.checks.smoke is not None
    assert newer.checks.smoke.metrics == {"accuracy": 0.5}
    with pytest.raises(BadInputError, match="written by a newer ftci"):
        DeploymentRecord.from_dict({**record, "schema_version": "2.0"}, source="d.json")
    with pytest.raises(BadInputError, match="d.json: not a valid deployment record: state"):
        DeploymentRecord.from_dict({**record, "state": "paused"}, source="d.json")
