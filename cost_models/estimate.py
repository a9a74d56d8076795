"""The one estimator: `estimate(model, cluster, job, plan)` composes compute, communication,
pipeline and memory terms into a step time and a per-device memory peak, with the breakdown.

Every number autoplan prints — in a plan, a report or a diff — comes from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from autoplan.cost_models.calibration import efficiency
from autoplan.cost_models.check import check_plan, microbatches
from autoplan.cost_models.collectives import Collective, collective_time, hierarchical_all_to_all_time
from autoplan.cost_models.compute import Device, gemm_time, layer_compute, model_flops_per_token, routed_load
from autoplan.cost_models.fabric import GroupSpan, plan_groups
from autoplan.cost_models.layout import LayerIndex, rank_layer_counts
from autoplan.cost_models.memory import (
    PARAM_BYTES,
    grad_bytes,
    head_activation_bytes,
    in_flight_microbatches,
    layer_activation_bytes,
    model_state_bytes,
)
from autoplan.cost_models.pipeline import pipeline_time
from autoplan.types import (
    Cluster,
    Dispatch,
    Estimate,
    Job,
    Layer,
    ModelGraph,
    Module,
    Moe,
    Offload,
    Plan,
    Recompute,
    Strategy,
)

HOST_LINK_BYTES_PER_S = 25e9  # PCIe Gen4 x16 per device, for optimizer offload (PCI-SIG spec)
HOST_ADAM_PARAMS_PER_S = 2e9  # DeepSpeed CPU-Adam per device share (Ren et al. 2021, ZeRO-Offload §6)


@dataclass(frozen=True, slots=True)
class RankCost:
    """One pipeline rank, per micro-batch (times) and at its memory peak (bytes)."""

    compute_s: float
    recompute_s: float
    tp_s: float
    cp_s: float
    ep_s: float
    p2p_s: float
    bwd_s: float  # backward compute of one micro-batch: what DP reduction hides behind
    fwd_s: float
    memory: dict[str, float]
    dense_params: float
    expert_params: float
    hardware_flops: float  # per micro-batch

    @property
    def time_s(self) -> float:
        return self.compute_s + self.recompute_s + self.tp_s + self.cp_s + self.ep_s + self.p2p_s


@dataclass(frozen=True, slots=True)
class _Ctx:
    module: Module
    s: Strategy
    job: Job
    dev: Device
    groups: dict[str, GroupSpan]
    microbatches: int
    memo: dict = field(default_factory=dict)  # rank cores within one estimate
    # layer terms; may be shared across the estimates of one (module, cluster, job)
    layer_cache: dict = field(default_factory=dict)


def _tp_comm(layer: Layer, ctx: _Ctx, recompute: Recompute, fwd_gemm_s: float, bwd_gemm_s: float) -> float:
    """Megatron TP: one all-reduce forward and one backward per TP block — attention, and a dense
    MLP (or all-gather + reduce-scatter pairs of the same volume with SP; Korthikanti et al. 2022
    §4.2.2). An MoE block has none: its tokens go through the dispatcher (`_ep_comm`). The backward
    input-grad all-reduce overlaps the weight-grad GEMM; TE comm-overlap hides all but 1/tp."""
    s = ctx.s
    if s.tp <= 1:
        return 0.0
    nbytes = s.mbs * ctx.job.seq_len / s.cp * layer.attention.hidden * PARAM_BYTES
    span = ctx.groups["tp"]
    one = collective_time(Collective.ALL_REDUCE, nbytes, span, ctx.dev.eff)
    blocks = 1 if isinstance(layer.ffn, Moe) else 2
    n_fwd = blocks * (2 if recompute is Recompute.FULL else 1)
    fwd, bwd = n_fwd * one, blocks * one
    if s.tp_comm_overlap:
        return max(fwd / s.tp, fwd - fwd_gemm_s) + max(bwd / s.tp, bwd - bwd_gemm_s)
    return fwd + bwd / 2


def _cp_comm(layer: Layer, ctx: _Ctx, attn_fwd_s: float) -> float:
    """Ring attention: cp-1 KV-chunk exchanges forward, KV and dKV backward, hidden behind the
    attention blocks they feed (Liu et al. 2023, Ring Attention; Megatron-Core CP)."""
    s = ctx.s
    if s.cp <= 1:
        return 0.0
    att = layer.attention
    t = s.mbs * ctx.job.seq_len / s.cp
    kv_bytes = t * att.kv_heads * (att.head_dim + att.value_dim) * PARAM_BYTES / min(s.tp, att.kv_heads)
    step = collective_time(Collective.P2P, kv_bytes, ctx.groups["cp"], ctx.dev.eff)
    fwd, bwd = (s.cp - 1) * step, 2 * (s.cp - 1) * step
    attn_bwd = attn_fwd_s * (ctx.dev.eff.attention_bwd_flops_ratio if ctx.job.flash_attention else 2.0)
    return max(0.0, fwd - attn_fwd_s) + max(0.0, bwd - attn_bwd)


def _ep_comm(layer: Layer, ctx: _Ctx, recompute: Recompute, layer_s: float) -> float:
    """Token dispatch and combine, forward and backward: four all-to-alls of tokens·top_k·h
    (Megatron-Core MoE), or DeepEP's hierarchical exchange; exposed unless another micro-batch's
    compute hides them (DualPipe-style EP overlap)."""
    s, ffn = ctx.s, layer.ffn
    if not isinstance(ffn, Moe) or s.ep * s.etp <= 1:
        return 0.0
    tokens = s.mbs * ctx.job.seq_len / s.cp / s.tp * routed_load(ctx.job)
    token_bytes = ffn.hidden * PARAM_BYTES
    passes = 4 + (2 if recompute is Recompute.FULL else 0)
    # expert TP: routed tokens all-gathered to and reduce-scattered from the etp ranks of each expert
    etp = passes * collective_time(Collective.ALL_GATHER, tokens * ffn.top_k * token_bytes * s.etp,
                                   ctx.groups["etp"], ctx.dev.eff) if s.etp > 1 else 0.0
    total = etp + passes * _dispatch_time(ffn, tokens, token_bytes, ctx) if s.ep > 1 else etp
    return max(total / 4, total - layer_s) if s.ep_overlap else total


def _dispatch_time(ffn: Moe, tokens: float, token_bytes: float, ctx: _Ctx) -> float:
    """One dispatch (or combine) over the EP group, by the plan's dispatch method."""
    s, span = ctx.s, ctx.groups["ep"]
    if s.dispatch is Dispatch.HIERARCHICAL:
        one = hierarchical_all_to_all_time(token_bytes, tokens, ffn.top_k, span, ctx.dev.eff, ffn.route_groups)
    elif s.dispatch is Dispatch.ALL_GATHER:
        # every rank gathers all tokens of the EP group, combine reduce-scatters them back
        one = collective_time(Collective.ALL_GATHER, tokens * span.size * token_bytes, span, ctx.dev.eff)
    else:
        one = collective_time(Collective.ALL_TO_ALL, tokens * ffn.top_k * token_bytes, span, ctx.dev.eff)
    return one


