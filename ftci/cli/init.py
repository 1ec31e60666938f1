"""`ftci init`: scaffold a fine-tune repository."""

from __future__ import annotations

from pathlib import Path

import click

from ftci.cli.base import emit_json, wants_json
from ftci.state import display
from ftci.tasks import TASK_TYPES


@click.command("init")
@click.argument("directory", type=click.Path(path_type=Path), default=".")
@click.option("--task", "task", required=True, type=click.Choice(TASK_TYPES),
              help="What the model must do; picks default checks and gates.")
@click.option("--name", help="Project name (default: the directory's name).")
@click.option("--base-model", default="starter:smollm2-135m-instruct", show_default=True,
              help="starter:NAME, a local path, or org/name@revision.")
@click.option("--ftci-ref", metavar="SHA", default=None,
              help="The ftci commit SHA the GitHub workflow pins (default: a placeholder "
                   "you must replace).")
@click.option("--force", is_flag=True, help="Overwrite files ftci init would write.")
@click.pass_context
def init_command(ctx: click.Context, directory: Path, task: str, name: str | None,
                 base_model: str, ftci_ref: str | None, force: bool) -> None:
    """Create ftci.yaml, data/README.md, a starter eval suite and .gitignore in DIRECTORY."""
    from ftci.scaffold import REF_PLACEHOLDER, WORKFLOW_PATH, init_repository

    result = init_repository(directory, task, name=name, base_model=base_model, force=force,
                             ftci_ref=ftci_ref)
    if wants_json(ctx):
        emit_json({"ok": True, "root": str(result.root),
                   "written": [str(path) for path in result.written],
                   "gitignore_updated": result.gitignore_updated})
        return
    for path in result.written:
        click.echo(f"  wrote {path}")
    if result.gitignore_updated:
        click.echo(f"  added {display('')} to {directory / '.gitignore'}")
    click.secho(f"initialised a {task} project in {directory}", fg="green")
    click.echo(f"next: put training data in {directory / 'data'}/, then "
               f"`ftci config validate {directory / 'ftci.yaml'}`")
    if ftci_ref is None:
        click.secho(f"note: replace {REF_PLACEHOLDER} in {directory / WORKFLOW_PATH} with the "
                    "commit SHA of the ftci release you use (or rerun with --ftci-ref SHA)",
                    fg="yellow")
