"""Judging a sharded step: tensor-by-tensor against the reference, and XLA's costs against ours."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from autoplan.errors import AutoplanError
from autoplan.types import (
    Accelerator,
    Cluster,
    FabricTier,
    Job,
    Optimizer,
    Plan,
    Recompute,
    Strategy,
    value,
)
from autoplan.verify.reduced import Params, ReducedConfig, layer_shapes, reduced_graph

REL_TOLERANCE = 1e-4
REL_EPS = 1e-12  # guards all-zero tensors; any real tensor here is far larger
FP32_BYTES = 4
NO_XLA_COUNTERPART = frozenset({"reserved"})  # runtime/allocator reserve: not in XLA's buffer sizes


@value
class Comparison:
    passed: bool
    max_abs_err: float
    max_rel_err: float
    first_diverging: str | None
    tensors: int
    worst: str

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "max_abs_err": self.max_abs_err, "max_rel_err": self.max_rel_err,
                "first_diverging": self.first_diverging, "tensors": self.tensors, "worst_tensor": self.worst}


def named_tensors(loss: Any, grads: Params, params: Params, cfg: ReducedConfig) -> Iterator[tuple[str, Any]]:
    """Loss, then gradients, then updated parameters, each in model order, layers one by one."""
    yield "loss", loss
    for kind, tree in (("grad", grads), ("param", params)):
        yield f"{kind}/embed", tree["embed"]
        for i in range(cfg.layers):
            for name in layer_shapes(cfg):
                yield f"{kind}/layers/{i}/{name}", tree["layers"][name][i]
        yield f"{kind}/final_norm", tree["final_norm"]
        yield f"{kind}/head", tree["head"]


def relative_error(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max |got - ref|, that over max |ref|): one scale per tensor, robust to zeros in ref."""
    if got.shape != ref.shape:
        return math.inf, math.inf
    abs_err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    return abs_err, abs_err / (float(np.max(np.abs(ref))) + REL_EPS)


def compare(reference: tuple, sharded: tuple, cfg: ReducedConfig, tol: float = REL_TOLERANCE) -> Comparison:
    """Compare (loss, grads, params) tuples; the first tensor over `tol`, in fixed order, is named."""
    max_abs, max_rel, first, worst, count = 0.0, 0.0, None, "loss", 0
    ref_iter = named_tensors(*reference, cfg)
    for (name, ref), (_, got) in zip(ref_iter, named_tensors(*sharded, cfg), strict=True):
        abs_err, rel_err = relative_error(np.asarray(got), np.asarray(ref))
        count += 1
        max_abs = max(max_abs, abs_err)
        if not rel_err <= max_rel:
            max_rel, worst = rel_err, name
        if first is None and not rel_err <= tol:
            first = name
    return Comparison(passed=first is None, max_abs_err=max_abs, max_rel_err=max_rel,
                      first_diverging=first, tensors=count, worst=worst)


# ---------------------------------------------------------------------------------------------
# XLA's view of the compiled step against autoplan's
# ---------------------------------------------------------------------------------------------


