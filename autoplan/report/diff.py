"""Compare two plan records: the knobs that changed and the predicted numbers before -> after."""

from __future__ import annotations

from typing import Any

from autoplan.plan_io import PlanRecord, strategy_to_dict
from autoplan.report.tables import GIB, TIME_LABELS
from autoplan.types import Estimate


def plan_diff(old: PlanRecord, new: PlanRecord, old_est: Estimate, new_est: Estimate) -> dict[str, Any]:
    knobs = {}
    a, b = strategy_to_dict(old.plan.main), strategy_to_dict(new.plan.main)
    for key in a:
        if a[key] != b[key]:
            knobs[key] = {"old": a[key], "new": b[key]}
    if old.plan.placement != new.plan.placement:
        knobs["placement"] = {"old": list(old.plan.placement.order), "new": list(new.plan.placement.order)}
    for key in ("model", "cluster", "devices"):
        if getattr(old, key) != getattr(new, key):
            knobs[key] = {"old": getattr(old, key), "new": getattr(new, key)}
    change = new_est.step_time_s / old_est.step_time_s - 1
    terms = {k: {"old": old_est.time_breakdown.get(k, 0.0), "new": v} for k, v in new_est.time_breakdown.items()
             if abs(v - old_est.time_breakdown.get(k, 0.0)) > 1e-6}
    return {
        "changed": knobs,
        "step_time_s": {"old": old_est.step_time_s, "new": new_est.step_time_s},
        "step_time_change_pct": 100 * change,
        "mfu": {"old": old_est.mfu, "new": new_est.mfu},
        "peak_memory_gib": {"old": old_est.peak_memory_gib, "new": new_est.peak_memory_gib},
        "fits": {"old": old_est.fits, "new": new_est.fits},
        "time_terms_s": terms,
    }


def diff_markdown(d: dict[str, Any]) -> str:
    verdict = "slower" if d["step_time_change_pct"] > 0 else "faster or equal"
    lines = [
        f"### autoplan: predicted step time {d['step_time_change_pct']:+.1f}% ({verdict})",
        "",
        "| | before | after |",
        "|---|---|---|",
        f"| step time | {d['step_time_s']['old']:.3f} s | {d['step_time_s']['new']:.3f} s |",
        f"| MFU | {d['mfu']['old']:.1%} | {d['mfu']['new']:.1%} |",
        f"| peak memory | {d['peak_memory_gib']['old']:.1f} GiB | {d['peak_memory_gib']['new']:.1f} GiB |",
        f"| fits | {d['fits']['old']} | {d['fits']['new']} |",
    ]
    if d["changed"]:
        lines += ["", "**Changed:** " + ", ".join(f"`{k}` {v['old']} → {v['new']}" for k, v in d["changed"].items())]
    else:
        lines += ["", "**Changed:** nothing"]
    if d["time_terms_s"]:
        lines += ["", "| term | before s | after s |", "|---|---|---|"]
        terms = d["time_terms_s"].items()
        lines += [f"| {TIME_LABELS.get(k, k)} | {v['old']:.3f} | {v['new']:.3f} |" for k, v in terms]
    return "\n".join(lines)


__all__ = ["GIB", "diff_markdown", "plan_diff"]
