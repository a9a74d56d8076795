"""The fabric as a graph (networkx): devices hang off scale-up switches, scale-up domains off
leaf switches, leaves off the spine. Links carry their per-direction bandwidth.

The estimator's fast span arithmetic (`fabric.axes_span`) must agree with what this graph says
about any group of ranks: which tier its traffic climbs to and how many members share a
scale-up domain. Reports use the graph to name the switches a plan's groups cross.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

from autoplan.types import Cluster


@dataclass(frozen=True, slots=True)
class GroupPath:
    """What the graph says about one group of ranks."""

    size: int
    per_domain: int  # most members inside one scale-up domain
    domains: int
    top_tier: str  # highest switch tier any two members' path climbs to


def build_topology(cluster: Cluster) -> nx.Graph:
    """One node per device and per switch; switch nodes carry their tier's name and level."""
    g = nx.Graph(name=cluster.name)
    for level, tier in enumerate(cluster.tiers):
        groups = math.ceil(cluster.devices / tier.span)
        for i in range(groups):
            g.add_node(("switch", level, i), tier=tier.name, level=level)
            if level > 0:  # each switch of the tier below hangs off this one
                below = cluster.tiers[level - 1].span
                for j in range(i * tier.span // below, min((i + 1) * tier.span // below,
                                                           math.ceil(cluster.devices / below))):
                    g.add_edge(("switch", level - 1, j), ("switch", level, i),
                               bytes_per_s=tier.bytes_per_s / tier.oversubscription)
    inner = cluster.tiers[0]
    for rank in range(cluster.devices):
        g.add_node(("device", rank), level=-1)
        g.add_edge(("device", rank), ("switch", 0, rank // inner.span), bytes_per_s=inner.bytes_per_s)
    return g


def _domain(g: nx.Graph, rank: int) -> tuple:
    return next(n for n in g.neighbors(("device", rank)) if n[0] == "switch")


def group_path(g: nx.Graph, ranks: Sequence[int]) -> GroupPath:
    """Climb the graph from each member: the highest switch level on members' shortest paths."""
    domains = Counter(_domain(g, r) for r in ranks)
    top = 0
    first = ("device", ranks[0])
    for r in ranks[1:]:
        path = nx.shortest_path(g, first, ("device", r))
        top = max(top, max(g.nodes[n]["level"] for n in path))
    tier = next(d["tier"] for n, d in g.nodes(data=True) if n[0] == "switch" and d["level"] == top)
    return GroupPath(size=len(ranks), per_domain=max(domains.values()), domains=len(domains), top_tier=tier)


def axis_ranks(start: int, axes: Sequence[tuple[int, int]]) -> list[int]:
    """Ranks of the group through `start` along mesh axes given as (stride, size)."""
    ranks = [start]
    for stride, size in axes:
        ranks = [r + k * stride for r in ranks for k in range(size)]
    return sorted(ranks)