def xla_costs(compiled: Any) -> dict[str, float]:
    """Per-device FLOPs and bytes of the compiled SPMD step (one device's program)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    mem = compiled.memory_analysis()
    total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    return {"flops": float(cost.get("flops", 0.0)), "memory_bytes": float(total - mem.alias_size_in_bytes)}


def analytical_costs(cfg: ReducedConfig, s: Strategy) -> dict[str, float]:
    """Per-device FLOPs and bytes of the reduced model, from first principles.

    FLOPs: 6 x matmul params x tokens (Kaplan et al. 2020, Eq. 2.1) plus 12 x layers x seq x
    q-width per token for attention (PaLM, Chowdhery et al. 2022, App. B), and a forward again for
    recompute. Memory: fp32 weights, gradients and updated weights, plus the layer inputs kept for
    backward.
    """
    graph = reduced_graph(cfg).modules[0]
    layer = graph.layers[0]
    active = layer.active_params if cfg.is_moe else layer.params
    matmul = cfg.layers * active + graph.head_matmul_params
    tokens = cfg.batch * cfg.seq
    attn = 12 * cfg.layers * cfg.seq * cfg.heads * cfg.head_dim * tokens
    recompute = {Recompute.NONE: 0.0, Recompute.SELECTIVE: 0.0, Recompute.FULL: 1 / 3}[s.recompute]
    flops = (6 * matmul * tokens + attn) * (1 + recompute) / s.devices
    weights = (graph.params - graph.embedding_params - graph.head_params) / (s.tp * s.pp)
    weights += graph.embedding_params + graph.head_params
    acts = cfg.layers / s.pp * (tokens / (s.dp * s.cp)) * cfg.hidden * 16
    return {"flops": flops, "memory_bytes": FP32_BYTES * (3 * weights + acts)}


def _verify_cluster(devices: int) -> Cluster:
    """A stand-in cluster of host CPUs: the estimator needs one; only FLOPs and bytes are compared."""
    cpu = Accelerator(name="host-cpu", vendor="virtual", generation="hopper", peak_flops_per_s={"bf16": 1e12},
                      hbm_bytes=2**36, hbm_bytes_per_s=1e11, scale_up_bytes_per_s=1e10,
                      scale_up_domain=devices, devices_per_node=devices, nic_bytes_per_s=1e10,
                      sources=("autoplan.verify: placeholder for XLA host devices",))
    tier = FabricTier(name="host", span=devices, bytes_per_s=1e10, latency_s=1e-6)
    return Cluster(name="verify-host", accelerator=cpu, devices=devices, tiers=(tier,))


def estimator_crosscheck(cfg: ReducedConfig, s: Strategy) -> dict[str, float] | str:
    """Per-device FLOPs and bytes of the reduced model from `autoplan.api.estimate`, or why the
    estimator could not score it (not importable yet, or it rejected the reduced model)."""
    try:
        from autoplan.api import estimate
    except ImportError as e:
        return f"autoplan.api not importable: {e}"
    job = Job(global_batch=cfg.batch, seq_len=cfg.seq, optimizer=Optimizer.SGD)
    try:
        est = estimate(model=reduced_graph(cfg), cluster=_verify_cluster(s.devices), plan=Plan.single(s), job=job)
    except AutoplanError as e:
        return f"estimator rejected the reduced model: {e}"
    return {"flops": est.hardware_flops_per_step / est.devices,
            "memory_bytes": float(sum(b for k, b in est.memory_breakdown.items() if k not in NO_XLA_COUNTERPART))}


def crosscheck(compiled: Any, cfg: ReducedConfig, s: Strategy) -> dict[str, Any]:
    """XLA over autoplan, for FLOPs and memory per device (`xla_crosscheck` in verify's output)."""
    xla = xla_costs(compiled)
    ours = estimator_crosscheck(cfg, s)
    source = "autoplan.api.estimate"
    if isinstance(ours, str):
        ours, source = analytical_costs(cfg, s), f"analytical ({ours})"
    ratio = lambda k: xla[k] / ours[k] if ours[k] else math.nan  # noqa: E731
    # the verification pipeline runs m + pp - 1 steps per chunk (GPipe order, idle steps on zeros);
    # dividing that out leaves the gap that is the estimator's own
    schedule = (cfg.micro_batches + s.pp - 1) / cfg.micro_batches if s.pp > 1 else 1.0
    return {"flops_ratio": ratio("flops"), "memory_ratio": ratio("memory_bytes"), "against": source,
            "schedule_factor": schedule, "flops_ratio_per_useful_step": ratio("flops") / schedule,
            "xla_flops_per_device": xla["flops"], "xla_memory_bytes_per_device": xla["memory_bytes"],
            "autoplan_flops_per_device": ours["flops"], "autoplan_memory_bytes_per_device": ours["memory_bytes"]}
