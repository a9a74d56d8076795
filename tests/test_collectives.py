"""Collective times against the alpha-beta model computed by hand (Thakur et al. 2005; NCCL's
bus-bandwidth convention), and where a parallel group lands on the fabric."""

from __future__ import annotations

import math

import pytest
from conftest import fake_cluster

from autoplan.cost_models.calibration import efficiency
from autoplan.cost_models.collectives import Collective, collective_time
from autoplan.cost_models.fabric import axes_span, axis_strides, group_span, plan_groups
from autoplan.types import Placement, Strategy

EFF = efficiency("hopper")
NVLINK_BW, NIC_BW = 400e9, 50e9  # fake_cluster's per-device tier bandwidths
NVLINK_LAT, LEAF_LAT, SPINE_LAT = 2e-6, 5e-6, 8e-6
SIZE = 1 << 30  # 1 GiB buffer


def up_bw() -> float:
    return NVLINK_BW * EFF.scale_up_bus


def out_bw(oversubscription: float = 1.0) -> float:
    return NIC_BW * EFF.scale_out_bus / oversubscription


# --- inside one scale-up domain -----------------------------------------------------------------


def test_ring_all_reduce_inside_one_domain():
    span = group_span(fake_cluster(8), stride=1, size=8)
    expected = 2 * 7 / 8 * SIZE / up_bw() + 2 * 7 * NVLINK_LAT
    assert collective_time(Collective.ALL_REDUCE, SIZE, span, EFF) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind", [Collective.ALL_GATHER, Collective.REDUCE_SCATTER], ids=str)
@pytest.mark.parametrize("devices, stride, size", [(8, 1, 8), (8, 1, 4), (32, 1, 32), (32, 8, 4)],
                         ids=["domain", "half-domain", "four-domains", "one-per-domain"])
def test_gather_and_scatter_move_half_an_all_reduce(kind, devices, stride, size):
    span = group_span(fake_cluster(devices), stride, size)
    latency = collective_time(Collective.ALL_REDUCE, 1e-30, span, EFF)  # the alpha term alone
    ar = collective_time(Collective.ALL_REDUCE, SIZE, span, EFF) - latency
    half = collective_time(kind, SIZE, span, EFF) - latency
    assert half == pytest.approx(ar / 2, rel=1e-9)


@pytest.mark.parametrize("kind", list(Collective), ids=str)
def test_nothing_to_do_costs_nothing(kind):
    cluster = fake_cluster(8)
    assert collective_time(kind, SIZE, group_span(cluster, 1, 1), EFF) == 0.0
    assert collective_time(kind, 0.0, group_span(cluster, 1, 8), EFF) == 0.0


# --- across scale-up domains --------------------------------------------------------------------


def test_all_reduce_across_two_nodes_bounded_by_their_nics():
    """16 ranks, 8 per node: the 8 NICs of a node share the ring traffic leaving it."""
    span = group_span(fake_cluster(16), stride=1, size=16)
    moved = 2 * 15 / 16 * SIZE
    bw_term = max(moved / up_bw(), moved / (8 * out_bw()))
    latency = 2 * 7 * NVLINK_LAT + 2 * math.ceil(math.log2(2)) * LEAF_LAT
    assert collective_time(Collective.ALL_REDUCE, SIZE, span, EFF) == pytest.approx(bw_term + latency, rel=1e-12)


@pytest.mark.parametrize("per_node", [1, 2, 4, 8], ids=lambda k: f"{k}-per-node")
def test_all_reduce_across_nodes_uses_k_nics(per_node):
    """A group of 4 nodes with k ranks in each: k NICs carry what leaves a node."""
    cluster = fake_cluster(32)
    span = axes_span(cluster, ((1, per_node), (8, 4)))
    n = 4 * per_node
    assert (span.size, span.per_domain, span.domains) == (n, per_node, 4)
    moved = 2 * (n - 1) / n * SIZE
    bw_term = max(moved / up_bw(), moved / (per_node * out_bw()))
    latency = 2 * (per_node - 1) * NVLINK_LAT + 2 * 2 * LEAF_LAT
    assert collective_time(Collective.ALL_REDUCE, SIZE, span, EFF) == pytest.approx(bw_term + latency, rel=1e-12)


def test_all_to_all_local_fraction():
    """16 ranks over 2 nodes: each keeps 1/16, sends 7/16 over NVLink and 8/16 through its NIC."""
    span = group_span(fake_cluster(16), 1, 16)
    expected = max(SIZE * 7 / 16 / up_bw(), SIZE * 8 / 16 / out_bw()) + 15 * 1e-6 + LEAF_LAT
    assert collective_time(Collective.ALL_TO_ALL, SIZE, span, EFF) == pytest.approx(expected, rel=1e-12)
    inside = group_span(fake_cluster(16), 1, 8)
    expected_inside = SIZE * 7 / 8 / up_bw() + 7 * 1e-6 + NVLINK_LAT
    assert collective_time(Collective.ALL_TO_ALL, SIZE, inside, EFF) == pytest.approx(expected_inside, rel=1e-12)


def test_p2p_inside_and_across_nodes():
    cluster = fake_cluster(16)
    inside, across = group_span(cluster, 4, 2), group_span(cluster, 8, 2)
    assert not inside.crosses_domains and across.crosses_domains
    assert collective_time(Collective.P2P, SIZE, inside, EFF) == pytest.approx(SIZE / up_bw() + NVLINK_LAT)
    assert collective_time(Collective.P2P, SIZE, across, EFF) == pytest.approx(SIZE / out_bw() + LEAF_LAT)


