"""The verify matrix: five plans that must pass `autoplan verify` (fp32, max rel err <= 1e-4).

Each run is a fresh `autoplan verify --json` process on 8 virtual CPU devices, so wall time
includes JAX start-up and compilation, as a user sees it.

    .venv/bin/python benchmarks/verify_matrix.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

MATRIX = (
    ("llama3-8b", "tp=2,pp=2,dp=2"),
    ("llama3-8b", "tp=4,dp=2,sp=1,recompute=selective"),
    ("llama3-8b", "pp=4,dp=2,vpp=2"),
    ("llama3-8b", "dp=2,cp=2,tp=2"),
    ("mixtral-8x7b", "dp=8,ep=4"),
)
LAUNCH = "import sys; from autoplan.cli.main import main; sys.argv[0] = 'autoplan'; main()"


def run(model: str, plan: str, devices: int = 8) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LAUNCH, "verify", "--model", model, "--plan", plan,
                           "--devices", str(devices), "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode == 2:
        return {"passed": False, "error": proc.stderr.strip(), "wall_s": wall}
    return {**json.loads(proc.stdout), "process_wall_s": wall}


def main() -> int:
    print(f"{'model':<14}{'plan':<38}{'passed':<8}{'max_rel_err':>12}{'wall s':>8}{'flops x':>9}{'mem x':>7}")
    failed = 0
    for model, plan in MATRIX:
        r = run(model, plan)
        failed += not r["passed"]
        x = r.get("xla_crosscheck", {})
        print(f"{model:<14}{plan:<38}{r['passed']!s:<8}{r.get('max_rel_err', float('nan')):>12.2e}"
              f"{r.get('process_wall_s', r['wall_s']):>8.1f}{x.get('flops_ratio', float('nan')):>9.2f}"
              f"{x.get('memory_ratio', float('nan')):>7.2f}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
