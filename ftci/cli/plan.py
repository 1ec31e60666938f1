"""`ftci plan`: the stages a pull request's diff needs, for the workflow's `if:` conditions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ftci.cli.base import config_options, config_path_option, emit_json, wants_json

if TYPE_CHECKING:
    from ftci.ci.plan import Plan

SHOWN_FILES = 5


@click.command("plan")
@config_path_option
@config_options
@click.option("--base", default=None, metavar="REF",
              help="Compare from the merge base with REF (default: origin/$GITHUB_BASE_REF, "
                   "else origin/main or main).")
@click.option("--head", default=None, metavar="REF", help="The changed side (default: HEAD).")
@click.pass_context
def plan_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                 base: str | None, head: str | None) -> None:
    """Decide which stages the diff BASE...HEAD needs: data, train, eval.

    Data, ftci.yaml, the chat template or the output schema changed: all three. Only eval
    suites changed: eval against the existing candidate. Anything else: nothing. Also reports
    the run key and whether the state directory's runs/<key> holds a complete run (a cache
    hit). With $GITHUB_OUTPUT set, appends data=, train=, eval=, run-key=, cache-hit=,
    changed-files= and trusted= lines to it.
    """
    from ftci.ci.plan import append_github_output, make_plan

    plan = make_plan(config_path, overrides, base=base, head=head)
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        append_github_output(output, plan.github_outputs())
    if wants_json(ctx):
        emit_json(plan.to_dict())
    else:
        _show(plan)


def _show(plan: Plan) -> None:
    count = len(plan.changed)
    click.echo(f"diff {plan.base}...{plan.head} (merge base {plan.merge_base[:12]}): "
               f"{count} changed file{'s' if count != 1 else ''}")
    for title, names in (("training inputs", plan.training_inputs),
                         ("eval inputs", plan.eval_inputs), ("other", plan.other)):
        if names:
            more = f" (+{len(names) - SHOWN_FILES} more)" if len(names) > SHOWN_FILES else ""
            click.echo(f"  {title}: " + ", ".join(names[:SHOWN_FILES]) + more)
    if plan.train:
        click.secho("stages: data, train, eval", fg="yellow", bold=True)
    elif plan.eval:
        click.secho("stages: eval (against the existing candidate; no training)",
                    fg="yellow", bold=True)
    else:
        click.secho("stages: none (no data, config or eval suite changed)", fg="green")
    for note in plan.notes:
        click.echo(f"note: {note}")
    if plan.run_key is None:
        click.secho(f"run key: unknown: {plan.run_key_error}", fg="yellow")
    elif plan.cache_hit:
        click.echo(f"run key: {plan.run_key} (cache hit: {plan.run_dir} is complete"
                   + (", training will be skipped)" if plan.train else ")"))
    else:
        click.echo(f"run key: {plan.run_key} (no complete run yet)")
    trust = "trusted" if plan.trust.trusted else "NOT trusted"
    click.echo(f"trust: {trust}: {plan.trust.reason}")
