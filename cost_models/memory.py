"""Bytes per device: model states under ZeRO/FSDP and activations by recompute policy."""

from __future__ import annotations

from autoplan.types import Job, Layer, Moe, Offload, Recompute, Strategy

PARAM_BYTES = 2  # bf16/fp16 working weights


def grad_bytes(job: Job) -> int:
    """Gradient buffer bytes per parameter: fp32 when the stack accumulates in fp32 (Megatron-LM's
    accumulate_allreduce_grads_in_fp32), else the training dtype (Megatron-Core's default)."""
    return 4 if job.fp32_grads else 2


OPTIMIZER_BYTES = {"adam": 12, "sgd": 8}  # fp32 master + moments (ZeRO paper, Rajbhandari 2020, §3.1)


def model_state_bytes(dense_params: float, expert_params: float, s: Strategy, job: Job) -> dict[str, float]:
    """Weights, gradients and optimizer states of the params on this device (already divided by
    tp/pp/ep). ZeRO-k shards the first k of (optimizer, gradients, weights) over data parallel;
    Megatron's distributed optimizer shards over dp·cp, experts over their expert-dp group."""
    shard = s.dp * s.cp
    eshard = max(1, s.expert_dp)
    g, o = grad_bytes(job), OPTIMIZER_BYTES[job.optimizer.value]

    def states(params: float, n: int) -> tuple[float, float, float]:
        w = params * PARAM_BYTES / (n if s.zero >= 3 else 1)
        gr = params * g / (n if s.zero >= 2 else 1)
        opt = params * o / (n if s.zero >= 1 else 1)
        return w, gr, opt

    wd, gd, od = states(dense_params, shard)
    we, ge, oe = states(expert_params, eshard)
    opt = od + oe
    return {
        "weights": wd + we,
        "gradients": gd + ge,
        "optimizer": 0.0 if s.offload is Offload.OPTIMIZER else opt,
    }


def layer_activation_bytes(layer: Layer, s: Strategy, job: Job, recompute: Recompute) -> float:
    """Bytes one layer keeps for backward per micro-batch (Korthikanti et al. 2022, Table 2:
    sbh(10 + 24/t + 5as/ht) for GPT without recompute, generalised to GQA, gated MLPs, MoE,
    fused attention and no dropout)."""
    t = s.mbs * job.seq_len / s.cp
    h = layer.attention.hidden
    split = 1 / s.tp if s.sp else 1.0  # sequence parallelism shards the norm/dropout region
    if recompute is Recompute.FULL:
        return 2 * t * h * split  # the layer input only
    att = layer.attention
    drop = 1 if job.dropout else 0
    replicated = t * h * (2 + 2 + drop) * 2 * split  # per sub-block: norm input, GEMM input, dropout mask
    q = att.heads * att.head_dim
    kv = att.kv_heads * (att.head_dim + att.value_dim)
    sharded_attn = t * 2 * (q + kv + att.heads * att.value_dim) / s.tp  # Q, K, V, output-proj input
    scores = 0.0
    if not job.flash_attention and recompute is not Recompute.SELECTIVE:
        kv_len = min(job.seq_len, att.window or job.seq_len)
        scores = t * kv_len * att.heads / s.tp * (2 + 2 + 1) if drop else t * kv_len * att.heads / s.tp * 2
    return replicated + sharded_attn + scores + _ffn_activation_bytes(layer, t, s)


def _ffn_activation_bytes(layer: Layer, t: float, s: Strategy) -> float:
    ffn = layer.ffn
    if isinstance(ffn, Moe):
        # permuted tokens in, expert FC1 outputs (+gate), activation output, combine input
        rows = t * ffn.top_k * s.etp / s.tp  # as compute.expert_rows: rows fold over tp/etp ranks
        inner = rows * ffn.expert_ffn / s.etp * 2 * (3 if ffn.gated else 2)
        shared = t * ffn.shared_ffn / s.tp * 2 * (3 if ffn.gated else 2)
        return rows * ffn.hidden * 2 * 2 + inner + shared
    # gated: FC1 output (2f) and activation output (f); plain: GeLU input and output (Korthikanti: 16sbh)
    return t * ffn.ffn / s.tp * 2 * (3 if ffn.gated else 2)


def head_activation_bytes(vocab: int, hidden: int, s: Strategy, job: Job) -> float:
    """Last stage: final norm input and fp32 logits for the cross-entropy (Korthikanti §4.3: 4sbv/t)."""
    t = s.mbs * job.seq_len / s.cp
    return t * hidden * 2 * (1 / s.tp if s.sp else 1.0) + 4 * t * vocab / s.tp


def in_flight_microbatches(s: Strategy, stage: int, microbatches: int) -> float:
    """Micro-batches' worth of activations a pipeline rank holds at its peak. 1F1B rank r holds
    pp - r. Interleaved, rank r warms up (pp-r-1)·2 + (vpp-1)·pp chunks and holds one more, each
    1/vpp of its layers: pp + (pp-2r-1)/vpp, which on rank 0 is Korthikanti et al. 2022's
    pp·(1 + (pp-1)/(pp·vpp)) (Megatron-LM schedules.py, interleaved warm-up count)."""
    held = float(s.pp - stage)
    if s.vpp > 1:
        held = s.pp + (s.pp - 2 * stage - 1) / s.vpp
    return float(min(held, microbatches)) if s.pp > 1 else 1.0
