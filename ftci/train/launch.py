"""`ftci train`: run key -> cache -> guardrails -> recipe -> manifest.

1. Load the config, lint it (`strict`: lints are errors), and hash every input (`runkey`).
2. A complete run with that key exists: return it (`cached=True`), without importing torch.
3. Otherwise estimate memory and time and refuse a run that cannot fit (`guardrails`).
4. Claim `runs/<key>/` in the state directory: `inputs.json` first; a directory that belongs to
   another key is moved aside to `runs/.stale/`, never trained into. `force` drops the old
   manifest and starts over (no resume).
5. Train with `ftci.train.recipe.run_training`, here or in `accelerate launch` processes
   (`ftci train --in-process`); rank 0 writes `manifest.json` last, which makes the run complete.

The recipe is a parameter (any object with `run_training`) so the orchestration can be used,
and tested, apart from the heavy libraries it would import.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ftci.child_python import python_argv, safe_environ
from ftci.ci.trust import require_trusted_event
from ftci.errors import EXIT_INTERRUPTED, BadInputError, InfraError, Lint
from ftci.state import refuse_committed_state, splits_dir, stale_runs_dir
from ftci.train.cache import (
    MANIFEST_NAME,
    CachedRun,
    find_cached,
    inputs_key,
    run_dir_for,
    write_inputs,
    write_manifest,
)
from ftci.train.guardrails import TrainPlan, check_plan, config_lints, plan_training
from ftci.train.runkey import RunInputs, compute_run_inputs

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.config.schema import FtciConfig
    from ftci.contracts import TrainOutcome as TrainOutcomeFile

RECIPE_MODULE = "ftci.train.recipe"
LAUNCHERS = ("accelerate",)


class Recipe(Protocol):
    def run_training(self, config: FtciConfig, root: Path, run_dir: Path, *, resume: bool = True,
                     progress: str = "auto") -> Any: ...


@dataclass
class PreparedRun:
    """Everything decided before training: inputs, key, plan, and a cached run if any."""

    loaded: LoadedConfig
    inputs: RunInputs
    plan: TrainPlan
    lints: list[Lint]
    cached: CachedRun | None
    force: bool = False
    num_processes: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.inputs.key

    @property
    def run_dir(self) -> Path:
        return run_dir_for(self.loaded.root, self.key)


@dataclass
class TrainOutcome:
    """A finished (or reused) run: where it is and what its manifest says."""

    run: CachedRun
    cached: bool
    plan: TrainPlan
    notes: list[str]
    lints: list[Lint]

    def to_contract(self) -> TrainOutcomeFile:
        """What `ftci --json train` prints: the `TrainOutcome` contract, the run's manifest
        embedded (ftci/contracts/run.py)."""
        from ftci.contracts import RunManifest
        from ftci.contracts import TrainOutcome as TrainOutcomeFile

        manifest = self.run.manifest
        return TrainOutcomeFile.from_dict({
            "schema_version": TrainOutcomeFile.VERSION,
            "ok": True,
            "cached": self.cached,
            "run_key": self.run.key,
            "run_dir": str(self.run.run_dir),
            "adapter_dir": str(self.run.adapter_dir),
            "finished_at": manifest.get("finished_at"),
            "device": manifest.get("device"),
            "result": manifest.get("result", {}),
            "plan": self.plan.to_dict(),
            "notes": self.notes,
            "warnings": [lint.as_problem().to_dict() | {"rule": lint.rule}
                         for lint in self.lints],
            "manifest": RunManifest.from_dict(manifest, source=self.run.run_dir / MANIFEST_NAME),
        }, source="ftci train")

    def to_dict(self) -> dict[str, Any]:
        return self.to_contract().to_dict()


def train(config_path: str | Path | None, overrides: Sequence[str] = (), *, force: bool = False,
          strict: bool = False, launcher: str | None = None, num_processes: int = 1,
          recipe: Recipe | None = None, recipe_module: str | None = None,
          progress: str = "auto") -> TrainOutcome:
    """Train the run `config_path` describes, or return the cached one (see the module doc).

    `recipe` (an object) or `recipe_module` (a module name, also passed to launched processes)
    replaces `ftci.train.recipe`."""
    prepared = prepare_training(config_path, overrides, force=force, strict=strict,
                                launcher=launcher, num_processes=num_processes)
    return execute_training(prepared, launcher=launcher, recipe=recipe,
                            recipe_module=recipe_module, progress=progress)


def prepare_training(config_path: str | Path | None, overrides: Sequence[str] = (), *,
                     force: bool = False, strict: bool = False, launcher: str | None = None,
                     num_processes: int = 1) -> PreparedRun:
    """Steps 1-3 without refusing yet: the caller shows the plan, then executes.

    An unapproved fork pull request is refused first, before any file is read
    (`ftci.ci.trust`); every entry point that trains checks it again."""
    from ftci.config import load_config
    from ftci.train.runkey import device_class

    require_trusted_event()
    _check_launch(launcher, num_processes, device_class())
    loaded = load_config(config_path, overrides)
    refuse_committed_state(loaded.root)
    lints = config_lints(loaded, strict=strict)
    inputs = compute_run_inputs(loaded, loaded.root, num_processes=num_processes)
    cached = None if force else find_cached(loaded.root, inputs.key)
    plan = plan_training(loaded.config, inputs.model_dir, splits_dir(loaded.root),
                         inputs.device, processes=num_processes)
    return PreparedRun(loaded, inputs, plan, lints, cached, force, num_processes,
                       list(inputs.notes))


def execute_training(prepared: PreparedRun, *, launcher: str | None = None,
                     recipe: Recipe | None = None, recipe_module: str | None = None,
                     progress: str = "auto") -> TrainOutcome:
    """Steps 2-5: the cached run, or a refusal, or a trained and recorded run."""
    require_trusted_event()
    if prepared.cached is not None:
        return TrainOutcome(prepared.cached, True, prepared.plan, prepared.notes, prepared.lints)
    if launcher is not None and recipe is not None:
        raise ValueError("a recipe object cannot reach launched processes; pass recipe_module")
    check_plan(prepared.plan)
    claim_run_dir(prepared)
    loaded, key = prepared.loaded, prepared.key
    if launcher == "accelerate":
        command = accelerate_command(loaded.path.resolve(), loaded.overrides, run_key=key,
                                     num_processes=prepared.num_processes,
                                     device=prepared.inputs.device, force=prepared.force,
                                     recipe_module=recipe_module)
        _launch(command, loaded.root)
    else:
        recipe = recipe or load_recipe(recipe_module or RECIPE_MODULE)
        train_here(loaded, prepared.inputs, recipe=recipe, force=prepared.force,
                   progress=progress, extra={"launcher": None})
    run = find_cached(loaded.root, key)
    if run is None:
        raise InfraError(f"training ended but {prepared.run_dir} is not a complete run",
                         hint="its manifest.json or adapter files are missing; rerun `ftci "
                         "train` (it resumes from the last checkpoint)")
    return TrainOutcome(run, False, prepared.plan, prepared.notes, prepared.lints)


def claim_run_dir(prepared: PreparedRun) -> None:
    """Make `runs/<key>/` this run's, with `inputs.json` written before anything else."""
    run_dir = prepared.run_dir
    if run_dir.is_dir() and any(run_dir.iterdir()):
        owner = inputs_key(run_dir)
        if owner != prepared.key:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
            aside = stale_runs_dir(prepared.loaded.root) / f"{run_dir.name}-{stamp}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            run_dir.rename(aside)
            prepared.notes.append(f"{run_dir} belonged to run key {owner or 'unknown'}: "
                                  f"moved it to {aside}")
        elif prepared.force:
            (run_dir / MANIFEST_NAME).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_inputs(run_dir, prepared.inputs)


