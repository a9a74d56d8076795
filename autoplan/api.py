"""The public API and the one place that wires frontends, cost models and search together.

Every function takes the same inputs as the CLI — names/paths or ready objects — and returns
typed values. Nothing heavy is imported until a function is called.
"""

from __future__ import annotations

from autoplan.errors import ConfigError
from autoplan.types import Cluster, Estimate, Job, ModelGraph, Plan

DEFAULT_SEQ_LEN = 4096
DEFAULT_TOKENS_PER_DEVICE_STEP = 16 * 4096  # default global batch: 16 sequences of 4k per device


def load_model(model: str | ModelGraph) -> ModelGraph:
    if isinstance(model, ModelGraph):
        return model
    if not model.strip():
        raise ConfigError("--model is empty; pass a preset name (autoplan catalog models) or a config.json path")
    from autoplan.frontends import load_model as _load

    return _load(model)


def load_cluster(cluster: str | Cluster, devices: int | None = None) -> Cluster:
    if isinstance(cluster, Cluster):
        if devices not in (None, cluster.devices):
            raise ConfigError(f"devices={devices} conflicts with the cluster object's {cluster.devices}")
        return cluster
    if not cluster.strip():
        raise ConfigError("--cluster is empty; pass an accelerator (autoplan catalog accelerators) or a cluster file")
    from autoplan.cost_models.catalog import load_cluster as _load

    return _load(cluster, devices)


def is_accelerator(cluster: str | Cluster) -> bool:
    """Whether a CLUSTER argument names a bare accelerator (which takes its device count from the plan)."""
    if isinstance(cluster, Cluster):
        return False
    from autoplan.cost_models.catalog import accelerator

    try:
        accelerator(cluster)
    except ConfigError:
        return False
    return True


def make_job(cluster: Cluster, seq_len: int | None = None, global_batch: int | None = None, **kw: object) -> Job:
    """A job with defaults a user can rely on: 4k sequences, ~64k tokens per device per step."""
    seq = DEFAULT_SEQ_LEN if seq_len is None else seq_len
    if global_batch is None:
        global_batch = max(1, cluster.devices * DEFAULT_TOKENS_PER_DEVICE_STEP // max(seq, 1))
    return Job(global_batch=global_batch, seq_len=seq, **kw)  # type: ignore[arg-type]


def load_plan(plan: str | Plan) -> Plan:
    if isinstance(plan, Plan):
        return plan
    from autoplan.plan_io import parse_plan

    return parse_plan(plan)


def estimate(
    model: str | ModelGraph,
    cluster: str | Cluster,
    plan: str | Plan,
    job: Job | None = None,
    *,
    devices: int | None = None,
    seq_len: int | None = None,
    global_batch: int | None = None,
) -> Estimate:
    """Predicted step time, memory and MFU of `plan` (a Plan or a 'tp=8,pp=2,...' string)."""
    from autoplan.cost_models.estimate import estimate as _estimate

    m, p = load_model(model), load_plan(plan)
    c = load_cluster(cluster, devices if devices is not None else _plan_devices(cluster, p))
    j = job or make_job(c, seq_len, global_batch)
    return _estimate(m, c, j, p)


def _plan_devices(cluster: str | Cluster, plan: Plan) -> int | None:
    """A named accelerator without --devices takes the plan's device count."""
    return plan.devices if is_accelerator(cluster) else None


def plan(
    model: str | ModelGraph,
    cluster: str | Cluster,
    job: Job | None = None,
    *,
    devices: int | None = None,
    seq_len: int | None = None,
    global_batch: int | None = None,
    fix: str | dict[str, object] | None = None,
    progress: object = None,
    naive_placement: bool = False,
):
    """The fastest plan that fits, with ranked alternatives (`search.planner.PlanResult`).

    `fix` holds keys fixed, as a 'tp=8,pp=2' string or a dict; the rest are searched.
    """
    from autoplan.plan_io import parse_plan_keys
    from autoplan.search.planner import search

    m = load_model(model)
    c = load_cluster(cluster, devices)
    j = job or make_job(c, seq_len, global_batch)
    fixed = parse_plan_keys(fix) if isinstance(fix, str) else dict(fix or {})
    return search(m, c, j, fixed, progress=progress, naive_placement=naive_placement)  # type: ignore[arg-type]


def estimate_record(record: object) -> Estimate:
    """Re-derive a saved plan's estimate from its inputs with the current estimator."""
    from autoplan.cost_models.estimate import estimate as _estimate
    from autoplan.plan_io import PlanRecord

    assert isinstance(record, PlanRecord)
    c = load_cluster(record.cluster, record.devices)
    return _estimate(load_model(record.model), c, record.job, record.plan)