def _layer_params(layer: Layer, s: Strategy) -> tuple[float, float]:
    """(dense, expert) parameters of a layer on one device."""
    if isinstance(layer.ffn, Moe):
        expert = layer.ffn.experts * layer.ffn.expert_params / (s.ep * s.etp)
        dense = (layer.params - layer.ffn.experts * layer.ffn.expert_params) / s.tp
        return dense, expert
    return layer.params / s.tp, 0.0


@dataclass(frozen=True, slots=True)
class LayerTerms:
    """One layer on one device, per micro-batch, under one recompute policy."""

    compute_s: float
    fwd_s: float
    bwd_s: float
    recompute_s: float
    tp_s: float
    cp_s: float
    ep_s: float
    hardware_flops: float
    act_bytes: float
    full_act_bytes: float  # what the layer holds transiently while its backward runs
    dense_params: float
    expert_params: float

    @property
    def time_s(self) -> float:
        return self.compute_s + self.recompute_s + self.tp_s + self.cp_s + self.ep_s


def _layer_key(kind: int, policy: Recompute, ctx: _Ctx) -> tuple:
    """What a layer's terms depend on: its kind, the policy, the knobs that shape one device's
    micro-batch, and the spans of the groups it talks over (not pp, vpp, dp or ZeRO)."""
    s, g = ctx.s, ctx.groups
    return (kind, policy, s.tp, s.cp, s.ep, s.etp, s.mbs, s.sp, s.tp_comm_overlap, s.ep_overlap, s.dispatch,
            g["tp"], g["cp"], g["ep"])


