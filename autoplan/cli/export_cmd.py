"""`autoplan export plan.json --format FMT [-o FILE]`: a plan record as an engine's config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autoplan.cli.common import user_errors
from autoplan.errors import ConfigError
from autoplan.export import FORMATS

FormatOpt = Annotated[str, typer.Option("--format", "-f", help=f"Target engine: {'|'.join(FORMATS)}.")]
OutOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")]


@user_errors
def export(
    plan_file: Annotated[Path, typer.Argument(help="A plan record written by 'autoplan plan -o'.")],
    fmt: FormatOpt,
    output: OutOpt = None,
) -> None:
    """Render a plan as the config its engine runs: JAX mesh, Megatron flags, torchtitan TOML,
    DeepSpeed JSON or MaxText YAML."""
    from autoplan.cost_models.catalog import load_cluster
    from autoplan.export import ExportContext, export_plan
    from autoplan.frontends import load_model
    from autoplan.plan_io import read_record

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not plan_file.is_file():
        raise ConfigError(f"plan file {plan_file} does not exist; write one with 'autoplan plan -o FILE'")
    record = read_record(plan_file)
    ctx = ExportContext(plan=record.plan, model=load_model(record.model), job=record.job,
                        cluster=load_cluster(record.cluster, record.devices))
    text = export_plan(ctx, fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as e:
        raise ConfigError(f"cannot write {output}: {e}") from None
    typer.echo(f"wrote {fmt} config to {output}", err=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
