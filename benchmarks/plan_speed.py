"""Planner wall time on large jobs (2-core budget: 15 s each).

    python benchmarks/plan_speed.py
"""

from __future__ import annotations

import statistics
import time

from autoplan.api import load_cluster, load_model
from autoplan.report.tables import strategy_line
from autoplan.search.planner import search
from autoplan.types import Job

JOBS = (
    ("gpt3-175b", "h100-sxm-80gb", 16384, 4096, 2048),
    ("llama3.1-405b", "h100-sxm-80gb", 16384, 2048, 8192),
    ("megatron-1t", "h100-sxm-80gb", 16384, 4096, 2048),
    ("megatron-1t", "a100-sxm-80gb", 16384, 8192, 2048),
    ("deepseek-v3", "h800-sxm-80gb", 2048, 15360, 4096),
)
REPEATS = 3


def main() -> None:
    print(f"{'model':15} {'cluster':15} {'devices':>7} {'median s':>8} {'estimates':>9}  plan")
    for model_name, accel, devices, batch, seq in JOBS:
        model, cluster = load_model(model_name), load_cluster(accel, devices)
        job = Job(global_batch=batch, seq_len=seq)
        times, result = [], None
        for _ in range(REPEATS):
            started = time.perf_counter()
            result = search(model, cluster, job)
            times.append(time.perf_counter() - started)
        assert result is not None
        print(f"{model_name:15} {accel:15} {devices:7d} {statistics.median(times):8.2f} {result.candidates:9d}  "
              f"{strategy_line(result.best.plan.main)}  ({result.best.estimate.step_time_s:.2f} s/step, "
              f"MFU {result.best.estimate.mfu:.1%})")


if __name__ == "__main__":
    main()