def _layer_terms(kind: int, layer: Layer, policy: Recompute, ctx: _Ctx) -> LayerTerms:
    key = _layer_key(kind, policy, ctx)
    cached = ctx.layer_cache.get(key)
    if cached is not None:
        return cached
    s, job = ctx.s, ctx.job
    lc = layer_compute(layer, s, job, ctx.dev, policy)
    gemm_f = lc.fwd_s - lc.attention_fwd_s
    dense, expert = _layer_params(layer, s)
    stored = layer_activation_bytes(layer, s, job, policy)
    # while its backward runs, a recomputed layer briefly holds what it did not store
    full_act = layer_activation_bytes(layer, s, job, Recompute.NONE) - stored
    terms = LayerTerms(
        compute_s=lc.fwd_s + lc.bwd_s, fwd_s=lc.fwd_s, bwd_s=lc.bwd_s, recompute_s=lc.recompute_s,
        tp_s=_tp_comm(layer, ctx, policy, gemm_f, 2 * gemm_f), cp_s=_cp_comm(layer, ctx, lc.attention_fwd_s),
        ep_s=_ep_comm(layer, ctx, policy, lc.fwd_s + lc.bwd_s),
        hardware_flops=3 * lc.fwd_flops + lc.recompute_flops,
        act_bytes=stored, full_act_bytes=full_act,
        dense_params=dense, expert_params=expert,
    )
    ctx.layer_cache[key] = terms
    return terms


def _rank_cost(rank: int, counts: tuple[int, ...], ctx: _Ctx) -> RankCost:
    """Ranks holding the same layers under the same policy (the middle of a uniform pipeline)
    share their time terms; only the in-flight activations differ."""
    s = ctx.s
    policy = s.recompute_of_stage(rank)
    key = (counts, policy, rank == 0, rank == s.pp - 1)
    core = ctx.memo.get(key)
    if core is None:
        core = ctx.memo[key] = _rank_core(rank, counts, policy, ctx)
    acc, head_act, peak_layer_act, transient = core
    # EP overlap runs two micro-batches at once (DualPipe, Megatron-Core EP overlap): one more held
    in_flight = in_flight_microbatches(s, rank, ctx.microbatches) + (1 if s.ep_overlap and s.ep > 1 else 0)
    memory = model_state_bytes(acc["dense_params"], acc["expert_params"], s, ctx.job)
    memory["activations"] = acc["act_bytes"] * in_flight + head_act + peak_layer_act
    memory.update(transient)
    return RankCost(
        compute_s=acc["compute_s"], recompute_s=acc["recompute_s"], tp_s=acc["tp_s"], cp_s=acc["cp_s"],
        ep_s=acc["ep_s"], p2p_s=acc["p2p_s"], bwd_s=acc["bwd_s"], fwd_s=acc["fwd_s"], memory=memory,
        dense_params=acc["dense_params"], expert_params=acc["expert_params"], hardware_flops=acc["hardware_flops"],
    )


