"""The planner: screen every mesh, sweep the memory/time knobs of the best ones, re-split the
pipeline stages with CP-SAT, and choose where the mesh axes sit on the fabric.

Every score is `cost_models.estimate` — the same estimator a user calls; the planner has no
formulas of its own. Same inputs, same plan: candidates are visited in a fixed order and ties
break on `_tie_key` (fewer, smaller model-parallel degrees first).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from autoplan.cost_models.check import check_strategy, expert_counts, tp_splits_heads
from autoplan.cost_models.estimate import estimate, stage_table
from autoplan.cost_models.layout import chunk_layers
from autoplan.errors import AutoplanError, ConfigError, InfeasiblePlanError
from autoplan.search.placement import placements
from autoplan.search.space import Knobs, Mesh, knob_tuples, meshes, strategy_of
from autoplan.search.stages import SolverConfig, StageProblem, solve_stages
from autoplan.types import (
    Cluster,
    Dispatch,
    Estimate,
    Job,
    ModelGraph,
    Module,
    Offload,
    Placement,
    Plan,
    Recompute,
    Strategy,
)

RECOMPUTE_ORDER = {Recompute.NONE: 0, Recompute.SELECTIVE: 1, Recompute.FULL: 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchConfig:
    """Every knob of the search in one place."""

    screen_top_meshes: int = 12  # meshes whose full knob space is swept after screening
    refine_top: int = 3  # plans whose stages CP-SAT re-splits and whose placement is re-chosen
    keep: int = 10  # ranked alternatives kept
    # stage re-split budget per plan; interleaved (vpp > 1) pipelines keep Megatron's even chunks
    solver: SolverConfig = field(default_factory=lambda: SolverConfig(deterministic_time_limit=0.5, time_limit_s=2.0))


@dataclass(frozen=True, slots=True)
class Scored:
    plan: Plan
    estimate: Estimate

    @property
    def key(self) -> tuple:
        return (round(self.estimate.step_time_s, 9), _tie_key(self.plan.main))


@dataclass(frozen=True, slots=True)
class PlanResult:
    best: Scored
    ranked: tuple[Scored, ...]  # best first, fitting plans only
    candidates: int  # estimates made
    search_time_s: float


def _tie_key(s: Strategy) -> tuple:
    return (s.tp * s.pp * s.cp, s.pp, s.tp, s.cp, s.ep, s.vpp, -s.mbs, s.zero, RECOMPUTE_ORDER[s.recompute],
            s.stage_layers, tuple(RECOMPUTE_ORDER[r] for r in s.stage_recompute))


class _Scorer:
    def __init__(self, model: ModelGraph, cluster: Cluster, job: Job, naive: bool = False) -> None:
        self.model, self.cluster, self.job = model, cluster, job
        self.naive = naive
        self.count = 0
        self.cache: dict = {}  # per-layer estimator terms shared across this search's candidates

    def __call__(self, s: Strategy, placement: Placement = Placement()) -> Scored | None:
        placement = Placement(naive=True) if self.naive else placement
        plan = Plan.single(s, module=self.model.modules[0].name, placement=placement)
        try:
            check_strategy(self.model.modules[0], self.job, s)
        except AutoplanError:
            return None
        self.count += 1
        return Scored(plan, estimate(self.model, self.cluster, self.job, plan, self.cache))


def _best_fitting(scored: list[Scored | None]) -> Scored | None:
    fits = [x for x in scored if x is not None and x.estimate.fits]
    return min(fits, key=lambda x: x.key) if fits else None


def _leanest(mesh: Mesh, fixed: dict[str, object]) -> Strategy:
    """The mesh's least memory-hungry knobs: if this does not fit, nothing on the mesh does
    (more ZeRO, more recompute, offload, smaller micro-batches and no interleaving only shrink memory)."""
    ep_mode = (Dispatch(fixed.get("dispatch", Dispatch.HIERARCHICAL)), bool(fixed.get("ep_overlap", False)))
    memory_mode = (Recompute(fixed.get("recompute", Recompute.FULL)), Offload(fixed.get("offload", Offload.OPTIMIZER)))
    knobs: Knobs = (int(fixed.get("vpp", 1)), int(fixed.get("mbs", 1)), int(fixed.get("zero", 3)), ep_mode, memory_mode)
    return strategy_of(mesh, knobs, fixed)


def _screen(mesh: Mesh, module: Module, job: Job, fixed: dict[str, object], score: _Scorer) -> Scored | None:
    """A mesh's promise: its best plan over a few memory modes at the finest micro-batch, after a
    memory lower bound (the leanest knobs, scored by the estimator) rules hopeless meshes out."""
    lean = score(_leanest(mesh, fixed))
    if lean is None or not lean.estimate.fits:
        return None
    best, settled = None, set()
    for knobs in knob_tuples(mesh, module, job, fixed):
        vpp, mbs, zero = knobs[:3]
        if (mbs != 1 and "mbs" not in fixed) or (vpp not in (1, 2, 4) and "vpp" not in fixed):
            continue
        if zero in (0, 2) and "zero" not in fixed and mesh.dp * mesh.cp > 1:
            continue
        if knobs[:4] in settled:
            continue
        cand = score(strategy_of(mesh, knobs, fixed))
        if cand is not None and cand.estimate.fits:
            settled.add(knobs[:4])
            if best is None or cand.key < best.key:
                best = cand
    return best


def search(model: ModelGraph, cluster: Cluster, job: Job, fixed: dict[str, object] | None = None,
           config: SearchConfig = SearchConfig(), progress: Callable[[str], None] | None = None,
           naive_placement: bool = False) -> PlanResult:
    """The fastest plan that fits, by the estimator, and the runners-up. `naive_placement`
    scores every plan with ranks in plain order (for comparison with topology-aware placement)."""
    if len(model.modules) != 1:
        raise InfeasiblePlanError(f"model {model.name!r} has {len(model.modules)} modules; "
                                  "per-module planning is not supported yet: plan each module separately")
    started, fixed = time.perf_counter(), dict(fixed or {})
    module, score = model.modules[0], _Scorer(model, cluster, job, naive_placement)
    check_fixed(module, cluster, job, fixed)
    screened = [x for mesh in meshes(module, cluster, job, fixed)
                if (x := _screen(mesh, module, job, fixed, score)) is not None]
    _say(progress, f"screened {len(screened)} meshes with {score.count} estimates")
    if not screened:
        raise InfeasiblePlanError(_nothing_fits(model, cluster, job, fixed))
    screened.sort(key=lambda x: x.key)
    pool: list[Scored] = []
    for top in screened[: config.screen_top_meshes]:
        s = top.plan.main
        pool.extend(_sweep(Mesh(s.tp, s.cp, s.pp, s.dp, s.ep, s.etp), module, job, fixed, score))
    _say(progress, f"swept knobs of {min(len(screened), config.screen_top_meshes)} meshes: {score.count} estimates")
    pool = _dedupe(sorted(pool, key=lambda x: x.key))
    refined = [r for i, x in enumerate(pool[: config.refine_top])
               for r in _refine(x, module, cluster, job, score, config, split=i == 0)]
    ranked = _dedupe(sorted(pool + refined, key=lambda x: x.key))[: config.keep]
    return PlanResult(ranked[0], tuple(ranked), score.count, time.perf_counter() - started)


def _sweep(mesh: Mesh, module: Module, job: Job, fixed: dict[str, object], score: _Scorer) -> list[Scored]:
    """All knobs of one mesh. Recompute only adds time, so once a policy fits, the heavier
    policies with the same other knobs are skipped (options come lightest first)."""
    out, settled = [], set()
    for knobs in knob_tuples(mesh, module, job, fixed):
        if knobs[:4] in settled:
            continue
        cand = score(strategy_of(mesh, knobs, fixed))
        if cand is not None and cand.estimate.fits:
            out.append(cand)
            settled.add(knobs[:4])
    return out


def _dedupe(items: list[Scored]) -> list[Scored]:
    seen, out = set(), []
    for x in items:
        if x.plan not in seen:
            seen.add(x.plan)
            out.append(x)
    return out


def _refine(x: Scored, module: Module, cluster: Cluster, job: Job, score: _Scorer,
            config: SearchConfig, split: bool) -> list[Scored]:
    """CP-SAT stage split with per-stage recompute (for the leading plan), then each placement."""
    out = [x]
    s = x.plan.main
    if split and s.pp > 1 and s.vpp == 1:
        split = _stage_split(s, x.plan, module, cluster, job, config)
        if split is not None and (cand := score(split)) is not None and cand.estimate.fits:
            out.append(cand)
    best = min(out, key=lambda c: c.key)
    for placement in placements(best.plan.main, cluster):
        cand = score(best.plan.main, placement) if placement != best.plan.placement else None
        if cand is not None and cand.estimate.fits:
            out.append(cand)
    return out


def _stage_split(s: Strategy, plan: Plan, module: Module, cluster: Cluster, job: Job,
                 config: SearchConfig) -> Strategy | None:
    policies = (Recompute.NONE, Recompute.SELECTIVE, Recompute.FULL)
    t = stage_table(module, cluster, job, s, plan, policies)
    problem = StageProblem(
        ranks=s.pp, chunks_per_rank=s.vpp, policies=policies, layer_time_s=t.layer_time_s,
        layer_act_bytes=t.layer_act_bytes, layer_static_bytes=t.layer_static_bytes,
        rank_extra_time_s=t.rank_extra_time_s, rank_extra_bytes=t.rank_extra_bytes, in_flight=t.in_flight,
        capacity_bytes=t.capacity_bytes,
    )
    try:
        sol = solve_stages(problem, config.solver)
    except InfeasiblePlanError:
        return None
    uniform = len(set(sol.rank_recompute)) == 1
    even = tuple(sol.chunk_layers) == chunk_layers(module.num_layers, s)
    return replace(s, stage_layers=() if even else tuple(sol.chunk_layers),
                   recompute=sol.rank_recompute[0] if uniform else s.recompute,
                   stage_recompute=() if uniform else tuple(sol.rank_recompute))


def check_fixed(module: Module, cluster: Cluster, job: Job, fixed: dict[str, object]) -> None:
    """Fixed keys that no plan can honour are named before the search, not reported as 'nothing fits'."""
    att, n = module.layers[0].attention, cluster.devices
    degrees = {k: int(fixed[k]) for k in ("tp", "pp", "dp", "cp") if k in fixed}  # type: ignore[call-overload]
    tp = degrees.get("tp", 1)
    if not tp_splits_heads(att, tp):
        raise ConfigError(f"fixed tp={tp} must divide num_heads={att.heads} and num_kv_heads={att.kv_heads}")
    product = math.prod(degrees.values())
    if n % product:
        named = "*".join(f"{k}={v}" for k, v in degrees.items())
        raise ConfigError(f"fixed {named}{f' = {product}' if len(degrees) > 1 else ''} does not divide the {n} "
                          "devices; change --fix or --devices")
    if degrees.get("pp", 1) > module.num_layers:
        raise ConfigError(f"fixed pp={degrees['pp']} exceeds the {module.num_layers} layers")
    if degrees.get("cp", 1) > 1 and job.seq_len % (2 * degrees["cp"]):
        raise ConfigError(f"fixed cp={degrees['cp']} needs seq_len={job.seq_len} to be a multiple of 2*cp")
    experts = expert_counts(module)
    ep = int(fixed.get("ep", 1))  # type: ignore[call-overload]
    if ep > 1 and (not experts or any(e % ep for e in experts)):
        raise ConfigError(f"fixed ep={ep} needs an MoE model whose expert count it divides; "
                          f"{module.name!r} has {sorted(experts) or 'no experts'}")
    if fixed.get("sp") and tp == 1 and "tp" in fixed:
        raise ConfigError("fixed sp=1 needs tp > 1; fix tp as well or drop sp")
    if "mbs" in fixed and job.global_batch % int(fixed["mbs"]):  # type: ignore[call-overload]
        raise ConfigError(f"fixed mbs={fixed['mbs']} must divide global_batch={job.global_batch}")


def _nothing_fits(model: ModelGraph, cluster: Cluster, job: Job, fixed: dict[str, object]) -> str:
    pinned = f" with {','.join(f'{k}={v}' for k, v in fixed.items())} held fixed" if fixed else ""
    return (f"no plan fits {model.name} ({model.params / 1e9:.0f}B params) on {cluster.devices} x "
            f"{cluster.accelerator.name}{pinned} at global batch {job.global_batch} x {job.seq_len}; "
            "add devices, use an accelerator with more memory, shorten --seq-len, or free a --fix key")


def _say(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)
