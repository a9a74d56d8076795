"""Pipeline stage split × per-rank recompute: which contiguous layers each pipeline chunk holds
and which recompute policy each rank uses, so that the slowest rank is as fast as possible and
every rank fits in memory.

Pure data in, pure data out: the caller prices every layer with autoplan's estimator; nothing
here knows a cost formula. With `pp` ranks and `vpp` chunks per rank, chunk c holds the layers
[b_c, b_{c+1}) and runs on rank c % pp (Megatron's interleaved placement). For rank r and policy p

    time_r   = Σ_{c on r} Σ_{l in c} time[p][l] + extra_time[r]
    memory_r = Σ_{c on r} Σ_{l in c} (static[l] + in_flight[r] · act[p][l]) + extra_bytes[r]

and we minimise max_r time_r subject to memory_r ≤ capacity.

Method: a greedy split (even, then layers moved off the worst rank) seeds CP-SAT as a hint and is
the fallback. The CP-SAT model keeps each boundary b_c both as an integer and in order encoding
("layer l lies before b_c"), so every cost above is linear in booleans and the LP bound is useful;
redundant per-rank layer counts let propagation see that n layers cost at least n cheap ones.

Tie-break, so that the same inputs give the same answer byte for byte: smallest bottleneck, then
smallest total rank time, then the lexicographically smallest `chunk_layers`; each rank then
takes its fastest policy that fits, ties going to the lesser recompute (NONE < SELECTIVE < FULL).
All comparisons use the integer costs of `_scale` (nanoseconds, KiB).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from autoplan.errors import ConfigError, InfeasiblePlanError
from autoplan.types import Recompute, value

_NS_PER_S = 1e9
_BYTES_PER_KIB = 1024
_GIB = 2**30
_BRUTE_FORCE_MAX_CANDIDATES = 200_000
_RECOMPUTE_ORDER = tuple(Recompute)  # least recompute first


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@value
class StageProblem:
    ranks: int  # pipeline ranks (pp)
    chunks_per_rank: int  # virtual stages (vpp); chunk c runs on rank c % ranks
    policies: tuple[Recompute, ...]
    layer_time_s: tuple[tuple[float, ...], ...]  # [policy][layer], fwd+bwd per micro-batch
    layer_act_bytes: tuple[tuple[float, ...], ...]  # [policy][layer], per in-flight micro-batch
    layer_static_bytes: tuple[float, ...]  # [layer]: weights + grads + optimizer
    rank_extra_time_s: tuple[float, ...]  # [rank]: embedding, LM head + loss
    rank_extra_bytes: tuple[float, ...]  # [rank]
    in_flight: tuple[float, ...]  # [rank]: micro-batches held at the peak (1F1B: pp - rank)
    capacity_bytes: float
    min_layers_per_chunk: int = 1

    def __post_init__(self) -> None:
        _check_shapes(self)
        numbers = itertools.chain(
            *self.layer_time_s, *self.layer_act_bytes, self.layer_static_bytes,
            self.rank_extra_time_s, self.rank_extra_bytes, self.in_flight,
        )
        _require(all(math.isfinite(x) and x >= 0 for x in numbers),
                 "stage times, bytes and in_flight must be finite and >= 0")
        _require(math.isfinite(self.capacity_bytes) and self.capacity_bytes > 0,
                 f"capacity_bytes={self.capacity_bytes} must be positive")

    @property
    def layers(self) -> int:
        return len(self.layer_static_bytes)

    @property
    def chunks(self) -> int:
        return self.ranks * self.chunks_per_rank


def _check_shapes(p: StageProblem) -> None:
    _require(min(p.ranks, p.chunks_per_rank, p.min_layers_per_chunk) >= 1,
             f"ranks={p.ranks}, chunks_per_rank={p.chunks_per_rank} and "
             f"min_layers_per_chunk={p.min_layers_per_chunk} must all be >= 1")
    _require(len(p.policies) > 0 and len(set(p.policies)) == len(p.policies)
             and all(isinstance(x, Recompute) for x in p.policies),
             f"policies={p.policies} must be distinct Recompute values, at least one")
    for name, table in (("layer_time_s", p.layer_time_s), ("layer_act_bytes", p.layer_act_bytes)):
        shape = (len(table), {len(row) for row in table})
        _require(shape == (len(p.policies), {p.layers}),
                 f"{name} must be [policy][layer] = {len(p.policies)} x {p.layers}, got {shape}")
    for name, row in (("rank_extra_time_s", p.rank_extra_time_s),
                      ("rank_extra_bytes", p.rank_extra_bytes), ("in_flight", p.in_flight)):
        _require(len(row) == p.ranks, f"{name} has {len(row)} entries, want ranks={p.ranks}")


@value
class StageSolution:
    chunk_layers: tuple[int, ...]  # layers per chunk, len = ranks * chunks_per_rank
    rank_recompute: tuple[Recompute, ...]  # one policy per rank
    bottleneck_s: float  # max over ranks of rank_time_s
    rank_time_s: tuple[float, ...]
    rank_memory_bytes: tuple[float, ...]
    optimal: bool
    method: str  # "cp-sat" | "greedy" | "brute-force"


@value
class SolverConfig:
    """CP-SAT settings. The deterministic limit binds first by design, so answers repeat."""

    deterministic_time_limit: float = 5.0  # CP-SAT's reproducible work units, per solve
    time_limit_s: float = 30.0  # wall-clock safety net, per solve
    workers: int = 1
    random_seed: int = 0
    # Presolve beyond one pass and probing cost more than they save on these models.
    presolve_iterations: int = 1
    probing_level: int = 0


# ---------------------------------------------------------------------------------------------
# Data: the problem in integers, and evaluating a split
# ---------------------------------------------------------------------------------------------


@value
class _Scaled:
    """Integer costs (ns, KiB) as prefix sums over layers; every solver comparison uses these."""

    time_prefix: tuple[tuple[int, ...], ...]  # [policy][boundary]
    mem_prefix: tuple[tuple[tuple[int, ...], ...], ...]  # [rank][policy][boundary]
    extra_time: tuple[int, ...]  # [rank]
    extra_mem: tuple[int, ...]  # [rank]
    capacity: int


def _prefix(values: Sequence[int]) -> tuple[int, ...]:
    return (0, *itertools.accumulate(values))


def _scale(p: StageProblem) -> _Scaled:
    # Memory rounds up per layer and capacity down, so a split that fits in KiB fits in bytes.
    def ns(seconds: float) -> int:
        return round(seconds * _NS_PER_S)

    def kib(n_bytes: float) -> int:
        return math.ceil(n_bytes / _BYTES_PER_KIB)

    mem_prefix = tuple(
        tuple(_prefix([kib(s + p.in_flight[r] * a) for s, a in zip(p.layer_static_bytes, act, strict=True)])
              for act in p.layer_act_bytes)
        for r in range(p.ranks)
    )
    return _Scaled(
        time_prefix=tuple(_prefix([ns(t) for t in row]) for row in p.layer_time_s),
        mem_prefix=mem_prefix,
        extra_time=tuple(ns(t) for t in p.rank_extra_time_s),
        extra_mem=tuple(kib(b) for b in p.rank_extra_bytes),
        capacity=math.floor(p.capacity_bytes / _BYTES_PER_KIB),
    )


def _rank_chunks(p: StageProblem, rank: int) -> range:
    return range(rank, p.chunks, p.ranks)


def _rank_cost(p: StageProblem, s: _Scaled, bounds: Sequence[int], rank: int, policy: int) -> tuple[int, int]:
    """(time ns, memory KiB) of `rank` under `policy` for boundaries b_0..b_C."""
    tp, mp = s.time_prefix[policy], s.mem_prefix[rank][policy]
    chunks = _rank_chunks(p, rank)
    time = s.extra_time[rank] + sum(tp[bounds[c + 1]] - tp[bounds[c]] for c in chunks)
    mem = s.extra_mem[rank] + sum(mp[bounds[c + 1]] - mp[bounds[c]] for c in chunks)
    return time, mem


def _best_policies(p: StageProblem, s: _Scaled, bounds: Sequence[int]) -> tuple[int, ...]:
    """Per rank: the fastest policy that fits (least recompute on ties), else the smallest."""
    chosen = []
    for rank in range(p.ranks):
        costs = [(*_rank_cost(p, s, bounds, rank, i), _RECOMPUTE_ORDER.index(x), i)
                 for i, x in enumerate(p.policies)]
        fits = [(t, level, i) for t, m, level, i in costs if m <= s.capacity]
        chosen.append(min(fits)[-1] if fits else min((m, level, i) for _, m, level, i in costs)[-1])
    return tuple(chosen)


def _chosen_costs(p: StageProblem, s: _Scaled, bounds: Sequence[int]) -> list[tuple[int, int]]:
    """(time ns, memory KiB) per rank under its `_best_policies` choice."""
    return [_rank_cost(p, s, bounds, r, i) for r, i in enumerate(_best_policies(p, s, bounds))]


def _evaluate(p: StageProblem, chunk_layers: Sequence[int], policies: Sequence[int]):
    """Float (rank seconds, rank bytes): the solver-independent cost of a split."""
    times, mems = list(p.rank_extra_time_s), list(p.rank_extra_bytes)
    layer = 0
    for c, n in enumerate(chunk_layers):
        r, i = c % p.ranks, policies[c % p.ranks]
        for ll in range(layer, layer + n):
            times[r] += p.layer_time_s[i][ll]
            mems[r] += p.layer_static_bytes[ll] + p.in_flight[r] * p.layer_act_bytes[i][ll]
        layer += n
    return tuple(times), tuple(mems)


def _solution(p: StageProblem, chunk_layers: Sequence[int], policies: Sequence[int], *,
              optimal: bool, method: str) -> StageSolution:
    times, mems = _evaluate(p, chunk_layers, policies)
    return StageSolution(
        chunk_layers=tuple(chunk_layers), rank_recompute=tuple(p.policies[i] for i in policies),
        bottleneck_s=max(times), rank_time_s=times, rank_memory_bytes=mems,
        optimal=optimal, method=method,
    )


# ---------------------------------------------------------------------------------------------
# Greedy: even split, then move layers off the worst rank while that helps
# ---------------------------------------------------------------------------------------------


def _greedy_key(p: StageProblem, s: _Scaled, bounds: Sequence[int]) -> tuple:
    """(memory over capacity, rank times slowest first): lower is better."""
    costs = _chosen_costs(p, s, bounds)
    overflow = sum(max(0, m - s.capacity) for _, m in costs)
    return overflow, tuple(sorted((t for t, _ in costs), reverse=True))


def _worst_rank(p: StageProblem, s: _Scaled, bounds: Sequence[int]) -> int:
    costs = _chosen_costs(p, s, bounds)

    def badness(rank: int) -> tuple[bool, int]:
        time, over = costs[rank][0], costs[rank][1] - s.capacity
        return (over > 0, over if over > 0 else time)

    return max(range(p.ranks), key=badness)


def _shrink_moves(p: StageProblem, bounds: tuple[int, ...], rank: int):
    """Boundaries after handing one layer of a `rank` chunk to another chunk, the chunks between
    shifting by one layer so that they keep their sizes."""
    for c in _rank_chunks(p, rank):
        if bounds[c + 1] - bounds[c] <= p.min_layers_per_chunk:
            continue
        for to in range(c):
            yield bounds[:to + 1] + tuple(b + 1 for b in bounds[to + 1:c + 1]) + bounds[c + 1:]
        for to in range(c + 1, p.chunks):
            yield bounds[:c + 1] + tuple(b - 1 for b in bounds[c + 1:to + 1]) + bounds[to + 1:]


def _greedy(p: StageProblem, s: _Scaled) -> tuple[int, ...]:
    extra = p.layers - p.chunks * p.min_layers_per_chunk
    bounds = tuple(c * p.min_layers_per_chunk + c * extra // p.chunks for c in range(p.chunks + 1))
    key = _greedy_key(p, s, bounds)
    while True:
        moves = [(_greedy_key(p, s, b), b) for b in _shrink_moves(p, bounds, _worst_rank(p, s, bounds))]
        if not moves or min(moves)[0] >= key:
            return bounds
        key, bounds = min(moves)


# ---------------------------------------------------------------------------------------------
# CP-SAT: variables, constraints, objective stages
# ---------------------------------------------------------------------------------------------


@dataclass
class _Model:
    model: cp_model.CpModel
    bound: list[cp_model.IntVar]  # b_0..b_C: chunk c holds layers [b_c, b_{c+1})
    before: list[list]  # [boundary][layer]: layer l lies before b_c (order encoding of b_c)
    use: list[list[cp_model.IntVar]]  # [rank][policy]: the rank runs that policy
    rank_layers: list[cp_model.IntVar]  # [rank]: layers over all its chunks
    rank_time: list[cp_model.IntVar]
    bottleneck: cp_model.IntVar


def _variables(p: StageProblem, s: _Scaled) -> _Model:
    m, chunks = cp_model.CpModel(), p.chunks
    lo = [c * p.min_layers_per_chunk for c in range(chunks + 1)]
    bound = [m.new_int_var(lo[c], p.layers - lo[chunks - c], f"b{c}") for c in range(chunks + 1)]
    before = [[0] * p.layers]
    before += [[m.new_bool_var(f"before_b{c}_l{ll}") for ll in range(p.layers)] for c in range(1, chunks)]
    before += [[1] * p.layers]
    use = [[m.new_bool_var(f"use_r{r}_{x}") for x in p.policies] for r in range(p.ranks)]
    rank_layers = [m.new_int_var(0, p.layers, f"layers_r{r}") for r in range(p.ranks)]
    horizon = max(row[-1] for row in s.time_prefix) + max(s.extra_time)
    rank_time = [m.new_int_var(0, horizon, f"time_r{r}") for r in range(p.ranks)]
    bottleneck = m.new_int_var(0, horizon, "bottleneck")
    return _Model(m, bound, before, use, rank_layers, rank_time, bottleneck)


def _steps(prefix: Sequence[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(prefix)]


def _rank_sum(v: _Model, p: StageProblem, rank: int, layer_costs: Sequence[int]) -> cp_model.LinearExpr:
    """Σ over the rank's chunks c and layers l in c of cost[l]; l is in c iff before b_{c+1}, not b_c."""
    expr = 0
    for c in _rank_chunks(p, rank):
        expr += cp_model.LinearExpr.weighted_sum(v.before[c + 1], layer_costs)
        expr -= cp_model.LinearExpr.weighted_sum(v.before[c], layer_costs)
    return expr


