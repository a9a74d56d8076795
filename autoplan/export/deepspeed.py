"""DeepSpeed config JSON (`ds_config.json`): batch sizes, precision, ZeRO, pipeline, checkpointing.

The JSON holds what DeepSpeed's engine reads. Tensor and expert parallelism live in model code
(Megatron-DeepSpeed, `deepspeed.moe.layer.MoE(ep_size=...)`), so plans that need them are refused
with the export to use instead.
"""

from __future__ import annotations

import json

from autoplan.export import (
    ExportContext,
    first_moe,
    is_even,
    microbatches,
    refuse,
    single_module,
    uniform_recompute,
    virtual_stage_layers,
)
from autoplan.types import Module, Offload, Recompute, Strategy

ENGINE = "deepspeed"


class DeepSpeedExporter:
    name = "deepspeed"
    suffix = ".json"

    def render(self, ctx: ExportContext) -> str:
        module, s = single_module(ctx, ENGINE)
        _check_parallelism(module, s)
        recompute = _check_recompute(s)
        config: dict[str, object] = {
            "train_batch_size": ctx.job.global_batch,
            "train_micro_batch_size_per_gpu": s.mbs,
            "gradient_accumulation_steps": microbatches(ctx),
            **_precision(ctx.job.dtype),
            "zero_optimization": _zero(s),
        }
        if s.cp > 1:
            config["sequence_parallel_size"] = s.cp
        if s.pp > 1:
            config["pipeline"] = _pipeline(module, s, recompute)
        if recompute == Recompute.FULL:
            config["activation_checkpointing"] = {
                "partition_activations": False,
                "contiguous_memory_optimization": False,
                "cpu_checkpointing": False,
                "synchronize_checkpoint_boundary": False,
            }
        return json.dumps(config, indent=2) + "\n"


def _check_parallelism(module: Module, s: Strategy) -> None:
    if s.tp > 1:
        raise refuse(ENGINE, f"tp={s.tp}", "tensor parallelism is not a DeepSpeed-JSON knob",
                     "use the megatron export (Megatron-DeepSpeed) for tp>1")
    if first_moe(module) is not None and s.ep > 1:
        raise refuse(ENGINE, f"ep={s.ep}", "expert parallelism is set in model code, MoE(ep_size=...)",
                     "use the megatron or torchtitan export for ep>1")
    if s.pp > 1 and s.zero >= 2:
        raise refuse(ENGINE, f"zero={s.zero} with pp={s.pp}", "ZeRO-2/3 are incompatible with pipeline "
                     "parallelism", "use zero<=1 or pp=1")
    if s.vpp > 1:
        raise refuse(ENGINE, f"vpp={s.vpp}", "its pipeline engine has no interleaved schedule",
                     "use vpp=1 or the megatron/torchtitan export")
    heads = module.layers[0].attention.heads
    if s.cp > 1 and heads % s.cp:
        raise refuse(ENGINE, f"cp={s.cp} with {heads} heads", "its Ulysses sequence parallelism splits "
                     "attention heads", f"choose cp dividing {heads}")
    if s.offload == Offload.OPTIMIZER and s.zero == 0:
        raise refuse(ENGINE, "offload=optimizer with zero=0", "ZeRO-Offload needs a ZeRO stage",
                     "use zero>=1")


def _check_recompute(s: Strategy) -> Recompute:
    recompute = uniform_recompute(s, ENGINE)
    if recompute == Recompute.SELECTIVE:
        raise refuse(ENGINE, "recompute=selective", "its JSON checkpoints whole layers; what to recompute "
                     "inside a layer is chosen in model code", "use recompute=full or the megatron export")
    return recompute


def _precision(dtype: str) -> dict[str, object]:
    if dtype == "fp8":
        raise refuse(ENGINE, "dtype=fp8", "FP8 comes from Transformer Engine in model code, not the JSON",
                     "use dtype=bf16 or the megatron export")
    return {"bf16": {"enabled": dtype == "bf16"}, "fp16": {"enabled": dtype == "fp16"}}


def _zero(s: Strategy) -> dict[str, object]:
    table: dict[str, object] = {
        "stage": s.zero,
        "overlap_comm": s.overlap_grad_reduce,
        "contiguous_gradients": True,
    }
    if s.offload == Offload.OPTIMIZER:
        table["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    return table


def _pipeline(module: Module, s: Strategy, recompute: Recompute) -> dict[str, object]:
    if not is_even(virtual_stage_layers(module, s)):
        raise refuse(ENGINE, f"stage_layers={','.join(map(str, s.stage_layers))}", "PipelineModule "
                     "partitions layers by a method, not a list", "use an even split")
    return {
        "stages": s.pp,
        "partition": "uniform",
        "activation_checkpoint_interval": 1 if recompute == Recompute.FULL else 0,
        "pipe_partitioned": True,
        "grad_partitioned": True,
    }


EXPORTER = DeepSpeedExporter()
