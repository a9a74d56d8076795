"""A Chrome-trace view of one step: the critical-path terms laid end to end, one track per term
kind, so the share of each is visible at a glance (chrome://tracing, Perfetto)."""

from __future__ import annotations

from typing import Any

from autoplan.report.tables import TIME_LABELS
from autoplan.types import Estimate, Strategy

_TRACKS = {"compute": 0, "recompute": 0, "pp_bubble": 1, "optimizer": 0}


def step_trace(est: Estimate, s: Strategy) -> dict[str, Any]:
    events, now_us = [], 0.0
    for term, seconds in est.time_breakdown.items():
        if seconds <= 0:
            continue
        dur = seconds * 1e6
        events.append({"name": TIME_LABELS.get(term, term), "cat": term, "ph": "X", "ts": now_us, "dur": dur,
                       "pid": 0, "tid": _TRACKS.get(term, 2), "args": {"seconds": seconds}})
        now_us += dur
    names = {0: "compute", 1: "pipeline idle", 2: "exposed communication"}
    meta = [{"name": "thread_name", "ph": "M", "pid": 0, "tid": t, "args": {"name": n}} for t, n in names.items()]
    return {"traceEvents": meta + events, "displayTimeUnit": "ms",
            "otherData": {"plan": f"tp={s.tp} pp={s.pp} dp={s.dp} cp={s.cp} ep={s.ep}",
                          "step_time_s": est.step_time_s}}
