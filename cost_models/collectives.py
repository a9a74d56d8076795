"""Collective costs on the tiers a group spans (alpha-beta model, Thakur et al. 2005; NCCL's
bus-bandwidth convention).

A group with `k` ranks in each of `d` scale-up domains runs rings through every domain: the
scale-up links carry the whole ring traffic, and the k NICs of a domain share what leaves it
(NCCL opens one channel per NIC, rail-optimised). Whichever is slower bounds the collective.
"""

from __future__ import annotations

import math
from enum import StrEnum

from autoplan.cost_models.calibration import Efficiency
from autoplan.cost_models.fabric import GroupSpan


class Collective(StrEnum):
    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    ALL_TO_ALL = "all_to_all"
    P2P = "p2p"


# Fraction of the full buffer each rank must move (ring algorithms; NCCL performance docs).
def _traffic_factor(kind: Collective, n: int) -> float:
    if kind is Collective.ALL_REDUCE:
        return 2 * (n - 1) / n
    if kind in (Collective.ALL_GATHER, Collective.REDUCE_SCATTER, Collective.ALL_TO_ALL):
        return (n - 1) / n
    return 1.0


def _scale_up_bw(span: GroupSpan, eff: Efficiency) -> float:
    return span.inner.bytes_per_s * eff.scale_up_bus


def _scale_out_bw(span: GroupSpan, eff: Efficiency) -> float:
    """Per-rank share of the NICs leaving a domain, thinned by the widest tier's oversubscription."""
    return span.outer.bytes_per_s * eff.scale_out_bus / span.outer.oversubscription


def _latency(kind: Collective, span: GroupSpan) -> float:
    inner_steps = 2 * (span.per_domain - 1)
    # across domains NCCL switches to tree/NVLS-style algorithms: log-depth latency
    outer_steps = 2 * math.ceil(math.log2(span.domains)) if span.domains > 1 else 0
    if kind is Collective.P2P:
        return span.outer.latency_s
    return inner_steps * span.inner.latency_s + outer_steps * span.outer.latency_s


def collective_time(kind: Collective, nbytes: float, span: GroupSpan, eff: Efficiency) -> float:
    """Seconds for one collective over `span` where `nbytes` is the full buffer
    (all-reduce/reduce-scatter input, all-gather output, all-to-all send buffer, p2p message)."""
    n = span.size
    if n <= 1 or nbytes <= 0:
        return 0.0
    if kind is Collective.P2P:
        bw = _scale_up_bw(span, eff) if not span.crosses_domains else _scale_out_bw(span, eff)
        return nbytes / bw + _latency(kind, span)
    moved = _traffic_factor(kind, n) * nbytes
    if kind is Collective.ALL_TO_ALL:
        return _all_to_all_time(nbytes, span, eff)
    t_up = moved / _scale_up_bw(span, eff)
    t_out = moved / (span.per_domain * _scale_out_bw(span, eff)) if span.crosses_domains else 0.0
    return max(t_up, t_out) + _latency(kind, span)


def _all_to_all_time(nbytes: float, span: GroupSpan, eff: Efficiency) -> float:
    """Each rank keeps 1/n, sends (k-1)/n over scale-up links and (n-k)/n through its own NIC."""
    n, k = span.size, span.per_domain
    t_up = nbytes * (k - 1) / n / _scale_up_bw(span, eff)
    t_out = nbytes * (n - k) / n / _scale_out_bw(span, eff) if span.crosses_domains else 0.0
    return max(t_up, t_out) + (n - 1) * 1e-6 + _latency(Collective.P2P, span)


def expected_remote_domains(top_k: int, domains: int, route_groups: int = 0) -> float:
    """Distinct other domains one token's top_k experts fall in, experts spread evenly:
    D·(1-(1-1/D)^k) distinct domains, at most `route_groups` under node-limited routing
    (DeepSeek-V3 §2.1.2 sends each token to at most 4 nodes), less the token's own."""
    if domains <= 1:
        return 0.0
    distinct = domains * (1 - (1 - 1 / domains) ** top_k)
    if route_groups:
        distinct = min(distinct, float(route_groups))
    return distinct * (domains - 1) / domains


def hierarchical_all_to_all_time(token_bytes: float, tokens: float, top_k: int, span: GroupSpan,
                                 eff: Efficiency, route_groups: int = 0) -> float:
    """MoE dispatch as DeepEP does it: each token crosses the NIC once per destination domain,
    then fans out to its experts over scale-up links (DeepSeek-V3 §3.2.2)."""
    if span.size <= 1:
        return 0.0
    remote = expected_remote_domains(top_k, span.domains, route_groups)
    t_out = tokens * remote * token_bytes / _scale_out_bw(span, eff) if span.crosses_domains else 0.0
    fan_out = tokens * top_k * token_bytes * (span.per_domain - 1) / span.size
    t_up = fan_out / _scale_up_bw(span, eff)
    return max(t_up, t_out) + 2 * _latency(Collective.P2P, span)
