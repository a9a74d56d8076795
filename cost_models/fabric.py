"""Where a parallel group sits on the fabric: how many of its ranks share a scale-up domain,
how many domains it touches, and which tier its traffic crosses.

Ranks are laid out by the plan's placement: the first mesh axis varies fastest, so a group
along an axis is `size` ranks spaced `stride` apart.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from autoplan.types import Cluster, FabricTier, Placement, Strategy


@dataclass(frozen=True, slots=True)
class GroupSpan:
    size: int  # ranks in the group
    per_domain: int  # of them inside one scale-up domain
    domains: int  # scale-up domains touched
    inner: FabricTier  # scale-up tier
    outer: FabricTier  # widest tier crossed (== inner when the group stays in one domain)

    @property
    def crosses_domains(self) -> bool:
        return self.domains > 1


def group_span(cluster: Cluster, stride: int, size: int) -> GroupSpan:
    """A group along one mesh axis: `size` ranks spaced `stride` apart."""
    return axes_span(cluster, ((stride, size),))


def axes_span(cluster: Cluster, axes: tuple[tuple[int, int], ...]) -> GroupSpan:
    """A group spanning several mesh axes, each (stride, size): ranks varying along all of them."""
    inner = cluster.tiers[0]
    size = 1
    per_domain = 1
    extent = 1
    for stride, n in axes:
        size *= n
        per_domain *= min(n, max(1, inner.span // stride)) if stride < inner.span else 1
        extent += stride * (n - 1)
    if size <= 1:
        return GroupSpan(1, 1, 1, inner, inner)
    domains = math.ceil(size / per_domain)
    outer = cluster.tier_for_span(extent) if domains > 1 else inner
    return GroupSpan(size, per_domain, domains, inner, outer)


def axis_strides(strategy: Strategy, placement: Placement) -> dict[str, int]:
    """Rank stride of each mesh axis: product of the degrees of the axes placed inside it."""
    strides, acc = {}, 1
    for axis in placement.order:
        strides[axis] = acc
        acc *= getattr(strategy, axis)
    return strides


def naive_strides(strategy: Strategy) -> dict[str, int]:
    """Ranks in plain order with DP innermost, as a launcher that ignores topology does."""
    return axis_strides(strategy, Placement(order=("dp", "cp", "tp", "pp")))


def plan_groups(cluster: Cluster, strategy: Strategy, placement: Placement) -> dict[str, GroupSpan]:
    """The span of every communication group of the plan: tp, cp, dp, pp neighbours, dense
    gradients over dp x cp, and the expert mesh. Megatron-Core folds experts onto the ranks
    innermost first (etp, then ep, then expert-dp), whatever the dense axes are."""
    s = strategy
    strides = naive_strides(s) if placement.naive else axis_strides(s, placement)
    groups = {axis: group_span(cluster, strides[axis], getattr(s, axis)) for axis in ("tp", "cp", "dp")}
    groups["pp"] = group_span(cluster, strides["pp"], 2 if s.pp > 1 else 1)
    groups["dpcp"] = axes_span(cluster, ((strides["dp"], s.dp), (strides["cp"], s.cp)))
    order = Placement(order=("dp", "cp", "tp", "pp")).order if placement.naive else placement.order
    if order[-1] == "pp":  # the dense non-pp ranks are contiguous: the expert mesh carves them in order
        groups["etp"] = group_span(cluster, 1, s.etp)
        groups["ep"] = group_span(cluster, s.etp, s.ep)
        groups["edp"] = group_span(cluster, s.etp * s.ep, max(1, s.expert_dp))
    else:
        axes = tuple((strides[a], getattr(s, a)) for a in order if a != "pp")
        groups.update(_expert_spans(cluster, axes, s.etp, s.ep))
    return groups


@lru_cache(maxsize=4096)
def _expert_spans(cluster: Cluster, axes: tuple[tuple[int, int], ...], etp: int, ep: int) -> dict[str, GroupSpan]:
    """Expert groups when pp sits inside a dense axis: walk the non-pp ranks in mesh order (inner
    axis fastest) and take every etp-th rank for EP, every etp·ep-th for expert-DP."""
    ranks = [0]
    for stride, size in axes:
        ranks = [r + k * stride for k in range(size) for r in ranks]
    return {"etp": _span_of(cluster, ranks[:etp]), "ep": _span_of(cluster, ranks[: etp * ep: etp]),
            "edp": _span_of(cluster, ranks[:: etp * ep])}


def _span_of(cluster: Cluster, ranks: list[int]) -> GroupSpan:
    inner = cluster.tiers[0]
    if len(ranks) <= 1:
        return GroupSpan(1, 1, 1, inner, inner)
    per_domain = Counter(r // inner.span for r in ranks)
    domains = len(per_domain)
    outer = cluster.tier_for_span(max(ranks) - min(ranks) + 1) if domains > 1 else inner
    return GroupSpan(len(ranks), max(per_domain.values()), domains, inner, outer)
