"""Topology-aware vs naive placement on a 1,024-device H100 cluster whose spine is 1:4
oversubscribed (32 nodes per leaf, 4 leaves).

    python benchmarks/placement_topology.py

For one dense and one MoE job: autoplan's plan placed onto the fabric, the same plan with ranks
in plain order (DP innermost), and the best plan a topology-blind search finds; predicted step
time, exposed communication per traffic class, and which fabric tier each group crosses.
"""

from __future__ import annotations

from dataclasses import replace

from autoplan.api import load_model
from autoplan.cost_models.catalog import accelerator
from autoplan.cost_models.estimate import estimate
from autoplan.cost_models.fabric import plan_groups
from autoplan.report.tables import strategy_line
from autoplan.search.planner import search
from autoplan.types import Cluster, FabricTier, Job, Placement, Plan

CLASSES = ("tp_comm", "cp_comm", "ep_comm", "pp_p2p", "dp_comm", "param_gather")
GROUPS = ("tp", "cp", "ep", "pp", "dpcp")


def oversubscribed_cluster() -> Cluster:
    h100 = accelerator("h100-sxm-80gb")
    tiers = (
        FabricTier(name="nvlink", span=8, bytes_per_s=h100.scale_up_bytes_per_s, latency_s=3e-6),
        FabricTier(name="leaf", span=256, bytes_per_s=h100.nic_bytes_per_s, latency_s=5e-6),
        FabricTier(name="spine", span=1024, bytes_per_s=h100.nic_bytes_per_s, latency_s=8e-6, oversubscription=4.0),
    )
    return Cluster(name="h100-1024-spine-1to4", accelerator=h100, devices=1024, tiers=tiers)


def _row(label: str, plan: Plan, model, cluster, job) -> None:
    e = estimate(model, cluster, job, plan)
    comm = "  ".join(f"{c.split('_')[0]} {e.time_breakdown[c]:6.2f}" for c in CLASSES)
    groups = plan_groups(cluster, plan.main, plan.placement)
    tiers = " ".join(f"{g}:{groups[g].outer.name}" for g in GROUPS if groups[g].size > 1)
    print(f"  {label:22} {e.step_time_s:8.2f} s  exposed s: {comm}")
    print(f"  {'':22} groups cross: {tiers}   by tier: "
          + ", ".join(f"{k} {v:.2f}" for k, v in e.comm_by_tier.items()))


def main() -> None:
    cluster = oversubscribed_cluster()
    jobs = (("llama3.1-70b", Job(global_batch=512, seq_len=8192)),
            ("deepseek-v3", Job(global_batch=4096, seq_len=4096)))
    for name, job in jobs:
        model = load_model(name)
        aware = search(model, cluster, job).best.plan
        blind = search(model, cluster, job, naive_placement=True).best.plan
        print(f"\n{name} on {cluster.devices} x H100, spine 1:4, global batch {job.global_batch} x {job.seq_len}")
        print(f"  plan: {strategy_line(aware.main)}  placement {'<'.join(aware.placement.order)}")
        _row("topology-aware", aware, model, cluster, job)
        _row("same plan, naive ranks", replace(aware, placement=Placement(naive=True)), model, cluster, job)
        print(f"  blind search plan: {strategy_line(blind.main)}")
        _row("best naive plan", blind, model, cluster, job)


if __name__ == "__main__":
    main()
