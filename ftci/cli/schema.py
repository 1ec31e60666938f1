"""`ftci schema results|run|train|data-check|release|deployment`: the JSON Schema of a stage
output."""

from __future__ import annotations

from pathlib import Path

import click

# The names, spelled here too: listing them must not import pydantic (`ftci --help`).
NAMES = ("results", "run", "train", "data-check", "release", "deployment")
WHAT = {"results": "results.json of `ftci eval`", "run": "a training run's manifest.json",
        "train": "the JSON of `ftci --json train`",
        "data-check": "the JSON of `ftci --json data check`",
        "release": "release.json of a released version (`ftci release`)",
        "deployment": "a deployment record (`ftci deploy`'s ledger row)"}


@click.command("schema")
@click.argument("name", type=click.Choice(NAMES))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the schema to this file instead of stdout.")
def schema_command(name: str, output: Path | None) -> None:
    """Print the JSON Schema of a stage output: results (results.json), run (a run's
    manifest.json), train (`ftci --json train`), data-check (`ftci --json data check`),
    release (a released version's release.json) or deployment (a row of the deployments
    ledger, `ftci --json deploy`).

    Each file carries `schema_version` (MAJOR.MINOR): this ftci reads every 1.x.
    """
    from ftci.contracts import shipped_schema

    text = shipped_schema(name)
    if output is None:
        click.echo(text, nl=False)
    else:
        from ftci.io import atomic_write_text

        atomic_write_text(output, text)
        click.echo(f"wrote {output} ({WHAT[name]})")
