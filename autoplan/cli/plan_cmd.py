"""`autoplan plan`: search for the fastest plan that fits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from autoplan.cli.common import (
    ClusterOpt,
    DevicesOpt,
    DtypeOpt,
    GlobalBatchOpt,
    JsonOpt,
    ModelOpt,
    MoeImbalanceOpt,
    PlacementMode,
    PlacementOpt,
    SeqLenOpt,
    echo_json,
    user_errors,
)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)


class _Progress:
    """Reports search stages on stderr once the search has run longer than a second."""

    def __init__(self, enabled: bool) -> None:
        self.started, self.enabled = time.perf_counter(), enabled

    def __call__(self, message: str) -> None:
        if self.enabled and time.perf_counter() - self.started > 1.0:
            typer.echo(f"[{time.perf_counter() - self.started:5.1f}s] {message}", err=True)


@user_errors
def plan_command(
    model: ModelOpt,
    cluster: ClusterOpt,
    devices: DevicesOpt = None,
    seq_len: SeqLenOpt = None,
    global_batch: GlobalBatchOpt = None,
    fix: Annotated[
        str | None, typer.Option("--fix", help="Keys held fixed, e.g. 'tp=8' or 'tp=8,recompute=full'.")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Show this many ranked plans.")] = 1,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the plan record (JSON) here.")] = None,
    placement: PlacementOpt = PlacementMode.TOPOLOGY,
    dtype: DtypeOpt = "bf16",
    moe_imbalance: MoeImbalanceOpt = 1.0,
    json_out: JsonOpt = False,
) -> None:
    """Find the fastest plan that fits, explain it, and optionally save it for explain/diff/export."""
    from autoplan import api
    from autoplan.plan_io import PlanRecord, plan_to_dict, write_record
    from autoplan.report.tables import estimate_table, estimate_to_dict, plan_lines

    c = api.load_cluster(cluster, devices)
    job = api.make_job(c, seq_len, global_batch, dtype=dtype, moe_imbalance=moe_imbalance)
    result = api.plan(model, c, job, fix=fix, progress=_Progress(not json_out),
                      naive_placement=placement is PlacementMode.NAIVE)
    best = result.best
    if output is not None:
        record = PlanRecord(model=model, cluster=cluster, devices=c.devices, job=job, plan=best.plan,
                            estimate=estimate_to_dict(best.estimate))
        write_record(record, output)
    alternatives = [_alternative(x, best) for x in result.ranked[1:top]]
    if json_out:
        echo_json({"plan": plan_to_dict(best.plan), "estimate": estimate_to_dict(best.estimate),
                   "search_time_s": result.search_time_s, "candidates": result.candidates,
                   "global_batch": job.global_batch, "seq_len": job.seq_len, "alternatives": alternatives})
        return
    typer.echo(f"best of {result.candidates} candidates in {result.search_time_s:.1f} s "
               f"({c.devices} x {c.accelerator.name}, global batch {job.global_batch} x {job.seq_len})")
    typer.echo("\n".join(plan_lines(best.plan)))
    typer.echo(estimate_table(best.estimate))
    for i, alt in enumerate(alternatives, start=2):
        typer.echo(f"#{i}  {alt['plan_line']}  {alt['step_time_s']:.3f} s (+{alt['slower_pct']:.1f}%)  "
                   f"loses on: {alt['loses_on']}")
    if output is not None:
        typer.echo(f"wrote {output}")


def _alternative(x: Any, best: Any) -> dict[str, Any]:
    """A runner-up and the breakdown terms that made it lose."""
    from autoplan.report.tables import TIME_LABELS, strategy_line

    diffs = {k: x.estimate.time_breakdown[k] - best.estimate.time_breakdown.get(k, 0.0)
             for k in x.estimate.time_breakdown}
    worse = sorted((d, k) for k, d in diffs.items() if d > 1e-6)[::-1][:2]
    return {
        "plan_line": strategy_line(x.plan.main) + (
            f" placement={'<'.join(x.plan.placement.order)}" if x.plan.placement != best.plan.placement else ""),
        "step_time_s": x.estimate.step_time_s,
        "slower_pct": 100 * (x.estimate.step_time_s / best.estimate.step_time_s - 1),
        "loses_on": ", ".join(f"+{d:.3f} s {TIME_LABELS.get(k, k)}" for d, k in worse) or "tie-break",
    }
