"""MaxText config overrides (YAML, on top of `configs/base.yml`).

Each mesh axis is split into the part inside one scale-up domain (`ici_*`) and the part across
domains (`dcn_*`), walking the plan's placement order innermost first. Recompute maps to MaxText
remat policies: none -> "minimal_with_context" (saves every matmul output and the attention
context: MaxText has no remat-free policy, this is its lightest), selective -> "minimal" (saves
matmul outputs, recomputes the attention core), full -> "full".
"""

from __future__ import annotations

import math

import yaml

from autoplan.export import (
    ExportContext,
    ffn_shape,
    first_moe,
    is_even,
    mesh_axes,
    microbatches,
    refuse,
    scale_up_span,
    single_module,
    split_ici_dcn,
    uniform_recompute,
    virtual_stage_layers,
)
from autoplan.types import Module, Moe, Offload, Recompute, Strategy

ENGINE = "maxtext"
REMAT = {Recompute.NONE: "minimal_with_context", Recompute.SELECTIVE: "minimal", Recompute.FULL: "full"}
_AXES = ("data", "fsdp", "tensor", "context", "expert", "pipeline")


class MaxTextExporter:
    name = "maxtext"
    suffix = ".yml"

    def render(self, ctx: ExportContext) -> str:
        module, s = single_module(ctx, ENGINE)
        config: dict[str, object] = {
            **_mesh(ctx),
            **_batch(ctx, module),
            "remat_policy": REMAT[uniform_recompute(s, ENGINE)],
            **_memory(s),
            **_precision(ctx.job.dtype),
            **_model(module, s),
        }
        header = f"# MaxText overrides for {ctx.model.name} on {ctx.cluster.devices} x {ctx.cluster.name}\n"
        return header + yaml.safe_dump(config, sort_keys=False)


def _mesh(ctx: ExportContext) -> dict[str, int]:
    s, span = ctx.strategy, scale_up_span(ctx.cluster)
    names = {"tp": "tensor", "cp": "context", "ep": "expert", "pp": "pipeline",
             "dp": "fsdp" if s.zero == 3 else "data"}
    split = split_ici_dcn(mesh_axes(ctx, ENGINE), span)
    inside = math.prod(ici for ici, _ in split.values())
    if inside != span:
        raise refuse(ENGINE, f"this layout with placement {','.join(ctx.plan.placement.order)}",
                     f"the axes inside one {span}-device scale-up domain multiply to {inside}; its ici_* "
                     "axes must fill the domain",
                     f"choose degrees whose innermost factors multiply to {span}")
    ici = dict.fromkeys(_AXES, 1)
    dcn = dict.fromkeys(_AXES, 1)
    for axis, (inner, outer) in split.items():
        ici[names[axis]] *= inner
        dcn[names[axis]] *= outer
    out = {f"dcn_{a}_parallelism": dcn[a] for a in _AXES}
    out.update({f"ici_{a}_parallelism": ici[a] for a in _AXES})
    return out


def _batch(ctx: ExportContext, module: Module) -> dict[str, object]:
    s, job = ctx.strategy, ctx.job
    steps = microbatches(ctx)
    per_device = job.global_batch / ctx.cluster.devices
    out: dict[str, object] = {
        "per_device_batch_size": int(per_device) if per_device.is_integer() else per_device,
        "max_target_length": job.seq_len,
    }
    if s.pp == 1:
        out["gradient_accumulation_steps"] = steps
        return out
    if steps % s.pp:
        raise refuse(ENGINE, f"{steps} micro-batches with pp={s.pp}", "num_pipeline_microbatches must be a "
                     "multiple of the pipeline stages", f"choose global_batch/(mbs*dp) divisible by {s.pp}")
    stages = virtual_stage_layers(module, s)
    if not is_even(stages):
        raise refuse(ENGINE, f"stage_layers={','.join(map(str, stages))}", "its pipeline stacks the same "
                     "number of layers in every stage", "use an even split")
    out.update(num_pipeline_microbatches=steps, num_layers_per_pipeline_stage=stages[0],
               num_pipeline_repeats=s.vpp, scan_layers=False)
    return out


def _memory(s: Strategy) -> dict[str, object]:
    out: dict[str, object] = {}
    if s.zero in (1, 2):
        out["shard_optimizer_over_data"] = True
    if s.offload == Offload.OPTIMIZER:
        out["optimizer_memory_host_offload"] = True
    return out


def _precision(dtype: str) -> dict[str, object]:
    if dtype == "fp8":
        return {"dtype": "bfloat16", "quantization": "fp8"}
    return {"dtype": "float16" if dtype == "fp16" else "bfloat16"}


def _model(module: Module, s: Strategy) -> dict[str, object]:
    attn = module.layers[0].attention
    ffn, _ = ffn_shape(module)
    out: dict[str, object] = {
        "base_num_decoder_layers": module.num_layers, "base_emb_dim": attn.hidden,
        "base_num_query_heads": attn.heads, "base_num_kv_heads": attn.kv_heads, "head_dim": attn.head_dim,
        "base_mlp_dim": ffn, "vocab_size": module.vocab, "logits_via_embedding": module.tied_embeddings,
    }
    moe = first_moe(module)
    if moe is not None:
        if s.etp != s.tp:
            raise refuse(ENGINE, f"etp={s.etp} with tp={s.tp}", "it shards each expert over the tensor axis",
                         f"use etp={s.tp}")
        dense_first = next(i for i, layer in enumerate(module.layers) if isinstance(layer.ffn, Moe))
        out.update(num_experts=moe.experts, num_experts_per_tok=moe.top_k, base_moe_mlp_dim=moe.expert_ffn,
                   first_num_dense_layers=dense_first)
    return out


EXPORTER = MaxTextExporter()
