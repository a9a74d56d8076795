"""Validation table: the estimator against measured runs from public papers.

    python benchmarks/validate.py [--runs PATH] [--family dense|moe]

Prints per run predicted vs measured step time and the error, then median / p80 / max |error|
by family, the Korthikanti twin pairs, and the runs skipped with the reason.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autoplan.validation import Row, score, summary

DEFAULT_RUNS = Path(__file__).resolve().parents[1].parent / "shared" / "validation" / "published_runs.json"


def _print_rows(rows: list[Row]) -> None:
    print(f"{'run':44} {'plan':34} {'measured s':>10} {'predicted s':>11} {'error':>7}  derived from")
    for r in rows:
        s = r.case.plan.main
        plan = f"tp{s.tp} pp{s.pp} dp{s.dp} cp{s.cp} ep{s.ep} v{s.vpp} z{s.zero} {s.recompute.value[:3]}"
        flag = "" if r.fits else "  (OOM by estimate)"
        print(f"{r.case.id:44} {plan:34} {r.case.measured_step_s:10.3f} {r.predicted_s:11.3f} "
              f"{r.error:+7.1%}  {r.case.measured_how}{flag}")


def _print_pairs(rows: list[Row]) -> None:
    by_id = {r.case.id: r for r in rows}
    print("\nKorthikanti twin pairs (selective+SP vs full recompute): measured vs predicted speed-up")
    for rid, r in by_id.items():
        if not (rid.startswith("korthikanti") and rid.endswith("sp-selective")):
            continue
        twin = by_id.get(rid.replace("sp-selective", "full-recompute"))
        if twin is None:
            continue
        meas = twin.case.measured_step_s / r.case.measured_step_s
        pred = twin.predicted_s / r.predicted_s
        print(f"  {rid.removesuffix('-sp-selective'):32} measured {meas:.3f}  predicted {pred:.3f}  "
              f"ratio error {pred / meas - 1:+.1%}  ranked {'right' if (pred > 1) == (meas > 1) else 'WRONG'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    ap.add_argument("--family", choices=["dense", "moe"], default=None)
    args = ap.parse_args()
    rows, skipped = score(args.runs)
    if args.family:
        rows = [r for r in rows if r.case.family == args.family]
    _print_rows(rows)
    print("\n|error| by family:")
    for fam in sorted({r.case.family for r in rows}):
        s = summary([r.error for r in rows if r.case.family == fam])
        print(f"  {fam:6} n={s['n']:3d}  median {s['median']:.1%}  p80 {s['p80']:.1%}  max {s['max']:.1%}")
    _print_pairs(rows)
    print(f"\nskipped {len(skipped)}:")
    for rid, why in skipped:
        print(f"  {rid:44} {why}")


if __name__ == "__main__":
    main()
