"""MoE traffic on the fabric: hierarchical dispatch, node-limited routing, EP overlap, and DP
traffic yielding to latency-critical classes — each against a hand computation."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import fake_cluster

from autoplan.cost_models.calibration import HOPPER
from autoplan.cost_models.collectives import (
    Collective,
    collective_time,
    expected_remote_domains,
    hierarchical_all_to_all_time,
)
from autoplan.cost_models.estimate import estimate
from autoplan.cost_models.fabric import group_span
from autoplan.frontends import load_model
from autoplan.types import Attention, Dispatch, Job, Layer, ModelGraph, Module, Moe, Placement, Plan, Strategy


def test_remote_domains_match_the_closed_form():
    # 8 experts per token over 4 domains: 4·(1-(3/4)^8) distinct domains, 3/4 of them remote
    expected = 4 * (1 - 0.75**8) * 3 / 4
    assert expected_remote_domains(8, 4) == pytest.approx(expected)
    assert expected_remote_domains(8, 1) == 0.0


def test_node_limited_routing_caps_remote_domains():
    # DeepSeek-V3: at most 4 nodes per token, of 8 the EP group spans
    assert expected_remote_domains(8, 8, route_groups=4) == pytest.approx(4 * 7 / 8)
    assert expected_remote_domains(8, 8, route_groups=4) < expected_remote_domains(8, 8)


def test_hierarchical_dispatch_moves_fewer_nic_bytes_than_flat_all_to_all():
    cluster = fake_cluster(64)
    span = group_span(cluster, 1, 64)  # 8 domains of 8
    tokens, token_bytes, top_k = 4096, 7168 * 2, 8
    flat = collective_time(Collective.ALL_TO_ALL, tokens * top_k * token_bytes, span, HOPPER)
    hier = hierarchical_all_to_all_time(token_bytes, tokens, top_k, span, HOPPER, route_groups=4)
    nic = 50e9 * HOPPER.scale_out_bus
    # NIC-bound: each token crosses once per remote node (4·7/8 of them)
    assert hier == pytest.approx(tokens * 4 * 7 / 8 * token_bytes / nic, rel=0.05)
    assert hier < flat / 2


def _moe_model(layers: int = 4) -> ModelGraph:
    att = Attention(hidden=1024, heads=8, kv_heads=8, head_dim=128, params=4 * 1024 * 1024)
    moe = Moe(hidden=1024, experts=16, top_k=2, expert_ffn=2048, gated=True,
              params=16 * 3 * 1024 * 2048 + 1024 * 16)
    layer = Layer(attention=att, ffn=moe, norm_params=2048)
    module = Module(name="language", layers=(layer,) * layers, vocab=4096, embedding_params=4096 * 1024,
                    head_params=4096 * 1024, final_norm_params=1024)
    return ModelGraph(name="tiny-moe", modules=(module,))


def test_ep_overlap_hides_all_to_all_and_holds_one_more_micro_batch():
    model, cluster, job = _moe_model(), fake_cluster(64), Job(global_batch=64, seq_len=2048)
    plain = Strategy(dp=64, ep=16, zero=1)
    overlapped = dataclasses.replace(plain, ep_overlap=True)
    a = estimate(model, cluster, job, Plan.single(plain))
    b = estimate(model, cluster, job, Plan.single(overlapped))
    assert b.time_breakdown["ep_comm"] < a.time_breakdown["ep_comm"]
    assert b.memory_breakdown["activations"] == pytest.approx(2 * a.memory_breakdown["activations"], rel=0.05)


def test_dispatch_choice_changes_only_ep_traffic():
    model, cluster, job = _moe_model(), fake_cluster(64), Job(global_batch=64, seq_len=2048)
    flat = estimate(model, cluster, job, Plan.single(Strategy(dp=64, ep=16, zero=1)))
    hier = estimate(model, cluster, job, Plan.single(Strategy(dp=64, ep=16, zero=1, dispatch=Dispatch.HIERARCHICAL)))
    assert hier.time_breakdown["ep_comm"] < flat.time_breakdown["ep_comm"]
    assert hier.time_breakdown["compute"] == flat.time_breakdown["compute"]


def test_naive_placement_puts_tp_across_nodes_and_costs_more():
    model, cluster = load_model("llama3.1-8b"), fake_cluster(64)
    job = Job(global_batch=64, seq_len=4096)
    s = Strategy(tp=8, dp=8, sp=True, zero=1)
    aware = estimate(model, cluster, job, Plan.single(s))
    naive = estimate(model, cluster, job, Plan.single(s, placement=Placement(naive=True)))
    assert naive.time_breakdown["tp_comm"] > 5 * aware.time_breakdown["tp_comm"]
    assert "nvlink" in aware.comm_by_tier and "nvlink" not in naive.comm_by_tier


def test_deepseek_routing_limit_is_read_from_the_config():
    moe = next(layer.ffn for layer in load_model("deepseek-v3").modules[0].layers if layer.is_moe)
    assert moe.route_groups == 4


def test_capacity_factor_caps_the_busiest_expert():
    model, cluster = _moe_model(), fake_cluster(64)
    plan = Plan.single(Strategy(dp=64, ep=16, zero=1))
    skewed = estimate(model, cluster, Job(global_batch=64, seq_len=2048, moe_imbalance=1.5), plan)
    capped = estimate(model, cluster, Job(global_batch=64, seq_len=2048, moe_imbalance=1.5, capacity_factor=1.25),
                      plan)
    balanced = estimate(model, cluster, Job(global_batch=64, seq_len=2048), plan)
    assert balanced.step_time_s < capped.step_time_s < skewed.step_time_s


def test_all_gather_dispatch_moves_the_whole_group_tokens():
    model, cluster, job = _moe_model(), fake_cluster(64), Job(global_batch=64, seq_len=2048)
    a2a = estimate(model, cluster, job, Plan.single(Strategy(dp=64, ep=16, zero=1)))
    ag = estimate(model, cluster, job, Plan.single(Strategy(dp=64, ep=16, zero=1, dispatch=Dispatch.ALL_GATHER)))
    # NIC-bound across the two 8-rank domains: all-to-all sends top_k=2 copies, half of them off the
    # node (1 token-volume per NIC); the all-gather ring moves 15/16 of 16 ranks' tokens over 8 NICs
    # (1.875 token-volumes per NIC)
    ratio = ag.time_breakdown["ep_comm"] / a2a.time_breakdown["ep_comm"]
    assert ratio == pytest.approx(1.875, rel=0.1)