def _add_contiguous_chunks(v: _Model, p: StageProblem) -> None:
    """Chunks hold contiguous layers in order, all layers, at least the minimum each."""
    for c, row in enumerate(v.before):
        v.model.add(v.bound[c] == sum(row))
        for ll in range(p.layers - 1):
            v.model.add(row[ll] >= row[ll + 1])
        if c < p.chunks:
            v.model.add(v.bound[c + 1] - v.bound[c] >= p.min_layers_per_chunk)
            for ll in range(p.layers):
                v.model.add(v.before[c + 1][ll] >= row[ll])


def _add_one_policy_per_rank(v: _Model) -> None:
    """All chunks of a rank share one recompute policy."""
    for row in v.use:
        v.model.add_exactly_one(row)


def _add_rank_time(v: _Model, p: StageProblem, s: _Scaled) -> None:
    """A rank's time is its layers' times under its policy plus its extra time."""
    for r, i in itertools.product(range(p.ranks), range(len(p.policies))):
        layers = _rank_sum(v, p, r, _steps(s.time_prefix[i]))
        v.model.add(v.rank_time[r] == layers + s.extra_time[r]).only_enforce_if(v.use[r][i])


def _add_rank_time_floor(v: _Model, p: StageProblem, s: _Scaled) -> None:
    """Redundant: no rank beats its layers' fastest policy; a bound the LP relaxation can use."""
    fastest = [min(col) for col in zip(*(_steps(row) for row in s.time_prefix), strict=True)]
    for r in range(p.ranks):
        v.model.add(v.rank_time[r] >= _rank_sum(v, p, r, fastest) + s.extra_time[r])


