"""`autoplan estimate`: score one plan."""

from __future__ import annotations

import dataclasses
from typing import Annotated

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
from autoplan.types import Placement


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate_command)


@user_errors
def estimate_command(
    model: ModelOpt,
    cluster: ClusterOpt,
    plan: Annotated[str, typer.Option("--plan", "-p", help="Plan JSON file or 'tp=8,pp=2,dp=4,...'.")],
    devices: DevicesOpt = None,
    seq_len: SeqLenOpt = None,
    global_batch: GlobalBatchOpt = None,
    placement: PlacementOpt = PlacementMode.TOPOLOGY,
    dtype: DtypeOpt = "bf16",
    moe_imbalance: MoeImbalanceOpt = 1.0,
    json_out: JsonOpt = False,
) -> None:
    """Predict step time, memory, MFU and the breakdown of one plan."""
    from autoplan import api
    from autoplan.report.tables import estimate_table, estimate_to_dict, plan_lines

    m = api.load_model(model)
    p = api.load_plan(plan)
    if placement is PlacementMode.NAIVE:
        p = dataclasses.replace(p, placement=Placement(naive=True))
    # a bare accelerator takes the plan's device count; a cluster preset or file brings its own
    c = api.load_cluster(cluster, devices if devices is not None or not api.is_accelerator(cluster) else p.devices)
    job = api.make_job(c, seq_len, global_batch, dtype=dtype, moe_imbalance=moe_imbalance)
    est = api.estimate(m, c, p, job)
    if json_out:
        echo_json({**estimate_to_dict(est), "model": m.name, "cluster": c.name, "global_batch": job.global_batch,
                   "seq_len": job.seq_len})
        return
    typer.echo(f"{m.name} ({m.params / 1e9:.1f}B params) on {c.devices} x {c.accelerator.name}, "
               f"global batch {job.global_batch} x {job.seq_len} tokens")
    typer.echo("\n".join(plan_lines(p)))
    typer.echo(estimate_table(est))
