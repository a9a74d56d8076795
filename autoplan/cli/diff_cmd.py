"""`autoplan diff`: what changed between two saved plans, for people and for CI."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from autoplan.cli.common import echo_json, user_errors
from autoplan.errors import ConfigError


class Format(StrEnum):
    MARKDOWN = "markdown"
    JSON = "json"


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_command)


@user_errors
def diff_command(
    old: Annotated[Path, typer.Argument(help="The baseline plan record (autoplan plan -o).")],
    new: Annotated[Path, typer.Argument(help="The proposed plan record.")],
    fmt: Annotated[Format, typer.Option("--format", help="markdown (a PR comment) or json.")] = Format.MARKDOWN,
    fail_above: Annotated[
        float | None, typer.Option("--fail-above", help="Exit 1 if predicted step time regresses by more than PCT.")
    ] = None,
) -> None:
    """Compare two plans: changed knobs, predicted step time, MFU and memory before -> after."""
    from autoplan.api import estimate_record
    from autoplan.plan_io import read_record
    from autoplan.report.diff import diff_markdown, plan_diff

    if fail_above is not None and not math.isfinite(fail_above):
        raise ConfigError(f"--fail-above {fail_above} must be a finite percentage, e.g. --fail-above 2")
    a, b = read_record(old), read_record(new)
    d = plan_diff(a, b, estimate_record(a), estimate_record(b))
    if fmt is Format.JSON:
        echo_json(d)
    else:
        typer.echo(diff_markdown(d))
    if fail_above is not None and d["step_time_change_pct"] > fail_above:
        typer.echo(f"error: predicted step time regressed {d['step_time_change_pct']:.1f}% "
                   f"(> {fail_above}% allowed)", err=True)
        raise typer.Exit(1)
