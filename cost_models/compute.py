"""Compute time of one layer for one micro-batch on one device: GEMMs by roofline with
shape-dependent efficiency, attention with or without a fused kernel, memory-bound elementwise
work, and what recomputation adds."""

from __future__ import annotations

from dataclasses import dataclass

from autoplan.cost_models.calibration import Efficiency
from autoplan.types import Attention, Job, Layer, Moe, Recompute, Strategy


@dataclass(frozen=True, slots=True)
class Device:
    """What a cost term needs of the chip: dense peak for the job's dtype, HBM, calibration."""

    peak_flops_per_s: float
    hbm_bytes_per_s: float
    eff: Efficiency


@dataclass(frozen=True, slots=True)
class LayerCompute:
    fwd_s: float
    bwd_s: float
    recompute_s: float  # extra forward work in backward under the stage's recompute policy
    attention_fwd_s: float  # attention core alone (what CP ring traffic hides behind)
    fwd_flops: float  # executed forward FLOPs on this device (for HFU)
    recompute_flops: float


def _shape_factor(dim: float, eff: Efficiency) -> float:
    # small GEMM dimensions waste tiles and waves: saturating efficiency (a named half-point)
    return dim / (dim + eff.gemm_half_dim)


def gemm_time(m: float, n: float, k: float, dev: Device, grouped: bool = False) -> float:
    """[m x k] @ [k x n]: 2mnk FLOPs at shape-dependent efficiency, or the HBM roofline."""
    if m <= 0 or n <= 0 or k <= 0:
        return 0.0
    eff = dev.eff.gemm * _shape_factor(m, dev.eff) * _shape_factor(n, dev.eff) * _shape_factor(k, dev.eff)
    eff *= dev.eff.grouped_gemm if grouped else 1.0
    compute = 2 * m * n * k / (dev.peak_flops_per_s * eff)
    traffic = 2 * (m * k + k * n + m * n) / (dev.hbm_bytes_per_s * dev.eff.hbm)
    return max(compute, traffic) + dev.eff.kernel_overhead_s


def attention_kv_len(att: Attention, seq: int) -> float:
    """Mean keys each query attends to: (s+1)/2 for causal, capped by a sliding window."""
    full = (seq + 1) / 2 if att.causal else float(seq)
    return min(full, float(att.window)) if att.window else full


def attention_core_flops(att: Attention, tokens: float, seq: int, tp: int, executed: bool) -> float:
    """QK^T and AV: 2·tokens·kv·heads·(d_qk + d_v) (Megatron: 4·s·h per token for MHA, non-causal).
    `executed` counts what a causal kernel runs; otherwise the PaLM/Megatron full-square convention."""
    kv = attention_kv_len(att, seq) if executed else float(min(seq, att.window or seq))
    heads = att.heads / tp
    return 2 * tokens * kv * heads * (att.head_dim + att.value_dim)


def _attention_fwd_time(att: Attention, tokens: float, seq: int, tp: int, job: Job, dev: Device) -> float:
    if job.flash_attention:
        flops = attention_core_flops(att, tokens, seq, tp, executed=True)
        return flops / (dev.peak_flops_per_s * dev.eff.attention)
    # unfused: full s x s scores as batched GEMMs, then softmax (+dropout) through HBM
    flops = attention_core_flops(att, tokens, seq, tp, executed=False)
    scores = tokens * min(seq, att.window or seq) * att.heads / tp
    passes = 2 + 2 + (3 if job.dropout else 0)  # write scores, softmax read+write, dropout mask/out
    mem = scores * 2 * passes / (dev.hbm_bytes_per_s * dev.eff.hbm)
    return flops / (dev.peak_flops_per_s * dev.eff.unfused_attention) + mem


def _attention_gemms(att: Attention, t: float, tp: int, dev: Device) -> float:
    h, q_dim = att.hidden, att.heads * att.head_dim
    kv_dim = att.kv_heads * (att.head_dim + att.value_dim)
    o_in = att.heads * att.value_dim
    if att.kv_lora_rank:  # MLA: down-projections replicated, up-projections split by heads
        q_down = gemm_time(t, att.q_lora_rank, h, dev) if att.q_lora_rank else 0.0
        q_up = gemm_time(t, q_dim / tp, att.q_lora_rank or h, dev)
        kv_down = gemm_time(t, att.kv_lora_rank + att.rope_head_dim, h, dev)
        kv_up = gemm_time(t, att.heads * (att.head_dim - att.rope_head_dim + att.value_dim) / tp,
                          att.kv_lora_rank, dev)
        return q_down + q_up + kv_down + kv_up + gemm_time(t, h, o_in / tp, dev)
    return gemm_time(t, (q_dim + kv_dim) / tp, h, dev) + gemm_time(t, h, o_in / tp, dev)


def _mlp_gemms(hidden: int, ffn: int, gated: bool, t: float, tp: int, dev: Device) -> float:
    """Column-parallel up (and gate) projection, row-parallel down projection."""
    up = (2 if gated else 1) * ffn / tp
    return gemm_time(t, up, hidden, dev) + gemm_time(t, hidden, ffn / tp, dev)


