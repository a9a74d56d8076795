"""`autoplan verify`: run the plan's sharded step on virtual CPU devices against a single-device
reference. Exit 0 when every tensor matches, 1 when one diverges (named), 2 on bad input."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from autoplan.cli.common import JsonOpt, ModelOpt, echo_json, user_errors

PlanOpt = Annotated[str, typer.Option("--plan", "-p", help="Plan JSON path or a string like 'tp=2,pp=2,dp=2'.")]
VerifyDevicesOpt = Annotated[int, typer.Option("--devices", "-n", help="Virtual CPU devices; must equal the plan's.")]
ShapesOpt = Annotated[bool, typer.Option("--shapes", help="Also list the operators each device runs at full scale.")]
ShapeSeqOpt = Annotated[int, typer.Option("--seq-len", help="Sequence length for --shapes.")]
ShapeBatchOpt = Annotated[int | None, typer.Option("--global-batch", help="Sequences per step for --shapes.")]
BugOpt = Annotated[str, typer.Option("--inject-bug", hidden=True, help="Test hook: wrong-spec | drop-allreduce.")]


def _full_scale_shapes(model: Any, plan: Any, seq_len: int, global_batch: int | None) -> list[dict[str, Any]]:
    from autoplan.types import Job
    from autoplan.verify.shapes import operator_shapes

    s = plan.strategy("language")
    job = Job(global_batch=global_batch or s.dp * s.mbs * 4 * s.pp, seq_len=seq_len)
    language = model.module("language") if any(m.name == "language" for m in model.modules) else model.modules[0]
    return [op.to_dict() for op in operator_shapes(language, job, s)]


def _render(report: dict[str, Any], plan_text: str) -> None:
    verdict = "PASSED" if report["passed"] else f"FAILED at {report['first_diverging']}"
    typer.echo(f"verify {report['model']} [{plan_text}] on {report['devices']} devices: {verdict}")
    typer.echo(f"  max_rel_err {report['max_rel_err']:.3e} (worst {report['worst_tensor']}), "
               f"max_abs_err {report['max_abs_err']:.3e}, {report['tensors']} tensors, {report['wall_s']:.1f} s")
    x = report["xla_crosscheck"]
    typer.echo(f"  XLA / autoplan per device: flops {x['flops_ratio']:.2f}x "
               f"({x['flops_ratio_per_useful_step']:.2f}x per useful pipeline step), memory {x['memory_ratio']:.2f}x "
               f"(against {x['against']}; XLA also counts elementwise work; the reduced step keeps fp32 buffers)")
    for op in report.get("shapes", []):
        shape = "x".join(map(str, op["shape"]))
        comm = f"  {op['bytes']} B over {op['group']}" if op["group"] > 1 else ""
        typer.echo(f"  {op['block']:<10} {op['name']:<22} {op['kind']:<15} {shape:<28} x{op['count']}{comm}")


def verify(
    model: ModelOpt,
    plan: PlanOpt,
    devices: VerifyDevicesOpt = 8,
    as_json: JsonOpt = False,
    shapes: ShapesOpt = False,
    seq_len: ShapeSeqOpt = 4096,
    global_batch: ShapeBatchOpt = None,
    inject_bug: BugOpt = "",
) -> None:
    """Numerically verify a plan at small scale: sharded step vs. single-device reference (fp32)."""
    from autoplan.frontends import load_model
    from autoplan.plan_io import parse_plan
    from autoplan.verify import run_verify

    graph, parsed = load_model(model), parse_plan(plan)
    report = run_verify(graph, parsed, devices, bug=inject_bug)
    if shapes:
        report["shapes"] = _full_scale_shapes(graph, parsed, seq_len, global_batch)
    if as_json:
        echo_json(report)
    else:
        _render(report, plan)
    if not report["passed"]:
        typer.echo(f"error: {report['first_diverging']} diverges from the reference "
                   f"(max_rel_err {report['max_rel_err']:.3e} > 1e-4)", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("verify")(user_errors(verify))