def _add_rank_layer_counts(v: _Model, p: StageProblem) -> None:
    """A rank holds its chunks' layers; the ranks together hold them all (redundant)."""
    for r in range(p.ranks):
        v.model.add(v.rank_layers[r] == sum(v.bound[c + 1] - v.bound[c] for c in _rank_chunks(p, r)))
    v.model.add(sum(v.rank_layers) == p.layers)


def _add_count_bounds(v: _Model, p: StageProblem, s: _Scaled) -> None:
    """Redundant: n layers cost at least n cheapest ones, so the integer count caps each rank."""
    for r, i in itertools.product(range(p.ranks), range(len(p.policies))):
        least_time, least_mem = min(_steps(s.time_prefix[i])), min(_steps(s.mem_prefix[r][i]))
        n, use = v.rank_layers[r], v.use[r][i]
        v.model.add(v.rank_time[r] >= least_time * n + s.extra_time[r]).only_enforce_if(use)
        v.model.add(least_mem * n + s.extra_mem[r] <= s.capacity).only_enforce_if(use)


def _add_rank_memory(v: _Model, p: StageProblem, s: _Scaled) -> None:
    """A rank's static, in-flight activation and extra bytes fit its device."""
    for r, i in itertools.product(range(p.ranks), range(len(p.policies))):
        layers = _rank_sum(v, p, r, _steps(s.mem_prefix[r][i]))
        v.model.add(layers + s.extra_mem[r] <= s.capacity).only_enforce_if(v.use[r][i])


