"""The operators each device runs at full model scale under a plan: the list a hardware team
validates on a new accelerator before the job is launched.

Pure arithmetic on the ModelGraph, the strategy and the job. Shapes are per device, per
micro-batch and per layer, forward pass (backward runs each GEMM twice, for the input and the
weight gradient, with the transposed shapes; collectives run once more in reverse). Layouts
follow Megatron-Core: fused QKV and fc1, vocab-parallel head, ring attention over cp, all-to-all
MoE dispatch.
"""

from __future__ import annotations

import math
from dataclasses import replace
from enum import StrEnum
from typing import Any

from autoplan.types import Attention, Job, Mlp, Module, Moe, Strategy, value

GRAD_BYTES = 4  # gradients reduced in fp32 (Megatron main_grad)
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1}


class OpKind(StrEnum):
    GEMM = "gemm"  # shape (M, N, K)
    ATTENTION = "attention"  # shape (batch, heads, q_len, kv_len, head_dim)
    LOOKUP = "lookup"  # shape (tokens, hidden)
    ALL_REDUCE = "all-reduce"  # shape (elements,)
    ALL_GATHER = "all-gather"
    REDUCE_SCATTER = "reduce-scatter"
    ALL_TO_ALL = "all-to-all"
    SEND_RECV = "send-recv"


@value
class Op:
    block: str  # embedding, attention, mlp, moe, head, step
    name: str
    kind: OpKind
    shape: tuple[int, ...]
    count: int = 1  # times per layer per micro-batch (per step for block "step")
    bytes: int = 0  # collectives: bytes each device contributes, per call
    group: int = 1  # collectives: devices in the group

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.block, "name": self.name, "kind": self.kind.value, "shape": list(self.shape),
                "count": self.count, "bytes": self.bytes, "group": self.group}


def _tokens(job: Job, s: Strategy) -> int:
    """Tokens of one micro-batch on one device: the GEMMs' M."""
    return s.mbs * job.seq_len // s.cp


