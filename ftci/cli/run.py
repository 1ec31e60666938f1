"""`ftci run`: the pull-request pipeline locally, one headline per stage."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ftci.cli.base import config_options, config_path_option, emit_json, wants_json
from ftci.pipeline import STAGES

if TYPE_CHECKING:
    from ftci.pipeline import PipelineResult, StageResult

COLORS = {"ok": "green", "excellent": "green", "okay": "green", "skipped": "white"}
SHOWN_OUTPUTS = (("markdown", "report.md"), ("html", "report.html"), ("results", "results.json"),
                 ("data_check", "data-check.json"), ("run_dir", "run dir"))


@click.command("run")
@config_path_option
@config_options
@click.option("--from", "start", type=click.Choice(STAGES), default=None,
              help="First stage to run (default: plan).")
@click.option("--until", type=click.Choice(STAGES), default=None,
              help="Last stage to run (default: report).")
@click.option("--model", default=None, metavar="SPEC",
              help="Candidate for the eval stage (default: the run the train stage produced, "
                   "else the latest run).")
@click.option("--force", is_flag=True, help="Retrain even when a complete run exists.")
@click.pass_context
def run_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                start: str | None, until: str | None, model: str | None, force: bool) -> None:
    """Run the PR pipeline here: plan, data, split, train, eval, report.

    Stops at the first failing stage with its exit code (data check or eval gate: 1, bad input:
    2); the report stage still runs, as the workflow's report job does. Training and eval reuse
    cached results when their inputs are unchanged. Everything goes to the state
    directory's reports/<time>/.
    """
    from ftci.extras import require_extra
    from ftci.pipeline import run_pipeline, select_stages

    selected = select_stages(start, until)
    if "train" in selected or "eval" in selected:  # plan..split run on a lean install
        require_extra("eval" if "eval" in selected else "train", command="ftci run")
    as_json = wants_json(ctx)
    # Training and pytest print progress; under --json it goes to stderr so stdout stays JSON.
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with quiet:
        result = run_pipeline(config_path, overrides, start=start, until=until, model=model,
                              force=force, on_stage=None if as_json else _show_stage)
    if as_json:
        emit_json(result.to_dict())
    else:
        _show_outputs(result)
    ctx.exit(result.exit_code)


def _show_stage(stage: StageResult) -> None:
    status = stage.status.upper()
    color = COLORS.get(stage.status, "red")
    timing = "" if stage.status == "skipped" else f"  ({stage.seconds:.1f} s)"
    click.echo(f"{stage.name:<7} " + click.style(f"{status:<9}", fg=color, bold=True)
               + f" {stage.headline}{timing}")
    for line in stage.details:
        click.echo(f"        {line}")


def _show_outputs(result: PipelineResult) -> None:
    outputs = result.outputs()
    shown = [(label, outputs[key]) for key, label in SHOWN_OUTPUTS if key in outputs]
    if shown:
        width = max(len(label) for label, _ in shown)
        for label, path in shown:
            click.echo(f"{label + ':':<{width + 1}} {path}")
