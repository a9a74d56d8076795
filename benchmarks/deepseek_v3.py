"""DeepSeek-V3 on 2,048 H800 (the published pre-training job): autoplan's plan vs the published
PP16 / EP64 / ZeRO-1 plan (DeepSeek-V3 report §3.2: DualPipe overlap, node-limited all-to-all).

    python benchmarks/deepseek_v3.py

Same as `autoplan plan --model deepseek-v3 --cluster h800-sxm-80gb --devices 2048 --seq-len 4096
--global-batch 15360`, plus the published plan scored by the same estimator.
"""

from __future__ import annotations

import time

from autoplan.api import load_cluster, load_model
from autoplan.cost_models.estimate import estimate
from autoplan.report.tables import strategy_line
from autoplan.search.planner import search
from autoplan.types import Dispatch, Job, Plan, Strategy

PUBLISHED = {
    "published, flat all-to-all": Strategy(pp=16, dp=128, ep=64, zero=1),
    "published, DeepEP dispatch": Strategy(pp=16, dp=128, ep=64, zero=1, dispatch=Dispatch.HIERARCHICAL),
    "published, DeepEP + DualPipe-style overlap": Strategy(pp=16, dp=128, ep=64, zero=1,
                                                           dispatch=Dispatch.HIERARCHICAL, ep_overlap=True),
}


def main() -> None:
    model, cluster = load_model("deepseek-v3"), load_cluster("h800-sxm-80gb", 2048)
    job = Job(global_batch=15360, seq_len=4096)
    started = time.perf_counter()
    result = search(model, cluster, job)
    took = time.perf_counter() - started
    best = result.best
    print(f"autoplan searched {result.candidates} candidates in {took:.1f} s (budget 15 s)")
    print(f"{'plan':44} {'step s':>8} {'MFU':>6} {'GiB':>6}  fits  EP exposed s")
    rows = [("autoplan: " + strategy_line(best.plan.main), best.estimate)]
    rows += [(name, estimate(model, cluster, job, Plan.single(s))) for name, s in PUBLISHED.items()]
    for name, e in rows:
        print(f"{name[:44]:44} {e.step_time_s:8.2f} {e.mfu:6.1%} {e.peak_memory_gib:6.1f}  "
              f"{'yes' if e.fits else 'no':4}  {e.time_breakdown['ep_comm']:.2f}")
    print(f"\nautoplan plan in full: {strategy_line(best.plan.main)}, dispatch={best.plan.main.dispatch.value}, "
          f"ep_overlap={best.plan.main.ep_overlap}")
    fastest_published = min(e.step_time_s for _, e in rows[1:])
    print(f"speed-up over the fastest published variant: {fastest_published / best.estimate.step_time_s:.3f}x")


if __name__ == "__main__":
    main()
