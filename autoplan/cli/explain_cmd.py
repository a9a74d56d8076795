"""`autoplan explain`: why a saved plan costs what it costs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from autoplan.cli.common import user_errors


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_command)


@user_errors
def explain_command(
    plan_file: Annotated[Path, typer.Argument(help="A plan record written by 'autoplan plan -o'.")],
    trace: Annotated[Path | None, typer.Option("--trace", help="Also write a Chrome trace of the step.")] = None,
) -> None:
    """Re-estimate a saved plan and print every term behind its step time and memory."""
    from autoplan.api import estimate_record, load_cluster
    from autoplan.errors import ConfigError
    from autoplan.plan_io import read_record
    from autoplan.report.tables import estimate_table, plan_lines
    from autoplan.report.trace import step_trace

    record = read_record(plan_file)
    est = estimate_record(record)
    cluster = load_cluster(record.cluster, record.devices)
    typer.echo(f"{record.model} on {record.devices} x {cluster.accelerator.name}, "
               f"global batch {record.job.global_batch} x {record.job.seq_len}")
    typer.echo("\n".join(plan_lines(record.plan)))
    typer.echo(estimate_table(est))
    recorded = (record.estimate or {}).get("step_time_s")
    if isinstance(recorded, int | float) and abs(recorded - est.step_time_s) > 1e-9:
        typer.echo(f"note: the file recorded {record.estimate['step_time_s']:.3f} s; this autoplan estimates "
                   f"{est.step_time_s:.3f} s")
    if trace is not None:
        try:
            trace.write_text(json.dumps(step_trace(est, record.plan.main), indent=1))
        except OSError as e:
            raise ConfigError(f"cannot write trace {trace}: {e}") from None
        typer.echo(f"wrote {trace} (open in chrome://tracing or Perfetto)")