def _moe_gemms(moe: Moe, t: float, s: Strategy, job: Job, dev: Device) -> float:
    """Routed experts: each device runs tokens·top_k expert rows spread over its local experts,
    the busiest device `moe_imbalance` times the mean (grouped GEMM)."""
    local_experts = max(1, moe.experts // s.ep)
    rows = expert_rows(moe, t, s) * routed_load(job)
    per_expert = rows / local_experts
    up = (2 if moe.gated else 1) * moe.expert_ffn / s.etp
    expert = local_experts * (gemm_time(per_expert, up, moe.hidden, dev, grouped=True)
                              + gemm_time(per_expert, moe.hidden, moe.expert_ffn / s.etp, dev, grouped=True))
    shared = _mlp_gemms(moe.hidden, moe.shared_ffn, moe.gated, t, s.tp, dev) if moe.shared_ffn else 0.0
    router = gemm_time(t, moe.experts, moe.hidden, dev)
    return expert + shared + router


def routed_load(job: Job) -> float:
    """The busiest expert's load over the mean: the routing imbalance, capped by the capacity
    factor when tokens beyond capacity are dropped (Fedus et al. 2021, Switch Transformer §2.1)."""
    return min(job.moe_imbalance, job.capacity_factor) if job.capacity_factor else job.moe_imbalance


def expert_rows(moe: Moe, t: float, s: Strategy) -> float:
    """Token-expert rows one device computes per micro-batch. A TP group's t tokens make t·top_k
    rows, spread over the tp/etp expert ranks the group folds into (Megatron-Core MoE folding)."""
    return t * moe.top_k * s.etp / s.tp


def _elementwise_bytes(layer: Layer, t: float, s: Strategy, job: Job) -> float:
    """HBM bytes of the forward's memory-bound kernels: norms, residual adds, rotary, the MLP
    activation, dropout. Norm/residual work is split by tp only under sequence parallelism."""
    h = layer.attention.hidden
    rep = t * (1 / s.tp if s.sp else 1.0)
    norms_residual = rep * h * 2 * (2 * 2 + 2 * 3)  # 2 norms (read+write), 2 residual adds (2 reads + write)
    dropout = rep * h * 2 if job.dropout else 0.0  # 1-byte masks, fused into bias-dropout-add
    att = layer.attention
    rotary = t * (att.heads + att.kv_heads) * att.head_dim / s.tp * 2 * 2
    if isinstance(layer.ffn, Moe):
        rows = expert_rows(layer.ffn, t, s)
        width = layer.ffn.expert_ffn * rows / t / s.etp + layer.ffn.shared_ffn / s.tp
        gated = layer.ffn.gated
        permute = rows * h * 2 * 2 * 2  # dispatch and combine permutations
    else:
        width, gated, permute = layer.ffn.ffn / s.tp, layer.ffn.gated, 0.0
    act = t * width * 2 * (3 if gated else 2)
    return norms_residual + dropout + rotary + act + permute


def layer_compute(layer: Layer, s: Strategy, job: Job, dev: Device, recompute: Recompute) -> LayerCompute:
    seq = job.seq_len
    t = s.mbs * seq / s.cp  # tokens this device holds per micro-batch
    att = layer.attention
    gemm = _attention_gemms(att, t, s.tp, dev)
    ffn = layer.ffn
    if isinstance(ffn, Moe):
        gemm += _moe_gemms(ffn, t, s, job, dev)
    else:
        gemm += _mlp_gemms(ffn.hidden, ffn.ffn, ffn.gated, t, s.tp, dev)
    # CP: each rank's queries meet all s keys, so the per-rank core is tokens_local x full kv
    attn = _attention_fwd_time(att, t, seq, s.tp, job, dev)
    elem = _elementwise_bytes(layer, t, s, job) / (dev.hbm_bytes_per_s * dev.eff.hbm)
    fwd = gemm + attn + elem
    # backward: dgrad + wgrad GEMMs (2x), attention backward (a fused kernel recomputes the scores:
    # FlashAttention-2 §3.1.2; unfused, it is two batched GEMMs per forward one), elementwise ~2x
    attn_bwd = attn * (dev.eff.attention_bwd_flops_ratio if job.flash_attention else 2.0)
    bwd = 2 * gemm + attn_bwd + 2 * elem
    # HFU counts FLOPs in the same full-square convention as MFU (PaLM), plus what is recomputed
    fwd_flops = _layer_fwd_flops(layer, t, seq, s, executed=False)
    if recompute is Recompute.FULL:
        extra, extra_flops = fwd, fwd_flops
    elif recompute is Recompute.SELECTIVE:
        extra = attn
        extra_flops = attention_core_flops(att, t, seq, s.tp, executed=False)
    else:
        extra, extra_flops = 0.0, 0.0
    return LayerCompute(fwd, bwd, extra, attn, fwd_flops, extra_flops)


def _layer_fwd_flops(layer: Layer, t: float, seq: int, s: Strategy, executed: bool) -> float:
    """Forward FLOPs on one device: 2 x matmul params x tokens (active experts only) + attention."""
    matmul = layer.attention.params + (layer.ffn.active_params if isinstance(layer.ffn, Moe) else layer.ffn.params)
    return 2 * t * matmul / s.tp + attention_core_flops(layer.attention, t, seq, s.tp, executed)


def model_flops_per_token(kinds: tuple[Layer, ...], counts: tuple[int, ...], head_matmul_params: int,
                          seq: int) -> float:
    """PaLM MFU numerator per token (Chowdhery et al. 2022, App. B): 6·N_matmul + attention
    (12·L·heads·d·s for MHA, full square), no recompute; N counts active experts and the LM head."""
    total = 6.0 * head_matmul_params
    for layer, count in zip(kinds, counts, strict=True):
        ffn = layer.ffn.active_params if isinstance(layer.ffn, Moe) else layer.ffn.params
        total += count * 6.0 * (layer.attention.params + ffn)
        total += count * 3 * attention_core_flops(layer.attention, 1, seq, 1, executed=False)
    return total
