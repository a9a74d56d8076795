"""Megatron-LM launch flags (`pretrain_gpt.py` argparse names), one flag per line.

Lines end in ` \\` so the block pastes into a launch script; a shell joins them into one command
line. Megatron's own rules are checked here so a flag set it would assert on is refused instead.
"""

from __future__ import annotations

from autoplan.export import (
    ExportContext,
    ffn_shape,
    first_moe,
    is_even,
    microbatches,
    refuse,
    single_module,
    uniform_recompute,
    virtual_stage_layers,
)
from autoplan.types import Attention, Module, Moe, Offload, Recompute, Strategy

Flag = tuple[str, object]  # (name, value); value None for a switch

ENGINE = "megatron"


class MegatronExporter:
    name = "megatron"
    suffix = ".sh"

    def render(self, ctx: ExportContext) -> str:
        module, s = single_module(ctx, ENGINE)
        _check(s)
        microbatches(ctx)
        flags = [*_parallel_flags(module, s), *_memory_flags(s), *_batch_flags(ctx),
                 *_model_flags(module), *_moe_flags(module, s), *_precision_flags(ctx.job.dtype)]
        return _as_lines(flags)


def _check(s: Strategy) -> None:
    if s.zero == 3:
        raise refuse(ENGINE, "zero=3", "its --use-distributed-optimizer shards optimizer state and "
                     "gradients, not parameters",
                     "use zero<=2, or the torchtitan or deepspeed export for ZeRO-3")
    if s.tp_comm_overlap and s.tp > 1 and not s.sp:
        raise refuse(ENGINE, "tp_comm_overlap=1 with sp=0", "TP communication overlap needs sequence "
                     "parallelism", "set sp=1 or tp_comm_overlap=0")
    if s.offload == Offload.OPTIMIZER and s.zero == 0:
        raise refuse(ENGINE, "offload=optimizer with zero=0", "--optimizer-cpu-offload needs the "
                     "distributed optimizer", "use zero>=1")


def _parallel_flags(module: Module, s: Strategy) -> list[Flag]:
    flags: list[Flag] = [("--tensor-model-parallel-size", s.tp), ("--pipeline-model-parallel-size", s.pp)]
    flags += _stage_flags(module, s)
    flags.append(("--context-parallel-size", s.cp))
    if s.sp and s.tp > 1:
        flags.append(("--sequence-parallel", None))
    return flags


def _stage_flags(module: Module, s: Strategy) -> list[Flag]:
    """Even splits by layer count; uneven ones only where Megatron's first/last-stage flags reach."""
    virtual = virtual_stage_layers(module, s)
    if is_even(virtual):
        return [("--num-layers-per-virtual-pipeline-stage", virtual[0])] if s.vpp > 1 else []
    # virtual stage v*pp + p is chunk v of pipeline rank p (Megatron's interleaved order)
    chunks = [[virtual[v * s.pp + p] for v in range(s.vpp)] for p in range(s.pp)]
    middle = {c for chunk in chunks[1:-1] for c in chunk}
    if any(len(set(chunk)) > 1 for chunk in chunks) or len(middle) > 1:
        split = ",".join(map(str, virtual))
        raise refuse(ENGINE, f"stage_layers={split}", "only the first and last pipeline stages may differ, "
                     "and every model chunk of a stage holds the same number of layers",
                     "use an even split or one that differs only on the first/last stage")
    flags: list[Flag] = []
    first, last = chunks[0][0] * s.vpp, chunks[-1][0] * s.vpp
    if s.pp == 2 or first != next(iter(middle)) * s.vpp:
        flags.append(("--decoder-first-pipeline-num-layers", first))
    if s.pp == 2 or last != next(iter(middle)) * s.vpp:
        flags.append(("--decoder-last-pipeline-num-layers", last))
    if s.vpp > 1:
        flags.append(("--virtual-pipeline-model-parallel-size", s.vpp))
    return flags