def _add_bottleneck(v: _Model) -> None:
    """The slowest rank paces the pipeline."""
    v.model.add_max_equality(v.bottleneck, v.rank_time)


def _build(p: StageProblem, s: _Scaled) -> _Model:
    v = _variables(p, s)
    _add_contiguous_chunks(v, p)
    _add_one_policy_per_rank(v)
    _add_rank_time(v, p, s)
    _add_rank_time_floor(v, p, s)
    _add_rank_memory(v, p, s)
    _add_rank_layer_counts(v, p)
    _add_count_bounds(v, p, s)
    _add_bottleneck(v)
    return v


def _hint(v: _Model, p: StageProblem, s: _Scaled, bounds: Sequence[int]) -> None:
    policies = _best_policies(p, s, bounds)
    times = [t for t, _ in _chosen_costs(p, s, bounds)]
    v.model.clear_hints()
    for c, (var, b) in enumerate(zip(v.bound, bounds, strict=True)):
        v.model.add_hint(var, b)
        for ll, before in enumerate(v.before[c]):
            if not isinstance(before, int):
                v.model.add_hint(before, ll < b)
    for r, row in enumerate(v.use):
        for i, var in enumerate(row):
            v.model.add_hint(var, i == policies[r])
    for var, t in zip(v.rank_time, times, strict=True):
        v.model.add_hint(var, t)
    v.model.add_hint(v.bottleneck, max(times))