_SUMMED = ("compute_s", "recompute_s", "tp_s", "cp_s", "ep_s", "bwd_s", "fwd_s", "hardware_flops",
           "act_bytes", "dense_params", "expert_params")


def _rank_core(rank: int, counts: tuple[int, ...], policy: Recompute,
               ctx: _Ctx) -> tuple[dict[str, float], float, float, dict[str, float]]:
    acc = dict.fromkeys(_SUMMED, 0.0)
    peak_layer_act = 0.0
    kinds = LayerIndex.of(ctx.module).kinds
    held = [layer for layer, count in zip(kinds, counts, strict=True) if count]
    for kind, (layer, count) in enumerate(zip(kinds, counts, strict=True)):
        if not count:
            continue
        terms = _layer_terms(kind, layer, policy, ctx)
        for name in _SUMMED:
            acc[name] += count * getattr(terms, name)
        peak_layer_act = max(peak_layer_act, terms.full_act_bytes)
    head_s, head_flops, head_dense, head_act = _ends(rank, ctx)
    acc["compute_s"] += head_s
    acc["hardware_flops"] += head_flops
    acc["dense_params"] += head_dense
    acc["p2p_s"] = _p2p(ctx)
    return acc, head_act, peak_layer_act, _transient_bytes(held, ctx.s, ctx.dev)


def _ends(rank: int, ctx: _Ctx) -> tuple[float, float, float, float]:
    """Embedding on the first rank, LM head + loss on the last: (time, flops, params, act bytes)."""
    s, job, dev, m = ctx.s, ctx.job, ctx.dev, ctx.module
    time = flops = params = act = 0.0
    if rank == 0:
        params += m.embedding_params / s.tp
    if rank == s.pp - 1 and m.vocab:
        t = s.mbs * job.seq_len / s.cp
        fwd = gemm_time(t, m.vocab / s.tp, m.hidden, dev)
        softmax = 4 * t * m.vocab / s.tp * 3 / (dev.hbm_bytes_per_s * dev.eff.hbm)  # fp32 logits r/w
        time = 3 * fwd + 2 * softmax
        flops = 6 * t * m.vocab * m.hidden / s.tp
        params += (m.head_params + m.final_norm_params) / s.tp
        if m.tied_embeddings and s.pp > 1:
            params += m.embedding_params / s.tp  # the last stage keeps its own copy of the tied matrix
        act = head_activation_bytes(m.vocab, m.hidden, s, job)
    return time, flops, params, act


def _transient_bytes(layers: Sequence[Layer], s: Strategy, dev: Device) -> dict[str, float]:
    """ZeRO-3 keeps the gathered parameters of the current and the prefetched layer."""
    out = {"reserved": dev.eff.memory_reserved_bytes}
    if s.zero >= 3 and layers:
        out["gathered_params"] = 2 * max(sum(_layer_params(layer, s)) for layer in layers) * PARAM_BYTES
    return out


def _p2p(ctx: _Ctx) -> float:
    """Pipeline sends per micro-batch: activations forward, their grads backward, per chunk.
    Interleaved schedules overlap them with compute (Megatron overlap_p2p_comm)."""
    s = ctx.s
    if s.pp <= 1 or (s.vpp > 1 and s.overlap_p2p):
        return 0.0
    # each TP rank sends 1/tp of the activation and the next stage all-gathers it over its scale-up
    # links (Narayanan et al. 2021 §4.1 scatter/gather; with SP the tensor is already sharded)
    nbytes = s.mbs * ctx.job.seq_len / s.cp * ctx.module.hidden * PARAM_BYTES / s.tp
    return 2 * s.vpp * collective_time(Collective.P2P, nbytes, ctx.groups["pp"], ctx.dev.eff)


