"""Placement: which mesh axis varies fastest over the ranks, and so which groups stay inside a
scale-up domain. The default keeps TP innermost, then CP, then DP, with PP outermost (its
traffic is the lightest per byte of compute); the alternatives let the estimator say otherwise."""

from __future__ import annotations

from autoplan.types import Cluster, Placement, Strategy

CANDIDATE_ORDERS = (
    ("tp", "cp", "dp", "pp"),
    ("tp", "cp", "pp", "dp"),
    ("tp", "dp", "cp", "pp"),
    ("cp", "tp", "dp", "pp"),
)


def placements(s: Strategy, cluster: Cluster) -> list[Placement]:
    """Distinct orders worth scoring for this strategy: axes of degree 1 do not move anything."""
    seen, out = set(), []
    for order in CANDIDATE_ORDERS:
        effective = tuple(a for a in order if getattr(s, a) > 1)
        if effective not in seen:
            seen.add(effective)
            out.append(Placement(order=order))
    return out