def test_spine_oversubscription_slows_groups_that_cross_the_leaf():
    thin, full = (fake_cluster(256, leaf=64, spine_oversubscription=osub) for osub in (4.0, 1.0))
    # dp over 32 nodes (one rank per node): the group's extent crosses the spine
    wide_thin, wide_full = group_span(thin, 8, 32), group_span(full, 8, 32)
    assert wide_thin.outer.name == "spine"
    moved = 2 * 31 / 32 * SIZE
    latency = 2 * math.ceil(math.log2(32)) * SPINE_LAT
    assert collective_time(Collective.ALL_REDUCE, SIZE, wide_thin, EFF) == pytest.approx(
        moved / out_bw(4.0) + latency, rel=1e-12)
    assert collective_time(Collective.ALL_REDUCE, SIZE, wide_full, EFF) == pytest.approx(
        moved / out_bw(1.0) + latency, rel=1e-12)
    # a group inside one leaf does not touch the spine
    local_thin, local_full = group_span(thin, 8, 8), group_span(full, 8, 8)
    assert local_thin.outer.name == "leaf"
    assert collective_time(Collective.ALL_REDUCE, SIZE, local_thin, EFF) == collective_time(
        Collective.ALL_REDUCE, SIZE, local_full, EFF)


# --- where groups sit ---------------------------------------------------------------------------


SPANS = {
    # name: (devices, stride, size, per_domain, domains, outer tier)
    "tp-inside-node": (32, 1, 8, 8, 1, "nvlink"),
    "tp-half-node": (32, 1, 4, 4, 1, "nvlink"),
    "dp-across-nodes": (32, 8, 4, 1, 4, "leaf"),
    "stride-2-in-node": (32, 2, 4, 4, 1, "nvlink"),
    "stride-4-two-nodes": (32, 4, 4, 2, 2, "leaf"),
    "dp-across-leaves": (256, 8, 32, 1, 32, "spine"),
    "single-rank": (32, 8, 1, 1, 1, "nvlink"),
}


@pytest.mark.parametrize("devices, stride, size, per_domain, domains, outer", SPANS.values(), ids=SPANS.keys())
def test_group_span(devices, stride, size, per_domain, domains, outer):
    span = group_span(fake_cluster(devices, leaf=64), stride, size)
    assert (span.size, span.per_domain, span.domains, span.outer.name) == (size, per_domain, domains, outer)
    assert span.inner.name == "nvlink" and span.crosses_domains == (domains > 1)


def test_axes_span_of_dp_times_cp():
    # cp=2 inside the node (stride 2 behind tp=2), dp=4 across nodes (stride 8)
    span = axes_span(fake_cluster(32), ((8, 4), (2, 2)))
    assert (span.size, span.per_domain, span.domains, span.outer.name) == (8, 2, 4, "leaf")


def test_axis_strides_follow_placement():
    s = Strategy(tp=4, cp=2, dp=2, pp=2)
    assert axis_strides(s, Placement()) == {"tp": 1, "cp": 4, "dp": 8, "pp": 16}
    assert axis_strides(s, Placement(order=("cp", "tp", "dp", "pp"))) == {"cp": 1, "tp": 2, "dp": 8, "pp": 16}


def test_plan_groups_topology_aware_vs_naive():
    """tp=8, dp=4 on 4 nodes: the default keeps tp in a node and dp across nodes; a naive
    launcher (dp innermost) puts 4 dp ranks in each node and splits every tp group over 4 nodes."""
    cluster, s = fake_cluster(32), Strategy(tp=8, dp=4)
    aware = plan_groups(cluster, s, Placement())
    assert (aware["tp"].per_domain, aware["tp"].domains) == (8, 1)
    assert (aware["dp"].per_domain, aware["dp"].domains, aware["dp"].outer.name) == (1, 4, "leaf")
    naive = plan_groups(cluster, s, Placement(naive=True))
    assert (naive["dp"].per_domain, naive["dp"].domains) == (4, 1)
    assert (naive["tp"].per_domain, naive["tp"].domains, naive["tp"].outer.name) == (2, 4, "leaf")
    # the naive tp ring: 2 NICs per node carry its traffic, and it pays the leaf latency
    moved = 2 * 7 / 8 * SIZE
    naive_s = moved / (2 * out_bw()) + 2 * 1 * NVLINK_LAT + 2 * 2 * LEAF_LAT
    aware_s = moved / up_bw() + 2 * 7 * NVLINK_LAT
    assert collective_time(Collective.ALL_REDUCE, SIZE, naive["tp"], EFF) == pytest.approx(naive_s, rel=1e-12)
    assert collective_time(Collective.ALL_REDUCE, SIZE, aware["tp"], EFF) == pytest.approx(aware_s, rel=1e-12)


def test_plan_groups_pipeline_and_experts():
    cluster = fake_cluster(64)
    s = Strategy(tp=2, dp=16, pp=2, ep=8)
    g = plan_groups(cluster, s, Placement())
    # pp neighbours are tp·cp·dp = 32 ranks apart: different nodes
    assert (g["pp"].size, g["pp"].domains) == (2, 2)
    # experts fold innermost: ep over ranks 0..7 (one node), expert-dp = 32/8 = 4 replicas 8 apart
    assert (g["ep"].size, g["ep"].domains) == (8, 1)
    assert (g["edp"].size, g["edp"].per_domain, g["edp"].domains) == (4, 1, 4)
    assert g["dpcp"].size == 16
