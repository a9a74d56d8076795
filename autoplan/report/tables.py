"""Text tables and JSON for estimates and plans. Nothing here computes a cost: every number is
read off an `Estimate` the estimator made."""

from __future__ import annotations

from typing import Any

from autoplan.types import Estimate, Plan, Strategy

GIB = 2**30

TIME_LABELS = {
    "compute": "compute (fwd+bwd)",
    "recompute": "recompute",
    "tp_comm": "TP comm (exposed)",
    "cp_comm": "CP ring (exposed)",
    "ep_comm": "EP all-to-all (exposed)",
    "pp_p2p": "PP send/recv (exposed)",
    "pp_bubble": "pipeline bubble",
    "dp_comm": "DP grad reduce (exposed)",
    "param_gather": "param gather (exposed)",
    "optimizer": "optimizer step",
}


def estimate_to_dict(est: Estimate) -> dict[str, Any]:
    """The `--json` form of an estimate (DESIGN.md contract keys first)."""
    return {
        "step_time_s": est.step_time_s,
        "tokens_per_s": est.tokens_per_s,
        "mfu": est.mfu,
        "hfu": est.hfu,
        "model_tflops_per_device": est.model_tflops_per_device,
        "peak_memory_gib": est.peak_memory_gib,
        "capacity_gib": est.capacity_bytes / GIB,
        "fits": est.fits,
        "devices": est.devices,
        "breakdown": {
            "time_s": dict(est.time_breakdown),
            "memory_gib": {k: v / GIB for k, v in est.memory_breakdown.items()},
            "exposed_comm_by_tier_s": dict(est.comm_by_tier),
        },
    }


def strategy_line(s: Strategy) -> str:
    parts = [f"tp={s.tp}", f"pp={s.pp}", f"dp={s.dp}", f"cp={s.cp}"]
    if s.ep > 1 or s.etp > 1:
        parts += [f"ep={s.ep}", f"etp={s.etp}"]
    parts += [f"vpp={s.vpp}", f"mbs={s.mbs}", f"sp={int(s.sp)}", f"zero={s.zero}", f"recompute={s.recompute.value}"]
    if s.offload.value != "none":
        parts.append(f"offload={s.offload.value}")
    if s.stage_layers:
        parts.append("stage_layers=" + "/".join(map(str, s.stage_layers)))
    if s.stage_recompute:
        parts.append("stage_recompute=" + "/".join(r.value for r in s.stage_recompute))
    return ",".join(parts)


def plan_lines(plan: Plan) -> list[str]:
    if len(plan.strategies) == 1:
        order = " < ".join(plan.placement.order)
        return [f"plan        {strategy_line(plan.main)}", f"placement   {order} (inner < outer)"]
    return [f"plan[{name}]  {strategy_line(s)}" for name, s in plan.strategies]


def estimate_table(est: Estimate) -> str:
    lines = [
        f"step time   {est.step_time_s:10.3f} s      tokens/s  {est.tokens_per_s:14,.0f}",
        f"MFU         {est.mfu:10.1%}        HFU       {est.hfu:14.1%}",
        f"model TFLOP/s per device {est.model_tflops_per_device:8.1f}",
        f"memory      {est.peak_memory_gib:10.1f} GiB of {est.capacity_bytes / GIB:.1f} GiB  "
        + ("fits" if est.fits else "DOES NOT FIT"),
        "",
        f"{'time on the critical path':28} {'seconds':>10} {'share':>7}",
    ]
    for key, value in est.time_breakdown.items():
        if value > 0:
            lines.append(f"  {TIME_LABELS.get(key, key):26} {value:10.3f} {value / est.step_time_s:7.1%}")
    lines.append(f"{'memory on the fullest device':28} {'GiB':>10}")
    for key, value in est.memory_breakdown.items():
        if value > 0:
            lines.append(f"  {key:26} {value / GIB:10.2f}")
    if est.comm_by_tier:
        lines.append("exposed communication by fabric tier: "
                     + ", ".join(f"{k} {v:.3f} s" for k, v in est.comm_by_tier.items()))
    return "\n".join(lines)