def _memory_flags(s: Strategy) -> list[Flag]:
    flags: list[Flag] = []
    recompute = uniform_recompute(s, ENGINE)
    if recompute == Recompute.SELECTIVE:
        flags.append(("--recompute-granularity", "selective"))
    elif recompute == Recompute.FULL:
        flags += [("--recompute-granularity", "full"), ("--recompute-method", "uniform"),
                  ("--recompute-num-layers", 1)]
    if s.zero >= 1:
        flags.append(("--use-distributed-optimizer", None))
    if s.offload == Offload.OPTIMIZER:
        flags.append(("--optimizer-cpu-offload", None))
    if s.overlap_grad_reduce:
        flags.append(("--overlap-grad-reduce", None))
        # Megatron overlaps the parameter all-gather only for the distributed optimizer
        if s.overlap_param_gather and s.zero >= 1:
            flags.append(("--overlap-param-gather", None))
    if s.tp_comm_overlap and s.tp > 1:
        flags.append(("--tp-comm-overlap", None))
    return flags


def _batch_flags(ctx: ExportContext) -> list[Flag]:
    return [("--micro-batch-size", ctx.strategy.mbs), ("--global-batch-size", ctx.job.global_batch),
            ("--seq-length", ctx.job.seq_len)]


def _model_flags(module: Module) -> list[Flag]:
    attn = module.layers[0].attention
    ffn, gated = ffn_shape(module)
    flags: list[Flag] = [("--num-layers", module.num_layers), ("--hidden-size", attn.hidden),
                         ("--ffn-hidden-size", ffn), ("--num-attention-heads", attn.heads)]
    if attn.head_dim * attn.heads != attn.hidden:
        flags.append(("--kv-channels", attn.head_dim))
    if attn.kv_heads != attn.heads:
        flags += [("--group-query-attention", None), ("--num-query-groups", attn.kv_heads)]
    flags += _mla_flags(attn)
    if gated:
        flags.append(("--swiglu", None))
    if not module.tied_embeddings:
        flags.append(("--untie-embeddings-and-output-weights", None))
    return flags


def _mla_flags(attn: Attention) -> list[Flag]:
    if not attn.kv_lora_rank:
        return []
    flags: list[Flag] = [("--multi-latent-attention", None), ("--kv-lora-rank", attn.kv_lora_rank),
                         ("--qk-head-dim", attn.head_dim), ("--qk-pos-emb-head-dim", attn.rope_head_dim),
                         ("--v-head-dim", attn.value_dim)]
    if attn.q_lora_rank:
        flags.append(("--q-lora-rank", attn.q_lora_rank))
    return flags


def _moe_flags(module: Module, s: Strategy) -> list[Flag]:
    moe = first_moe(module)
    if moe is None:
        return []
    if s.ep > 1 and s.tp > 1 and not s.sp:
        raise refuse(ENGINE, f"ep={s.ep} with tp={s.tp} and sp=0", "expert parallelism with tensor "
                     "parallelism needs sequence parallelism", "set sp=1")
    flags: list[Flag] = [("--expert-model-parallel-size", s.ep), ("--expert-tensor-parallel-size", s.etp),
                         ("--num-experts", moe.experts), ("--moe-router-topk", moe.top_k),
                         ("--moe-ffn-hidden-size", moe.expert_ffn),
                         ("--moe-token-dispatcher-type", s.dispatch.value)]
    if moe.shared_ffn:
        flags.append(("--moe-shared-expert-intermediate-size", moe.shared_ffn))
    pattern = [1 if isinstance(layer.ffn, Moe) else 0 for layer in module.layers]
    if 0 in pattern:
        flags.append(("--moe-layer-freq", _layer_pattern(pattern)))
    return flags


def _layer_pattern(pattern: list[int]) -> str:
    """Megatron's --moe-layer-freq list form, run-length encoded: `([0]*3+[1]*58)`."""
    runs: list[tuple[int, int]] = []
    for bit in pattern:
        if runs and runs[-1][0] == bit:
            runs[-1] = (bit, runs[-1][1] + 1)
        else:
            runs.append((bit, 1))
    return "(" + "+".join(f"[{bit}]*{n}" for bit, n in runs) + ")"


def _precision_flags(dtype: str) -> list[Flag]:
    if dtype == "fp16":
        return [("--fp16", None)]
    if dtype == "fp8":
        return [("--bf16", None), ("--fp8-format", "hybrid")]
    return [("--bf16", None)]


def _as_lines(flags: list[Flag]) -> str:
    words = [name if v is None else f"{name} {_quote(v)}" for name, v in flags]
    return " \\\n".join(words) + "\n"


def _quote(v: object) -> str:
    text = str(v)
    return f"'{text}'" if any(c in text for c in "()[]*+ ") else text


EXPORTER = MegatronExporter()