def _solver(config: SolverConfig) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_deterministic_time = config.deterministic_time_limit
    solver.parameters.max_time_in_seconds = config.time_limit_s
    solver.parameters.num_workers = config.workers
    solver.parameters.random_seed = config.random_seed
    solver.parameters.max_presolve_iterations = config.presolve_iterations
    solver.parameters.cp_model_probing_level = config.probing_level
    return solver


def _lex_objectives(v: _Model, p: StageProblem) -> list[cp_model.LinearExpr]:
    """Lexicographic order on b_1..b_{C-1} as few mixed-radix sums, each exact in a double."""
    per_group = max(1, int(53 / math.log2(p.layers + 1)))
    inner = v.bound[1:-1]
    groups = [inner[k:k + per_group] for k in range(0, len(inner), per_group)]
    return [sum(b * (p.layers + 1) ** (len(g) - 1 - j) for j, b in enumerate(g)) for g in groups]


def _cp_sat(p: StageProblem, s: _Scaled, hint: tuple[int, ...], config: SolverConfig):
    """Objectives in tie-break order, each fixed before the next: (bounds, optimal, infeasible)."""
    v, solver, best = _build(p, s), _solver(config), None
    for objective in [v.bottleneck, sum(v.rank_time), *_lex_objectives(v, p)]:
        _hint(v, p, s, best or hint)
        v.model.minimize(objective)
        status = solver.solve(v.model)
        if status == cp_model.INFEASIBLE:
            assert best is None, "fixing an objective at its optimum lost the solution"
            return None, False, True
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return best, False, False
        best = tuple(solver.value(b) for b in v.bound)
        if status == cp_model.FEASIBLE:
            return best, False, False
        v.model.add(objective <= solver.value(objective))
    return best, True, False


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def _check_layer_count(p: StageProblem) -> None:
    need = p.chunks * p.min_layers_per_chunk
    if p.layers < need:
        raise InfeasiblePlanError(
            f"{p.layers} layers cannot fill pp={p.ranks} x vpp={p.chunks_per_rank} chunks of at least "
            f"{p.min_layers_per_chunk} layer(s) ({need} needed); use fewer pipeline ranks or virtual stages"
        )


