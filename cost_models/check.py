"""A solver-independent check of a plan against its model, cluster and job: degrees multiply to
the device count and every split divides what it splits. Errors name the value and the fix."""

from __future__ import annotations

from autoplan.errors import ConfigError
from autoplan.types import Attention, Cluster, Job, ModelGraph, Module, Moe, Plan, Strategy


def microbatches(job: Job, s: Strategy) -> int:
    """Micro-batches per pipeline per step: global batch over data-parallel replicas and mbs."""
    per_replica, rest = divmod(job.global_batch, s.dp * s.mbs)
    if rest or per_replica < 1:
        raise ConfigError(
            f"global_batch={job.global_batch} must be a multiple of dp*mbs={s.dp}*{s.mbs}={s.dp * s.mbs}; "
            "change --global-batch, dp or mbs"
        )
    return per_replica


def tp_splits_heads(att: Attention, tp: int) -> bool:
    """TP splits query heads evenly, and KV heads either evenly or by replication (GQA)."""
    return att.heads % tp == 0 and (att.kv_heads % tp == 0 or tp % att.kv_heads == 0)


def expert_counts(module: Module) -> set[int]:
    return {layer.ffn.experts for layer in module.layers if isinstance(layer.ffn, Moe)}


def check_strategy(module: Module, job: Job, s: Strategy) -> None:
    att = module.layers[0].attention
    if att.heads % s.tp:
        raise ConfigError(f"tp={s.tp} must divide num_heads={att.heads}; pick tp from {_divisors(att.heads)}")
    if not tp_splits_heads(att, s.tp):
        raise ConfigError(f"tp={s.tp} and num_kv_heads={att.kv_heads} must divide one another")
    chunks = s.pp * s.vpp
    if chunks > module.num_layers:
        raise ConfigError(f"pp*vpp={chunks} exceeds the {module.num_layers} layers of {module.name!r}")
    if s.stage_layers and sum(s.stage_layers) != module.num_layers:
        raise ConfigError(f"stage_layers sum to {sum(s.stage_layers)}, not num_layers={module.num_layers}")
    if job.seq_len % (2 * s.cp if s.cp > 1 else 1):
        raise ConfigError(f"seq_len={job.seq_len} must be a multiple of 2*cp={2 * s.cp} (load-balanced CP)")
    if s.sp and s.tp == 1:
        raise ConfigError("sp=1 (sequence parallelism) needs tp > 1; set sp=0 or raise tp")
    experts = expert_counts(module)
    for n in sorted(experts):
        if n % s.ep:
            raise ConfigError(f"ep={s.ep} must divide the {n} experts; pick ep from {_divisors(n)}")
    if s.ep > 1 and not experts:
        raise ConfigError(f"ep={s.ep} needs an MoE model; {module.name!r} has no experts (set ep=1)")
    microbatches(job, s)


def check_plan(model: ModelGraph, cluster: Cluster, job: Job, plan: Plan) -> None:
    if plan.devices != cluster.devices:
        s = plan.main
        raise ConfigError(
            f"tp*pp*dp*cp = {s.tp}*{s.pp}*{s.dp}*{s.cp} = {plan.devices} but the cluster has {cluster.devices} "
            "devices; change the degrees or --devices"
        )
    for module in model.modules:
        check_strategy(module, job, plan.strategy(module.name))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0 and d <= 64]
