"""The `ftci` command. Subcommand modules stay light: heavy libraries load inside commands."""

from __future__ import annotations

import os

import click

from ftci import __version__
from ftci.cli.base import FtciGroup
from ftci.cli.config import config_group
from ftci.cli.data import data_group
from ftci.cli.deploy import deploy_group, rollback_command
from ftci.cli.eval import eval_command
from ftci.cli.init import init_command
from ftci.cli.models import models_group
from ftci.cli.plan import plan_command
from ftci.cli.release import release_group
from ftci.cli.report import report_command
from ftci.cli.run import run_command
from ftci.cli.schema import schema_command
from ftci.cli.train import train_command

EPILOG = (
    "Exit codes: 0 ok, 1 a quality gate failed, 2 bad input, 3 infrastructure or internal "
    "error, 130 interrupted. Set FTCI_DEBUG=1 for tracebacks."
)


@click.group(cls=FtciGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="ftci",
                      message="%(prog)s %(version)s")
@click.option("--json", "json_output", is_flag=True,
              help="Machine-readable JSON on stdout instead of human output.")
@click.option("--allow-outside", is_flag=True,
              help="Let ftci.yaml name files outside its repository (data, suites, base "
                   "model); same as FTCI_ALLOW_OUTSIDE=1. Only for a config you trust.")
@click.pass_context
def main(ctx: click.Context, json_output: bool, allow_outside: bool) -> None:
    """Fine-tuning as disciplined as shipping software: data gates, QLoRA training, eval gates,
    release and deploy, in CI."""
    ctx.ensure_object(dict)
    ctx.obj["json"] = json_output
    if allow_outside:  # an environment variable, so processes ftci starts inherit it
        from ftci.config.paths import ALLOW_OUTSIDE_ENV

        os.environ[ALLOW_OUTSIDE_ENV] = "1"


main.add_command(config_group)
main.add_command(data_group)
main.add_command(deploy_group)
main.add_command(eval_command)
main.add_command(init_command)
main.add_command(models_group)
main.add_command(plan_command)
main.add_command(release_group)
main.add_command(report_command)
main.add_command(rollback_command)
main.add_command(run_command)
main.add_command(schema_command)
main.add_command(train_command)