def _dp_terms(slowest: RankCost, ctx: _Ctx) -> dict[str, float]:
    """Gradient reduction and parameter gathers over data parallel for one rank, with what hides
    them (the step waits for the rank whose reduction ends last: see `_worst_dp_terms`)."""
    s, job, eff = ctx.s, ctx.job, ctx.dev.eff
    g = grad_bytes(job)
    m = ctx.microbatches
    dense, expert = slowest.dense_params, slowest.expert_params
    dp_g, edp_g = ctx.groups["dpcp"], ctx.groups["edp"]

    def both(kind: Collective, per_param: float) -> float:
        return (collective_time(kind, dense * per_param, dp_g, eff)
                + collective_time(kind, expert * per_param, edp_g, eff))

    if s.zero >= 3:
        # FSDP: gather weights for forward and again for backward, reduce-scatter grads, every micro-batch
        per_mb = 2 * both(Collective.ALL_GATHER, PARAM_BYTES) + both(Collective.REDUCE_SCATTER, g)
        hidden = slowest.compute_s + slowest.recompute_s if s.overlap_param_gather else 0.0
        exposed = ctx.microbatches * max(per_mb / _layers_per_rank(ctx), per_mb - hidden)
        return {"dp_comm": exposed, "param_gather": 0.0}
    window = max(0.0, slowest.bwd_s - _priority_nic_time(slowest, ctx))
    gather = both(Collective.ALL_GATHER, PARAM_BYTES) if s.zero >= 1 else 0.0
    if s.zero == 2:
        # sharded gradients must be reduce-scattered every micro-batch (ZeRO-2, Rajbhandari 2020 §5.2)
        reduce = both(Collective.REDUCE_SCATTER, g)
        reduce_exposed = m * (max(0.0, reduce - window) if s.overlap_grad_reduce else reduce)
    else:
        reduce = both(Collective.REDUCE_SCATTER if s.zero == 1 else Collective.ALL_REDUCE, g)
        reduce_exposed = max(0.0, reduce - window) if s.overlap_grad_reduce else reduce
    gather_exposed = max(0.0, gather - slowest.fwd_s) if s.overlap_param_gather else gather
    return {"dp_comm": reduce_exposed, "param_gather": gather_exposed}


def _priority_nic_time(rank: RankCost, ctx: _Ctx) -> float:
    """Backward-pass NIC time taken by latency-critical traffic. EP all-to-all and PP sends go
    first on links they share with the DP reduction, which only gets what they leave."""
    if not ctx.groups["dpcp"].crosses_domains:
        return 0.0
    busy = 0.0
    if ctx.groups["ep"].crosses_domains:
        busy += rank.ep_s / 2  # the backward half of dispatch + combine
    if ctx.groups["pp"].crosses_domains:
        busy += rank.p2p_s / 2
    return busy