def train_here(loaded: LoadedConfig, inputs: RunInputs, *, recipe: Recipe, force: bool,
               progress: str, extra: dict[str, Any]) -> None:
    """Run the recipe in this process; rank 0 (the only rank without a launcher) records it."""
    run_dir = run_dir_for(loaded.root, inputs.key)
    started = time.monotonic()
    result = recipe.run_training(loaded.config, loaded.root, run_dir, resume=not force,
                                 progress=progress)
    if int(os.environ.get("RANK", "0")) == 0:
        write_manifest(run_dir, inputs, result, {
            "base_model": loaded.config.base_model,
            "base_model_path": None if inputs.model_dir is None else str(inputs.model_dir),
            "config_path": str(loaded.path),
            "overrides": loaded.overrides,
            "processes": inputs.processes,
            "orchestration_seconds": round(time.monotonic() - started, 3),
            **extra,
        })


def run_in_process(config_path: str | Path | None, overrides: Sequence[str], *, run_key: str,
                   force: bool = False, recipe_module: str | None = None,
                   progress: str = "auto") -> None:
    """The body of each `accelerate launch` process (`ftci train --in-process`)."""
    from ftci.config import load_config

    require_trusted_event()
    loaded = load_config(config_path, overrides)
    refuse_committed_state(loaded.root)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    inputs = compute_run_inputs(loaded, loaded.root, num_processes=world_size)
    if inputs.key != run_key:
        raise InfraError(f"the run inputs changed while training started (run key "
                         f"{inputs.key}, launched as {run_key})", hint="rerun `ftci train`")
    if inputs_key(run_dir_for(loaded.root, run_key)) != run_key:
        raise InfraError(f"{run_dir_for(loaded.root, run_key)} was not prepared for this run",
                         hint="start training with `ftci train`; --in-process is internal")
    recipe = load_recipe(recipe_module or RECIPE_MODULE)
    train_here(loaded, inputs, recipe=recipe, force=force, progress=progress,
               extra={"launcher": "accelerate"})