def _no_fit(p: StageProblem, s: _Scaled, bounds: Sequence[int], why: str) -> InfeasiblePlanError:
    policies = _best_policies(p, s, bounds)
    mems = [m for _, m in _chosen_costs(p, s, bounds)]
    r = max(range(p.ranks), key=mems.__getitem__)
    return InfeasiblePlanError(
        f"no split of {p.layers} layers over pp={p.ranks} x vpp={p.chunks_per_rank} fits {why}: "
        f"e.g. rank {r} needs {mems[r] * _BYTES_PER_KIB / _GIB:.2f} GiB with {p.policies[policies[r]]} recompute "
        f"vs capacity {p.capacity_bytes / _GIB:.2f} GiB; try more pipeline or tensor parallelism, "
        f"FULL recompute, or ZeRO sharding"
    )


def _check(p: StageProblem, sol: StageSolution) -> None:
    """Solver-independent validation of a returned split, in floats and bytes."""
    assert len(sol.chunk_layers) == p.chunks and sum(sol.chunk_layers) == p.layers, sol
    assert min(sol.chunk_layers) >= p.min_layers_per_chunk, sol
    assert all(m <= p.capacity_bytes for m in sol.rank_memory_bytes), sol
    assert sol.bottleneck_s == max(sol.rank_time_s), sol


def solve_stages(problem: StageProblem, config: SolverConfig = SolverConfig()) -> StageSolution:
    """Optimal split and per-rank recompute by CP-SAT, seeded with (and falling back to) greedy."""
    _check_layer_count(problem)
    s = _scale(problem)
    greedy = _greedy(problem, s)
    greedy_key = _greedy_key(problem, s, greedy)
    bounds, optimal, infeasible = _cp_sat(problem, s, greedy, config)
    if infeasible:
        raise _no_fit(problem, s, greedy, f"in {problem.capacity_bytes / _GIB:.2f} GiB per device")
    use_cp_sat = bounds is not None and (optimal or _greedy_key(problem, s, bounds) < greedy_key)
    if not use_cp_sat and greedy_key[0] > 0:
        raise _no_fit(problem, s, greedy, "within the solver's time limit")
    chosen = bounds if use_cp_sat else greedy
    chunk_layers = tuple(b - a for a, b in itertools.pairwise(chosen))
    sol = _solution(problem, chunk_layers, _best_policies(problem, s, chosen), optimal=optimal,
                    method="cp-sat" if use_cp_sat else "greedy")
    _check(problem, sol)
    return sol


def _splits(p: StageProblem):
    for cuts in itertools.combinations(range(1, p.layers), p.chunks - 1):
        layers = tuple(b - a for a, b in itertools.pairwise((0, *cuts, p.layers)))
        if min(layers) >= p.min_layers_per_chunk:
            yield layers


def brute_force(problem: StageProblem) -> StageSolution:
    """Exhaustive search over contiguous splits × a policy per rank, in floats; tiny problems only."""
    p = problem
    _check_layer_count(p)
    candidates = math.comb(p.layers - 1, p.chunks - 1) * len(p.policies) ** p.ranks
    assert candidates <= _BRUTE_FORCE_MAX_CANDIDATES, f"{candidates} candidates is too many to enumerate"
    best_key, best = None, None
    assignments = list(itertools.product(range(len(p.policies)), repeat=p.ranks))
    for layers, policies in itertools.product(_splits(p), assignments):
        times, mems = _evaluate(p, layers, policies)
        if max(mems) > p.capacity_bytes:
            continue
        key = (max(times), sum(times), layers, [_RECOMPUTE_ORDER.index(p.policies[i]) for i in policies])
        if best_key is None or key < best_key:
            best_key, best = key, (layers, policies)
    if best is None:
        raise InfeasiblePlanError(
            f"no split of {p.layers} layers over pp={p.ranks} x vpp={p.chunks_per_rank} fits in "
            f"{p.capacity_bytes / _GIB:.2f} GiB per device; try more parallelism or recompute"
        )
    return _solution(p, *best, optimal=True, method="brute-force")
