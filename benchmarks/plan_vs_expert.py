"""The planner against the published expert plans, by autoplan's own estimate.

    python benchmarks/plan_vs_expert.py [--runs PATH]

For every run with a usable published plan: the expert plan, autoplan's plan for the same job,
what differs, the predicted speed-up, and the wall time of the search (2-core budget: 10 s).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from autoplan.api import load_cluster
from autoplan.cost_models.estimate import estimate
from autoplan.errors import AutoplanError
from autoplan.plan_io import strategy_to_dict
from autoplan.report.tables import strategy_line
from autoplan.search.planner import search
from autoplan.validation import Skip, build_case, load_records

DEFAULT_RUNS = Path(__file__).resolve().parents[1].parent / "shared" / "validation" / "published_runs.json"
SHOWN = ("tp", "pp", "dp", "cp", "ep", "vpp", "mbs", "zero", "recompute", "stage_layers")


def _differs(a, b) -> str:
    da, db = strategy_to_dict(a), strategy_to_dict(b)
    parts = [f"{k} {da[k]}->{db[k]}" for k in SHOWN if da[k] != db[k]]
    return ", ".join(parts) or "same"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    args = ap.parse_args()
    speedups: dict[bool, list[float]] = {True: [], False: []}  # keyed by "the expert plan fits"
    slowest_search = 0.0
    print(f"{'run':40} {'expert s':>9} {'autoplan s':>10} {'speed-up':>8} {'search s':>8}  fits  differs")
    for rec in load_records(args.runs):
        try:
            case = build_case(rec)
        except (Skip, AutoplanError):
            continue
        cluster = load_cluster(case.cluster_spec, case.devices)
        expert = estimate(case.model, cluster, case.job, case.plan)
        started = time.perf_counter()
        try:
            result = search(case.model, cluster, case.job)
        except AutoplanError as e:
            print(f"{case.id:40} {expert.step_time_s:9.3f}  no plan: {e}")
            continue
        took = time.perf_counter() - started
        best = result.best.estimate
        speedup = expert.step_time_s / best.step_time_s
        speedups[expert.fits].append(speedup)
        slowest_search = max(slowest_search, took)
        note = "" if expert.fits else " (expert plan OOM by estimate)"
        print(f"{case.id:40} {expert.step_time_s:9.3f} {best.step_time_s:10.3f} {speedup:8.3f} {took:8.2f}  "
              f"{'yes' if best.fits else 'NO':4}  {_differs(case.plan.main, result.best.plan.main)}{note}")
        print(f"{'':40}   expert  {strategy_line(case.plan.main)}")
        print(f"{'':40}   autoplan {strategy_line(result.best.plan.main)} "
              f"placement {'<'.join(result.best.plan.placement.order)}")
    fit, oom = speedups[True], speedups[False]
    print(f"\n{len(fit)} runs whose expert plan fits by estimate: worst speed-up {min(fit):.3f}x (>= 0.995 "
          f"required), median {sorted(fit)[len(fit) // 2]:.3f}x")
    if oom:
        print(f"{len(oom)} runs whose expert plan does not fit by estimate: autoplan's plan fits; "
              f"speed-up vs the infeasible plan {min(oom):.3f}x .. {max(oom):.3f}x")
    print(f"slowest search {slowest_search:.2f} s (budget 10 s)")


if __name__ == "__main__":
    main()
