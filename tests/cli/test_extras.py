"""A command whose extra is missing names it and exits 2 (ftci/extras.py).

The fast tier blocks imports the way Python documents (`sys.modules[name] = None` makes
`import name` fail) in a fresh interpreter; tests/ci/test_lean_install.py does the same
against a real venv without the extras.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ftci.errors import EXIT_BAD_INPUT, MissingExtraError
from ftci.extras import missing, require


def test_require_names_the_missing_modules_and_the_extra() -> None:
    assert missing(("json", "ftci_no_such_module")) == ["ftci_no_such_module"]
    require("json", extra="train")  # present: nothing happens
    with pytest.raises(MissingExtraError) as caught:
        require("json", "ftci_no_such_module", extra="train", command="ftci train")
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert caught.value.hint == "pip install 'ftci[train]'"
    assert caught.value.render().startswith("`ftci train` needs the Python package "
                                            "`ftci_no_such_module`")


def blocked(modules: tuple[str, ...], argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        f"for name in {modules!r}:\n    sys.modules[name] = None\n"
        "from ftci.cli import main\n"
        f"main({argv!r})\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.mark.parametrize(("argv", "extra"), [
    (["train"], "train"), (["eval"], "eval"), (["run"], "eval"), (["run", "--until", "train"],
                                                                  "train"),
    (["models", "pull", "smollm2-135m-instruct"], "train"),
])
def test_model_commands_without_torch_exit_2_naming_the_extra(tmp_path: Path, argv: list[str],
                                                              extra: str) -> None:
    done = blocked(("torch",), argv, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"hint: pip install 'ftci[{extra}]'" in done.stderr
    assert "`torch`" in done.stderr and "Traceback" not in done.stderr


def test_run_until_split_needs_no_extra(tmp_path: Path) -> None:
    """plan, data and split run on a lean install: no extra is asked for (here: no config)."""
    done = blocked(("torch",), ["run", "--until", "split"], tmp_path)
    assert done.returncode == 2 and "ftci.yaml" in done.stderr, done.stderr
    assert "pip install" not in done.stderr
