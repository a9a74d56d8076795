"""The fast span arithmetic the estimator uses agrees with the networkx fabric graph."""

from __future__ import annotations

import pytest
from conftest import fake_cluster

from autoplan.cost_models.fabric import axes_span, axis_strides, plan_groups
from autoplan.cost_models.topology import axis_ranks, build_topology, group_path
from autoplan.types import Placement, Strategy

CASES = {
    "tp8-in-node": ((1, 8),),
    "dp8-across-nodes": ((8, 8),),
    "tp2-dp4": ((2, 4),),
    "dp-and-cp": ((2, 2), (8, 4)),
    "dp64-crosses-leaf": ((2, 64),),
    "cp4-inner": ((1, 4),),
}


@pytest.mark.parametrize("axes", CASES.values(), ids=CASES.keys())
def test_span_arithmetic_matches_the_graph(axes):
    cluster = fake_cluster(256, leaf=64)
    graph = build_topology(cluster)
    span = axes_span(cluster, axes)
    path = group_path(graph, axis_ranks(0, axes))
    assert (span.size, span.per_domain, span.domains) == (path.size, path.per_domain, path.domains)
    assert span.outer.name == path.top_tier


def test_graph_links_carry_tier_bandwidth_and_oversubscription():
    cluster = fake_cluster(256, leaf=64, spine_oversubscription=4.0)
    g = build_topology(cluster)
    assert g.number_of_nodes() == 256 + 32 + 4 + 1  # devices, node switches, leaves, spine
    assert g.edges[("device", 0), ("switch", 0, 0)]["bytes_per_s"] == 400e9
    assert g.edges[("switch", 1, 0), ("switch", 2, 0)]["bytes_per_s"] == 50e9 / 4


def test_plan_groups_follow_the_placement():
    cluster = fake_cluster(64)
    s = Strategy(tp=8, dp=8)
    graph = build_topology(cluster)
    for placement in (Placement(), Placement(order=("dp", "cp", "tp", "pp"))):
        strides = axis_strides(s, placement)
        groups = plan_groups(cluster, s, placement)
        tp = group_path(graph, axis_ranks(0, ((strides["tp"], 8),)))
        assert groups["tp"].outer.name == tp.top_tier
