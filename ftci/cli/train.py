"""`ftci train`: the plan, then a cache hit or a trained adapter, and the headline numbers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ftci.cli.base import config_options, config_path_option, emit_json, wants_json

if TYPE_CHECKING:
    from ftci.train.guardrails import TrainPlan
    from ftci.train.launch import PreparedRun, TrainOutcome


@click.command("train")
@config_path_option
@config_options
@click.option("--force", is_flag=True,
              help="Train from scratch even when a complete run with the same inputs exists.")
@click.option("--strict", is_flag=True, help="Treat config lint warnings as errors (exit 2).")
@click.option("--launcher", type=click.Choice(["accelerate"]), default=None,
              help="Launch training through `accelerate launch` (multi-GPU data parallel).")
@click.option("--num-processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Training processes (one per GPU); more than 1 needs --launcher.")
@click.option("--in-process", is_flag=True, hidden=True)
@click.option("--run-key", default=None, hidden=True)
@click.option("--recipe-module", default=None, hidden=True)
@click.pass_context
def train_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                  force: bool, strict: bool, launcher: str | None, num_processes: int,
                  in_process: bool, run_key: str | None, recipe_module: str | None) -> None:
    """Fine-tune the base model on the train split; reuse the run when its inputs are unchanged.

    The run key hashes the data splits, the training config (task, train, data.split), the base
    model's files, the chat template, library versions, device and seed; eval gates are not
    inputs. Runs live in the state directory's runs/<key>/ (adapter/, manifest.json).
    """
    from ftci.extras import require_extra

    require_extra("train", command="ftci train")
    from ftci.train.launch import execute_training, prepare_training, run_in_process

    if in_process:  # one process of `accelerate launch`, started by `ftci train --launcher`
        if not run_key:
            raise click.UsageError("--in-process needs --run-key")
        run_in_process(config_path, overrides, run_key=run_key, force=force,
                       recipe_module=recipe_module)
        return
    prepared = prepare_training(config_path, overrides, force=force, strict=strict,
                                launcher=launcher, num_processes=num_processes)
    as_json = wants_json(ctx)
    if not as_json:
        _show_plan(prepared)
    shown_notes = len(prepared.notes)
    outcome = execute_training(prepared, launcher=launcher, recipe_module=recipe_module)
    if as_json:
        emit_json(outcome.to_dict())
    else:
        _show_outcome(outcome, outcome.notes[shown_notes:])


def _show_plan(prepared: PreparedRun) -> None:
    for lint in prepared.lints:
        click.secho(f"warning: {lint.as_problem().render()}", fg="yellow", err=True)
    for note in prepared.notes:
        click.echo(f"note: {note}")
    plan = prepared.plan
    base = prepared.loaded.config.base_model
    click.echo(f"run {prepared.key}: {plan.method} on {plan.device}"
               + (f" x{plan.processes}" if plan.processes > 1 else "") + f", base {base}"
               + (f" ({_count(plan.params)} params, {_count(plan.trainable_params)} trainable)"
                  if plan.params else ""))
    click.echo("estimate: " + _estimate_line(plan))
    for warning in plan.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


def _estimate_line(plan: TrainPlan) -> str:
    from ftci.train.guardrails import format_bytes, format_seconds

    memory = "memory unknown"
    if plan.memory_needed is not None:
        memory = f"memory ~{format_bytes(plan.memory_needed)}"
        if plan.memory_available is not None:
            memory += f" of {format_bytes(plan.memory_available)} available"
    timing = "time unknown"
    if plan.seconds is not None:
        timing = (f"~{format_seconds(plan.seconds)} for ~{plan.tokens_per_epoch:,} tokens x "
                  f"{plan.epochs} epoch{'s' if plan.epochs != 1 else ''} "
                  f"({plan.train_records:,} train records)")
    return f"{memory}; {timing}"


def _show_outcome(outcome: TrainOutcome, late_notes: list[str]) -> None:
    run = outcome.run
    where = _relative(run.run_dir)
    if outcome.cached:
        when = run.finished_at.astimezone().strftime("%Y-%m-%d %H:%M %Z")
        click.secho(f"cache hit: {where} (trained {when})", fg="green")
        return
    for note in late_notes:  # e.g. a stale run directory moved aside
        click.echo(f"note: {note}")
    click.secho("trained: " + _headline(run.manifest.get("result", {})), fg="green")
    click.echo(f"artifacts: {_relative(run.adapter_dir)}")


def _headline(result: dict[str, Any]) -> str:
    from ftci.train.guardrails import format_seconds

    parts = []
    best = result.get("best_val_loss")
    if isinstance(best, (int, float)):
        parts.append(f"best val loss {best:.4f}")
    if isinstance(result.get("steps"), int):
        parts.append(f"{result['steps']:,} steps")
    if isinstance(result.get("tokens_seen"), int):
        parts.append(f"{result['tokens_seen']:,} tokens")
    if isinstance(result.get("wall_seconds"), (int, float)):
        parts.append(format_seconds(result["wall_seconds"]))
    return ", ".join(parts) or "done"


def _count(value: int | None) -> str:
    if value is None:
        return "?"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return str(value)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)