def accelerate_command(config_path: Path, overrides: Sequence[str], *, run_key: str,
                       num_processes: int, device: str, force: bool = False,
                       recipe_module: str | None = None) -> list[str]:
    """`accelerate launch` (1.x CLI) running `python -m ftci train --in-process` per process.

    Mixed precision stays "no": the recipe picks its dtypes from the config. Several processes
    go through accelerate's multi-process launcher (`--multi_gpu`, torch elastic): on GPUs that
    is DDP over NCCL; on a CPU-only machine the Trainer (`use_cpu`) joins the same process group
    over gloo, which is how DDP is tested here. accelerate's own CPU launcher would need MPI.
    """
    command = [*python_argv("-m", "accelerate.commands.launch"),
               "--num_processes", str(num_processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no"]
    if num_processes > 1:
        command.append("--multi_gpu")
    command += ["-m", "ftci", "train", "--in-process", "--run-key", run_key,
                "-c", str(config_path)]
    for override in overrides:
        command += ["--set", override]
    if force:
        command.append("--force")
    if recipe_module:
        command += ["--recipe-module", recipe_module]
    return command


def load_recipe(module: str = RECIPE_MODULE) -> Recipe:
    """The training recipe module (imported only now: it brings torch and transformers)."""
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise InfraError(f"the training recipe `{module}` is not installed",
                             hint="reinstall ftci (pip install -e .)") from exc
        raise
    if not callable(getattr(loaded, "run_training", None)):
        raise InfraError(f"`{module}` has no run_training()")
    return loaded  # type: ignore[return-value]


def _check_launch(launcher: str | None, num_processes: int, device: str) -> None:
    if launcher is not None and launcher not in LAUNCHERS:
        raise BadInputError(f"unknown launcher {launcher!r}", hint="use --launcher accelerate")
    if num_processes < 1:
        raise BadInputError("--num-processes must be at least 1")
    if num_processes > 1 and launcher is None:
        raise BadInputError(f"--num-processes {num_processes} needs a launcher",
                            hint="add --launcher accelerate (one process per GPU)")
    cpus = os.cpu_count() or 1
    if num_processes > 1 and device != "cuda" and num_processes > cpus:
        raise BadInputError(f"--num-processes {num_processes} is more than this machine's "
                            f"{cpus} CPU cores (no CUDA GPU found)",
                            hint=f"use --num-processes {cpus} or fewer")


def _launch(command: list[str], root: Path) -> None:
    try:
        done = subprocess.run(command, cwd=root, check=False, env=safe_environ())
    except OSError as exc:
        raise InfraError(f"cannot start accelerate: {exc}") from exc
    if done.returncode in (EXIT_INTERRUPTED, -signal.SIGINT):
        raise KeyboardInterrupt
    if done.returncode != 0:
        raise InfraError(f"the training processes failed (accelerate launch exited with "
                         f"{done.returncode}); their messages are above",
                         hint="rerun with FTCI_DEBUG=1 for tracebacks")