def _layers_per_rank(ctx: _Ctx) -> int:
    return max(1, ctx.module.num_layers // ctx.s.pp)


def _optimizer_time(rank: RankCost, ctx: _Ctx) -> float:
    """Adam is memory-bound: ~30 bytes per local parameter (fp32 master, two moments read and
    written, grad read, bf16 weight written); offloaded, it runs on the host behind PCIe."""
    s = ctx.s
    shard = s.dp * s.cp if s.zero >= 1 else 1
    eshard = max(1, s.expert_dp) if s.zero >= 1 else 1
    local = rank.dense_params / shard + rank.expert_params / eshard
    if s.offload is Offload.OPTIMIZER:
        transfer = local * (grad_bytes(ctx.job) + PARAM_BYTES) / HOST_LINK_BYTES_PER_S
        return transfer + local / HOST_ADAM_PARAMS_PER_S
    return local * 30 / (ctx.dev.hbm_bytes_per_s * ctx.dev.eff.hbm)


def device_for(cluster: Cluster, job: Job) -> Device:
    acc = cluster.accelerator
    return Device(acc.peak(job.dtype), acc.hbm_bytes_per_s, efficiency(acc.generation))


def estimate_module(module: Module, cluster: Cluster, job: Job, s: Strategy, plan: Plan,
                    cache: dict | None = None) -> Estimate:
    dev = device_for(cluster, job)
    groups = plan_groups(cluster, s, plan.placement)
    ctx = _Ctx(module, s, job, dev, groups, microbatches(job, s), layer_cache={} if cache is None else cache)
    ranks = [_rank_cost(r, counts, ctx) for r, counts in enumerate(rank_layer_counts(module, s))]
    slowest = max(ranks, key=lambda r: r.time_s)
    # interleaving shortens fill/drain only when micro-batches come in groups of pp (Megatron's
    # schedule); with fewer than pp, one micro-batch's chunks run back to back as in 1F1B
    pipe = pipeline_time([r.time_s for r in ranks], ctx.microbatches, s.vpp if ctx.microbatches >= s.pp else 1)
    m = ctx.microbatches
    dp = max((_dp_terms(r, ctx) for r in ranks), key=lambda t: t["dp_comm"] + t["param_gather"])
    optimizer = max(_optimizer_time(r, ctx) for r in ranks)
    time = {
        "compute": m * slowest.compute_s,
        "recompute": m * slowest.recompute_s,
        "tp_comm": m * slowest.tp_s,
        "cp_comm": m * slowest.cp_s,
        "ep_comm": m * slowest.ep_s,
        "pp_p2p": m * slowest.p2p_s,
        "pp_bubble": pipe - m * slowest.time_s,
        "dp_comm": dp["dp_comm"],
        "param_gather": dp["param_gather"],
        "optimizer": optimizer,
    }
    step = sum(time.values())
    fullest = max(ranks, key=lambda r: sum(r.memory.values()))
    tokens = job.global_batch * job.seq_len
    index = LayerIndex.of(module)
    per_token = model_flops_per_token(index.kinds, _kind_counts(index), module.head_matmul_params, job.seq_len)
    model_flops = tokens * per_token
    replicas = s.dp * s.tp * s.cp  # devices sharing each rank's work
    hw_flops = sum(r.hardware_flops for r in ranks) * m * replicas
    return Estimate(
        step_time_s=step, time_breakdown=time, memory_breakdown=dict(fullest.memory),
        peak_memory_bytes=sum(fullest.memory.values()), capacity_bytes=cluster.accelerator.hbm_bytes,
        tokens_per_s=tokens / step, model_flops_per_step=model_flops, hardware_flops_per_step=hw_flops,
        devices=s.devices, peak_flops_per_s=dev.peak_flops_per_s, comm_by_tier=_comm_by_tier(time, groups),
    )


def _kind_counts(index: LayerIndex) -> tuple[int, ...]:
    return index.counts(0, len(index.kind_of))


def _comm_by_tier(time: dict[str, float], groups: dict[str, GroupSpan]) -> dict[str, float]:
    out: dict[str, float] = {}
    for term, axis in (("tp_comm", "tp"), ("cp_comm", "cp"), ("ep_comm", "ep"), ("pp_p2p", "pp"),
                       ("dp_comm", "dpcp"), ("param_gather", "dpcp")):
        if time[term] > 0:
            tier = groups[axis].outer.name
            out[tier] = out.get(tier, 0.0) + time[term]
    return out


def estimate(model: ModelGraph, cluster: Cluster, job: Job, plan: Plan, cache: dict | None = None) -> Estimate:
    """Predicted step time, memory and utilisation of `plan` for `job` on `cluster`.

    `cache` (optional) keeps per-layer terms between calls for the same model, cluster and job,
    as a search scoring many plans does; the numbers are the same with or without it."""
    check_plan(model, cluster, job, plan)
    if len(model.modules) == 1:
        return estimate_module(model.modules[0], cluster, job, plan.main, plan, cache)
    return _estimate_multimodule(model, cluster, job, plan)


def _estimate_multimodule(model: ModelGraph, cluster: Cluster, job: Job, plan: Plan) -> Estimate:
    """Modules on disjoint devices run concurrently; the slowest paces the step."""
    parts = [estimate_module(m, cluster, job, plan.strategy(m.name), plan) for m in model.modules]
    slowest = max(parts, key=lambda e: e.step_time_s)
    fullest = max(parts, key=lambda e: e.peak_memory_bytes)
    return Estimate(
        step_time_s=slowest.step_time_s, time_breakdown=slowest.time_breakdown,
        memory_breakdown=fullest.memory_breakdown, peak_memory_bytes=fullest.peak_memory_bytes,
        capacity_bytes=fullest.capacity_bytes, tokens_per_s=job.tokens / slowest.step_time_s,
        model_flops_per_step=sum(p.model_flops_per_step for p in parts),
        hardware_flops_per_step=sum(p.hardware_flops_per_step for p in parts),
        devices=plan.devices, peak_flops_per_s=slowest.peak_flops_per_s, comm_by_tier=slowest.comm_by_tier,
    )


@dataclass(frozen=True, slots=True)
class StageTable:
    """Per-layer and per-rank terms of one strategy, for a solver that re-splits the pipeline:
    the same numbers `estimate` adds up, exposed layer by layer."""

    policies: tuple[Recompute, ...]
    layer_time_s: tuple[tuple[float, ...], ...]  # [policy][layer] per micro-batch
    layer_act_bytes: tuple[tuple[float, ...], ...]  # [policy][layer] per in-flight micro-batch
    layer_static_bytes: tuple[float, ...]
    rank_extra_time_s: tuple[float, ...]
    rank_extra_bytes: tuple[float, ...]
    in_flight: tuple[float, ...]
    capacity_bytes: float


def stage_table(module: Module, cluster: Cluster, job: Job, s: Strategy, plan: Plan,
                policies: tuple[Recompute, ...]) -> StageTable:
    dev = device_for(cluster, job)
    ctx = _Ctx(module, s, job, dev, plan_groups(cluster, s, plan.placement), microbatches(job, s))
    index = LayerIndex.of(module)
    kinds = index.kinds
    times, acts = [], []
    for policy in policies:
        terms = [_layer_terms(k, kinds[k], policy, ctx) for k in index.kind_of]
        times.append(tuple(t.time_s for t in terms))
        acts.append(tuple(t.act_bytes for t in terms))
    static = []
    for k in index.kind_of:
        t = _layer_terms(k, kinds[k], Recompute.NONE, ctx)
        static.append(sum(model_state_bytes(t.dense_params, t.expert_params, s, job).values()))
    extra_t, extra_b = [], []
    # the recompute transient `estimate` adds (what a policy did not store), at its largest over the
    # allowed policies, since one extra-bytes figure per rank must cover whichever the solver picks
    worst_full = max(_layer_terms(k, kinds[k], p, ctx).full_act_bytes for k in set(index.kind_of) for p in policies)
    for rank in range(s.pp):
        head_s, _, head_dense, head_act = _ends(rank, ctx)
        extra_t.append(head_s + _p2p(ctx))
        states = sum(model_state_bytes(head_dense, 0.0, s, job).values())
        transient = sum(_transient_bytes(module.layers, s, dev).values())
        extra_b.append(states + head_act + transient + worst_full)
    return StageTable(
        policies=policies, layer_time_s=tuple(times), layer_act_bytes=tuple(acts),
        layer_static_bytes=tuple(static), rank_extra_time_s=tuple(extra_t), rank_extra_bytes=tuple(extra_b),
        in_flight=tuple(in_flight_microbatches(s, r, ctx.microbatches) for r in range(s.pp)),
        capacity_bytes=cluster.accelerator.hbm_bytes,
    )