def _tp_collectives(block: str, t: int, hidden: int, s: Strategy, nbytes: int) -> list[Op]:
    """Megatron TP: one all-reduce after the row-parallel GEMM, or with SP an all-gather before
    the column-parallel GEMM and a reduce-scatter after the row-parallel one (Korthikanti 2022)."""
    if s.tp == 1:
        return []
    full = t * hidden
    if not s.sp:
        return [Op(block=block, name="tp-allreduce", kind=OpKind.ALL_REDUCE, shape=(full,),
                   bytes=full * nbytes, group=s.tp)]
    return [Op(block=block, name="sp-allgather", kind=OpKind.ALL_GATHER, shape=(full,),
               bytes=full // s.tp * nbytes, group=s.tp),
            Op(block=block, name="sp-reducescatter", kind=OpKind.REDUCE_SCATTER, shape=(full,),
               bytes=full * nbytes, group=s.tp)]


def attention_ops(att: Attention, job: Job, s: Strategy) -> list[Op]:
    t, nbytes, tp = _tokens(job, s), DTYPE_BYTES[job.dtype], s.tp
    q_width = att.heads * att.head_dim
    kv_width = att.kv_heads * (att.head_dim + att.value_dim)
    chunk = job.seq_len // s.cp
    kv_len = min(chunk, att.window) if att.window else chunk
    ops = [Op(block="attention", name="qkv", kind=OpKind.GEMM, shape=(t, (q_width + kv_width) // tp, att.hidden)),
           Op(block="attention", name="core", kind=OpKind.ATTENTION, count=s.cp,
              shape=(s.mbs, att.heads // tp, chunk, kv_len, att.head_dim)),
           Op(block="attention", name="out", kind=OpKind.GEMM,
              shape=(t, att.hidden, att.heads * att.value_dim // tp))]
    if s.cp > 1:
        kv_block = s.mbs * chunk * max(att.kv_heads // tp, 1) * (att.head_dim + att.value_dim)
        ops.append(Op(block="attention", name="cp-ring-kv", kind=OpKind.SEND_RECV, shape=(kv_block,),
                      count=s.cp - 1, bytes=kv_block * nbytes, group=s.cp))
    return ops + _tp_collectives("attention", t, att.hidden, s, nbytes)


def mlp_ops(mlp: Mlp, job: Job, s: Strategy) -> list[Op]:
    t, up = _tokens(job, s), (2 if mlp.gated else 1) * mlp.ffn
    return [Op(block="mlp", name="fc1", kind=OpKind.GEMM, shape=(t, up // s.tp, mlp.hidden)),
            Op(block="mlp", name="fc2", kind=OpKind.GEMM, shape=(t, mlp.hidden, mlp.ffn // s.tp)),
            *_tp_collectives("mlp", t, mlp.hidden, s, DTYPE_BYTES[job.dtype])]


def moe_ops(moe: Moe, job: Job, s: Strategy) -> list[Op]:
    """Router, dispatch, local experts, combine. Tokens per local expert: each of the ep ranks
    sends top_k/experts of its tokens to every expert, times the job's load imbalance."""
    nbytes = DTYPE_BYTES[job.dtype]
    t = _tokens(job, s) // (s.tp if s.sp else 1)
    per_expert = math.ceil(t * moe.top_k * s.ep / moe.experts * job.moe_imbalance)
    local, up = moe.experts // s.ep, (2 if moe.gated else 1) * moe.expert_ffn
    a2a = t * moe.top_k * moe.hidden
    ops = [Op(block="moe", name="router", kind=OpKind.GEMM, shape=(t, moe.experts, moe.hidden)),
           Op(block="moe", name="expert-fc1", kind=OpKind.GEMM, count=local,
              shape=(per_expert, up // s.etp, moe.hidden)),
           Op(block="moe", name="expert-fc2", kind=OpKind.GEMM, count=local,
              shape=(per_expert, moe.hidden, moe.expert_ffn // s.etp))]
    if s.ep > 1:
        ops.append(Op(block="moe", name="ep-dispatch-combine", kind=OpKind.ALL_TO_ALL, shape=(a2a,), count=2,
                      bytes=a2a * nbytes, group=s.ep))
    if moe.shared_ffn:
        shared = Mlp(hidden=moe.hidden, ffn=moe.shared_ffn, gated=moe.gated, params=moe.shared_params)
        ops += [replace(op, block="moe", name="shared-" + op.name)
                for op in mlp_ops(shared, job, s) if op.kind == OpKind.GEMM]
    return ops


def _device_params(module: Module, s: Strategy) -> tuple[int, int]:
    """(dense, expert) parameters one device of the fullest stage holds."""
    layers = math.ceil(module.num_layers / s.pp)
    dense = expert = 0
    for layer in module.layers[:layers]:
        if isinstance(layer.ffn, Moe):
            routed = layer.ffn.experts * layer.ffn.expert_params
            expert += routed // (s.ep * s.etp)
            dense += (layer.params - routed) // s.tp
        else:
            dense += layer.params // s.tp
    edge = max(module.embedding_params, module.head_params or module.embedding_params) // s.tp
    return dense + edge, expert


def step_ops(module: Module, job: Job, s: Strategy) -> list[Op]:
    """Once-per-step collectives: pipeline sends, gradient reduction, ZeRO gathers."""
    nbytes, ops = DTYPE_BYTES[job.dtype], []
    micro = job.global_batch // (s.dp * s.mbs)
    if s.pp > 1:
        act = s.mbs * job.seq_len // s.cp * module.hidden // (s.tp if s.sp else 1)
        ops.append(Op(block="step", name="pp-activations", kind=OpKind.SEND_RECV, shape=(act,),
                      count=2 * micro * s.vpp, bytes=act * nbytes, group=2))
    dense, expert = _device_params(module, s)
    kind = OpKind.REDUCE_SCATTER if s.zero >= 1 else OpKind.ALL_REDUCE
    for name, n, group in (("dp-grads", dense, s.dp * s.cp), ("edp-grads", expert, s.expert_dp)):
        if n and group > 1:
            ops.append(Op(block="step", name=name, kind=kind, shape=(n,), bytes=n * GRAD_BYTES, group=group))
            if s.zero >= 1:
                ops.append(Op(block="step", name=name.replace("grads", "params"), kind=OpKind.ALL_GATHER,
                              shape=(n,), count=3 if s.zero == 3 else 1, bytes=n // group * nbytes, group=group))
    return ops


def operator_shapes(module: Module, job: Job, s: Strategy) -> list[Op]:
    """Every distinct operator a device runs for `module` under strategy `s`, forward order."""
    t = _tokens(job, s)
    ops = [Op(block="embedding", name="lookup", kind=OpKind.LOOKUP, shape=(t, module.hidden))]
    seen: set[tuple[Any, ...]] = set()
    for layer in module.layers:
        ffn = moe_ops(layer.ffn, job, s) if isinstance(layer.ffn, Moe) else mlp_ops(layer.ffn, job, s)
        for op in attention_ops(layer.attention, job, s) + ffn:
            if (key := (op.block, op.name, op.shape)) not in seen:
                seen.add(key)
                ops.append(op)
    if module.vocab:
        ops.append(Op(block="head", name="lm-head", kind=OpKind.GEMM, shape=(t, module.vocab // s.tp, module.hidden)))
    return ops + step_ops(module, job, s)
