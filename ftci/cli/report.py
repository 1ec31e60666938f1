"""`ftci report`: the PR report from the stage outputs (Markdown, HTML, sticky comment)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ftci.cli.base import emit_json, wants_json
from ftci.state import display

if TYPE_CHECKING:
    from ftci.report.github import CommentResult


@click.command("report")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), default=None,
              help=f"ftci.yaml or its directory: the repository whose {display('')} is read "
                   "(default: the current directory).")
@click.option("--data-check", "data_check", type=click.Path(path_type=Path), default=None,
              metavar="PATH", help="The output of `ftci --json data check` (it keeps no file).")
@click.option("--data-diff", "data_diff", type=click.Path(path_type=Path), default=None,
              metavar="PATH", help="The output of `ftci --json data diff`.")
@click.option("--run", "run", default=None, metavar="DIR|KEY|JSON",
              help="Training run: its directory, its key, or the output of `ftci --json train` "
                   "(which knows cache hits). Default: the latest complete run.")
@click.option("--eval", "eval_path", type=click.Path(path_type=Path), default=None,
              metavar="PATH", help="results.json or its directory "
                                   f"(default: the newest {display('reports/*/results.json')}).")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where report.md and report.html go (default: the eval run's directory, "
                   f"else {display('reports/<time>/')}).")
@click.option("--step-summary", is_flag=True, help="Append the Markdown to $GITHUB_STEP_SUMMARY.")
@click.option("--annotations", is_flag=True,
              help="Print GitHub workflow commands for data findings and failed gates.")
@click.option("--comment", is_flag=True,
              help="Create or update the one sticky PR comment (needs a token and "
                   "`permissions: pull-requests: write`).")
@click.option("--pr", type=click.IntRange(min=1), default=None,
              help="Pull request number (default: from $GITHUB_EVENT_PATH).")
@click.option("--token-env", default="GITHUB_TOKEN", show_default=True, metavar="NAME",
              help="Environment variable that holds the GitHub token.")
@click.option("--no-discover", is_flag=True,
              help="Read only the stage outputs named by --data-check, --data-diff, --run and "
                   "--eval; a stage not named is \"not run\" (never the newest file on disk).")
@click.option("--fail-on-gates", is_flag=True,
              help="Exit 1 when an eval gate or test or the data check failed (for the "
                   "required collector check); otherwise the report exits 0.")
@click.pass_context
def report_command(ctx: click.Context, config_path: Path | None, data_check: Path | None,
                   data_diff: Path | None, run: str | None, eval_path: Path | None,
                   out_dir: Path | None, step_summary: bool, annotations: bool, comment: bool,
                   pr: int | None, token_env: str, no_discover: bool,
                   fail_on_gates: bool) -> None:
    """Build the PR report (report.md, report.html) from the stage outputs.

    Stages that did not run show as "not run". Exits 0 (the report is informational) unless
    --fail-on-gates is given and a gate failed; 3 when GitHub refuses the comment.
    """
    from ftci.report import write_report
    from ftci.report.build import build_report

    root = _root(config_path)
    report = build_report(root, data_check=data_check, data_diff=data_diff, run=run,
                          eval_results=eval_path, discover=not no_discover)
    files = write_report(report, out_dir)
    notes: list[str] = []
    if step_summary:
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            from ftci.report.github import append_step_summary

            append_step_summary(summary, files.markdown)
        else:
            notes.append("GITHUB_STEP_SUMMARY is not set: no step summary written")
    commands: list[str] = []
    if annotations:
        from ftci.report.github import data_annotations, gate_annotations

        commands = data_annotations(report.data_check) + gate_annotations(report)
    posted = None
    if comment:
        posted, note = _comment(files.markdown, pr, token_env)
        if note:
            notes.append(note)
    if wants_json(ctx):
        emit_json({
            "ok": True, "verdict": report.verdict(), "failed": report.failed,
            "markdown": str(files.markdown_path), "html": str(files.html_path),
            "gates": {"total": len(report.eval.gates) if report.eval else 0,
                      "failed": len(report.eval.failed_gates) if report.eval else 0},
            "comment": None if posted is None else {"action": posted.action, "id": posted.id,
                                                    "url": posted.url},
            "annotations": commands, "notes": notes,
        })
    else:
        for line in commands:
            click.echo(line)
        click.echo(report.verdict())
        click.echo(f"report: {files.markdown_path}")
        click.echo(f"html:   {files.html_path}")
        if posted is not None:
            click.echo(f"comment {posted.action}: {posted.url or posted.id}")
        for note in notes:
            click.echo(f"note: {note}")
    from ftci.errors import EXIT_GATE_FAILED, EXIT_OK

    ctx.exit(EXIT_GATE_FAILED if fail_on_gates and report.failed else EXIT_OK)


def _root(config_path: Path | None) -> Path:
    if config_path is None:
        return Path.cwd()
    from ftci.config.loader import resolve_config_path

    return resolve_config_path(config_path).parent


def _comment(markdown: str, pr: int | None,
             token_env: str) -> tuple[CommentResult | None, str | None]:
    from ftci.errors import BadInputError
    from ftci.report.build import MARKER
    from ftci.report.github import DEFAULT_API_URL, GitHubClient, pr_number, upsert_comment

    number = pr or pr_number(os.environ.get("GITHUB_EVENT_PATH"))
    if number is None:
        return None, "not a pull request (no --pr, no PR in $GITHUB_EVENT_PATH): no comment"
    token = os.environ.get(token_env, "")
    if not token:
        raise BadInputError(f"--comment needs a GitHub token in ${token_env}",
                            hint="in a workflow: `env: GITHUB_TOKEN: ${{ github.token }}`")
    repository = os.environ.get("GITHUB_REPOSITORY", "")
    if not repository:
        raise BadInputError("--comment needs GITHUB_REPOSITORY (OWNER/NAME)",
                            hint="GitHub Actions sets it; elsewhere export it")
    client = GitHubClient(token, os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL)
    return upsert_comment(client, repository, number, markdown, MARKER), None
