"""`ftci eval`: eval suites and declarative gates as pytest, candidate vs baseline."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from ftci.cli.base import config_options, config_path_option, emit_json, wants_json
from ftci.errors import EXIT_OK
from ftci.state import display


@click.command("eval", context_settings={"ignore_unknown_options": False})
@config_path_option
@config_options
@click.option("--model", default=None, metavar="SPEC",
              help="Candidate: run key, run/adapter/model dir, http://host/v1#name, vllm:PATH "
                   "(default: the latest training run).")
@click.option("--baseline", default=None, metavar="SPEC",
              help="Baseline: base, production, or a model spec (default: eval.baseline).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate only the first N items of each split (a quick smoke run).")
@click.option("--no-cache", is_flag=True, help="Ignore the eval output cache.")
@click.option("--report-dir", type=click.Path(path_type=Path), default=None,
              help="Where results.json and junit.xml go (default: "
                   f"{display('reports/<time>/')}).")
@click.option("--plan", "plan_only", is_flag=True,
              help="Only print each gate's n and the smallest drop it detects (80% power), "
                   "with warnings; load no model.")
@click.argument("suites", nargs=-1)
@click.pass_context
def eval_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                 model: str | None, baseline: str | None, limit: int | None, no_cache: bool,
                 report_dir: Path | None, plan_only: bool, suites: tuple[str, ...]) -> None:
    """Run eval suites (pytest files) and eval.gates: exit 1 if any gate fails.

    SUITES default to eval.suites; `builtin:NAME` names a ready-made suite (classification,
    extraction, formatting, style, forgetting). Every comparison with the baseline is paired on
    the same items; see the README's "Eval gates" section for the statistics.
    """
    as_json = wants_json(ctx)
    if plan_only:
        from ftci.config import load_config
        from ftci.evals.power_plan import plan_gates, plan_lines

        rows = plan_gates(load_config(config_path, overrides, lint=False))
        if as_json:
            emit_json({"ok": True, "gates": [row.to_dict() for row in rows]})
        else:
            for line in plan_lines(rows) or ["no eval.gates to plan"]:
                click.echo(line)
        return
    from ftci.extras import require_extra

    require_extra("eval", command="ftci eval")  # --plan above loads no model: a lean install
    from ftci.evals.runner import run_eval, summary_lines

    # With --json, stdout carries only the JSON document; pytest's progress goes to stderr.
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        outcome = run_eval(config_path, overrides, model=model, baseline=baseline,
                           suites=suites, limit=limit, use_cache=not no_cache,
                           report_dir=report_dir)
    results = outcome.results
    gates = [gate.to_dict() for gate in results.gates] if results is not None else []
    if as_json:
        emit_json({"exit_code": outcome.exit_code, "report_dir": str(outcome.report_dir),
                   "passed": results.passed if results is not None else None, "gates": [
                       {k: g[k] for k in ("test", "gate", "metric", "passed", "value",
                                          "baseline", "comparison")} for g in gates]})
    else:
        click.echo("")
        if results is not None and results.gates:
            for line in summary_lines(results):
                click.echo(line)
        family = results.family if results is not None else None
        if family is not None:
            click.echo(f"family: {family.members} gate(s) settled together ("
                       f"{family.method}, family-wise alpha {family.alpha or 0:g}): "
                       f"{family.failed} failed")
        click.echo(f"results: {outcome.report_dir / 'results.json'}")
        click.echo(f"junit:   {outcome.report_dir / 'junit.xml'}")
    if outcome.exit_code != EXIT_OK:
        ctx.exit(outcome.exit_code)
