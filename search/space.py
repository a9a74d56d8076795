"""The candidate space: device meshes (tp, cp, pp, dp, ep) and, per mesh, the knobs that trade
memory for time (vpp, mbs, ZeRO stage, recompute). Divisibility is enforced here, so every
candidate is a plan the estimator accepts; `--fix` keys pin an axis to one value."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from autoplan.cost_models.check import tp_splits_heads
from autoplan.types import Cluster, Dispatch, Job, Module, Moe, Offload, Recompute, Strategy

VPP_CHOICES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)
MAX_MBS = 32
HELD_SWITCHES = ("tp_comm_overlap", "overlap_grad_reduce", "overlap_param_gather")  # searched never, held if fixed
ZERO_CHOICES = (0, 1, 2, 3)
RECOMPUTE_CHOICES = (Recompute.NONE, Recompute.SELECTIVE, Recompute.FULL)


@dataclass(frozen=True, slots=True)
class Mesh:
    tp: int
    cp: int
    pp: int
    dp: int
    ep: int
    etp: int


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _pick(fixed: dict[str, object], key: str, options: list[int]) -> list[int]:
    """A fixed key is held at its value, even outside the usual options (the user knows best)."""
    return [int(fixed[key])] if key in fixed else options


def tp_options(module: Module, cluster: Cluster) -> list[int]:
    """TP splits heads and stays inside the scale-up domain (its traffic is per layer)."""
    att = module.layers[0].attention
    limit = cluster.tiers[0].span
    return [t for t in _divisors(att.heads) if t <= limit and tp_splits_heads(att, t)]


def cp_options(job: Job) -> list[int]:
    return [c for c in (1, 2, 4, 8, 16, 32) if job.seq_len % (2 * c) == 0 and job.seq_len // c >= 1024 or c == 1]


def ep_options(module: Module, tp: int, dp: int, cp: int) -> list[int]:
    moe = next((layer.ffn for layer in module.layers if isinstance(layer.ffn, Moe)), None)
    if moe is None:
        return [1]
    return [e for e in _divisors(moe.experts) if (tp * dp * cp) % e == 0]


def meshes(module: Module, cluster: Cluster, job: Job, fixed: dict[str, object]) -> Iterator[Mesh]:
    n, layers = cluster.devices, module.num_layers
    tps = _pick(fixed, "tp", tp_options(module, cluster))
    cps = _pick(fixed, "cp", cp_options(job))
    for tp, cp in itertools.product(tps, cps):
        if n % (tp * cp):
            continue
        pps = _pick(fixed, "pp", [p for p in _divisors(n // (tp * cp)) if p <= layers])
        for pp in pps:
            if n % (tp * cp * pp):
                continue
            dp = n // (tp * cp * pp)
            if "dp" in fixed and int(fixed["dp"]) != dp:
                continue
            if job.global_batch % dp:
                continue
            for ep in _pick(fixed, "ep", ep_options(module, tp, dp, cp)):
                etp = int(fixed.get("etp", 1))
                if (tp * dp * cp) % (ep * etp) == 0:
                    yield Mesh(tp, cp, pp, dp, ep, etp)


def knob_options(mesh: Mesh, module: Module, job: Job, fixed: dict[str, object]) -> Iterator[Strategy]:
    """Every (vpp, mbs, zero, dispatch, EP overlap, recompute) for one mesh, lightest recompute
    first; sp and TP comm-overlap whenever tp > 1."""
    for knobs in knob_tuples(mesh, module, job, fixed):
        yield strategy_of(mesh, knobs, fixed)


Knobs = tuple[int, int, int, tuple[Dispatch, bool], tuple[Recompute, Offload]]


def knob_tuples(mesh: Mesh, module: Module, job: Job, fixed: dict[str, object]) -> Iterator[Knobs]:
    per_replica = job.global_batch // mesh.dp
    # interleaving needs equal chunks (Megatron) and micro-batches in groups of pp
    layers, m = module.num_layers, per_replica
    vpps = [v for v in VPP_CHOICES if v == 1 or (mesh.pp > 1 and layers % (mesh.pp * v) == 0)]
    mbss = [b for b in range(1, min(MAX_MBS, m) + 1) if m % b == 0]
    zeros = list(ZERO_CHOICES) if mesh.dp * mesh.cp > 1 else [0]
    for knobs in itertools.product(_pick(fixed, "vpp", vpps), _pick(fixed, "mbs", mbss),
                                   _pick(fixed, "zero", zeros), _ep_modes(mesh, fixed), _recomputes(fixed)):
        vpp, mbs = knobs[0], knobs[1]
        if vpp == 1 or (m // mbs) % mesh.pp == 0:  # interleaving runs micro-batches in groups of pp
            yield knobs


def strategy_of(mesh: Mesh, knobs: Knobs, fixed: dict[str, object]) -> Strategy:
    vpp, mbs, zero, (dispatch, ep_overlap), (recompute, offload) = knobs
    held = {k: bool(fixed[k]) for k in HELD_SWITCHES if k in fixed}
    return Strategy(tp=mesh.tp, pp=mesh.pp, dp=mesh.dp, cp=mesh.cp, ep=mesh.ep, etp=mesh.etp, vpp=vpp, mbs=mbs,
                    sp=bool(fixed.get("sp", mesh.tp > 1)), zero=zero, recompute=recompute, offload=offload,
                    dispatch=dispatch, ep_overlap=ep_overlap,
                    **{"tp_comm_overlap": mesh.tp > 1, **held})


def _ep_modes(mesh: Mesh, fixed: dict[str, object]) -> list[tuple[Dispatch, bool]]:
    """Token dispatch and EP overlap are choices only when there is expert parallelism; overlap
    costs a micro-batch of activations, so the plain mode comes first."""
    if mesh.ep * mesh.etp <= 1:
        return [(Dispatch.ALL_TO_ALL, False)]
    # hierarchical dispatch never moves more bytes than a flat all-to-all, so it is the default choice
    dispatches = [Dispatch(fixed["dispatch"])] if "dispatch" in fixed else [Dispatch.HIERARCHICAL]
    overlaps = [bool(fixed["ep_overlap"])] if "ep_overlap" in fixed else [False, True]
    return [(d, o) for o in overlaps for d in dispatches]


def _recomputes(fixed: dict[str, object]) -> list[tuple[Recompute, Offload]]:
    """The memory ladder, lightest first: recompute more, then move the optimizer to the host
    (ZeRO-Offload) only where even full recompute does not fit."""
    policies = [Recompute(fixed["recompute"])] if "recompute" in fixed else list(RECOMPUTE_CHOICES)
    ladder = [(p, Offload.NONE) for p in policies]
    if "offload" in fixed:
        return [(p, Offload(fixed["offload"])) for p in policies]
    return ladder + [(policies[-1], Offload.OPTIMIZER)]
