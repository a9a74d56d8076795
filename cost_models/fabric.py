"""Where a parallel group sits on the fabric: how many of its ranks share a scale-up domain,
how many domains it touches, and which tier its traffic crosses.

Ranks are laid out by the plan's placement: the first mesh axis varies fastest, so a group
along an axis is `size` ranks spaced `stride` apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    inner = cluster.tiers[0]
    if size <= 1:
        return GroupSpan(1, 1, 1, inner, inner)
    domain = inner.span
    per_domain = max(1, min(size, domain // stride)) if stride < domain else 1
    domains = math.ceil(size / per_domain)
    extent = stride * (size - 1) + 1
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
    """The span of every communication group of the plan: tp, cp, dp (dense grads over dp·cp), pp
    neighbours, ep (carved from dp·cp, innermost first) and expert-dp."""
    strides = naive_strides(strategy) if placement.naive else axis_strides(strategy, placement)
    groups = {axis: group_span(cluster, strides[axis], getattr(strategy, axis)) for axis in ("tp", "cp", "dp")}
    groups["pp"] = group_span(cluster, strides["pp"], 2 if strategy.pp > 1 else 1)
    inner_dpcp = "cp" if strides["cp"] <= strides["dp"] else "dp"
    ep_stride = strides[inner_dpcp] if strategy.cp > 1 or inner_dpcp == "dp" else strides["dp"]
    groups["ep"] = group_span(cluster, ep_stride, strategy.ep)
    groups["dpcp"] = group_span(cluster, min(strides["dp"], strides["cp"]), strategy.dp * strategy.cp)
    edp = max(1, strategy.dp * strategy.cp // strategy.ep)
    groups["edp"] = group_span(cluster, ep_stride * strategy.ep, edp)
    return groups
