"""torchtitan job-config TOML fragment: `[parallelism]`, `[activation_checkpoint]`, `[training]`.

torchtitan's data parallelism is FSDP2 over `data_parallel_shard_degree` and plain replication over
`data_parallel_replicate_degree`; any ZeRO stage >= 1 becomes sharding, and the stage picks when
FSDP frees the gathered parameters (`fsdp_reshard_after_forward`).
"""

from __future__ import annotations

from autoplan.export import (
    ExportContext,
    first_moe,
    microbatches,
    refuse,
    single_module,
    uniform_recompute,
    virtual_stage_layers,
)
from autoplan.types import Module, Offload, Recompute, Strategy

ENGINE = "torchtitan"


class TorchtitanExporter:
    name = "torchtitan"
    suffix = ".toml"

    def render(self, ctx: ExportContext) -> str:
        module, s = single_module(ctx, ENGINE)
        _check(module, s)
        sections = {
            "parallelism": _parallelism(module, s),
            "activation_checkpoint": _checkpointing(s),
            "training": _training(ctx),
        }
        if ctx.job.dtype == "fp8":
            sections["model"] = {"converters": ["float8"]}
        return "\n".join(_section(name, table) for name, table in sections.items())


def _check(module: Module, s: Strategy) -> None:
    if s.offload == Offload.OPTIMIZER and s.zero == 0:
        raise refuse(ENGINE, "offload=optimizer with zero=0", "CPU offload is an FSDP policy",
                     "use zero>=1")
    # torchtitan borrows expert-parallel ranks from data_parallel_shard_degree * context_parallel_degree
    if first_moe(module) is not None and s.ep > 1 and s.zero == 0 and s.cp % s.ep:
        raise refuse(ENGINE, f"ep={s.ep} with zero=0", "expert parallelism is carved out of the FSDP "
                     "shard dimension, which is 1 when dp only replicates", "use zero>=1")


def _parallelism(module: Module, s: Strategy) -> dict[str, object]:
    shard = s.zero >= 1
    table: dict[str, object] = {
        "data_parallel_replicate_degree": 1 if shard else s.dp,
        "data_parallel_shard_degree": s.dp if shard else 1,
        "fsdp_reshard_after_forward": "always" if s.zero == 3 else "never",
        "tensor_parallel_degree": s.tp,
        "enable_async_tensor_parallel": s.tp_comm_overlap and s.tp > 1,
        "context_parallel_degree": s.cp,
        "pipeline_parallel_degree": s.pp,
    }
    if s.pp > 1:
        # schedule names of torch.distributed.pipelining
        table["pipeline_parallel_schedule"] = "Interleaved1F1B" if s.vpp > 1 else "1F1B"
        table["pipeline_parallel_microbatch_size"] = s.mbs
        table["pipeline_parallel_split_points"] = _split_points(module, s)
    if first_moe(module) is not None:
        table["expert_parallel_degree"] = s.ep
        table["expert_tensor_parallel_degree"] = s.etp
    return table


def _split_points(module: Module, s: Strategy) -> list[str]:
    """Names of the first layer of every virtual stage but the first (torchtitan's `layers.N`)."""
    starts, at = [], 0
    for count in virtual_stage_layers(module, s)[:-1]:
        at += count
        starts.append(f"layers.{at}")
    return starts


def _checkpointing(s: Strategy) -> dict[str, object]:
    mode = uniform_recompute(s, ENGINE)
    table: dict[str, object] = {"mode": mode.value}
    if mode == Recompute.SELECTIVE:
        # op-level selective AC keeps matmul outputs and recomputes the attention core around them
        table["selective_ac_option"] = "op"
    return table


def _training(ctx: ExportContext) -> dict[str, object]:
    s, job = ctx.strategy, ctx.job
    steps = microbatches(ctx)
    # with pp every micro-batch runs inside one pipelined step; without it torchtitan accumulates
    local = s.mbs * steps if s.pp > 1 else s.mbs
    table: dict[str, object] = {
        "local_batch_size": local,
        "global_batch_size": job.global_batch,
        "seq_len": job.seq_len,
        "mixed_precision_param": "float16" if job.dtype == "fp16" else "bfloat16",
    }
    if s.offload == Offload.OPTIMIZER:
        table["enable_cpu_offload"] = True
    return table


def _section(name: str, table: dict[str, object]) -> str:
    lines = [f"[{name}]"] + [f"{key} = {_toml_value(v)}" for key, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


EXPORTER = TorchtitanExporter()
