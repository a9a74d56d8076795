"""The stage-split solver against brute force, a hand derivation, and its own greedy."""

from __future__ import annotations

import time

import numpy as np
import pytest

from autoplan.errors import InfeasiblePlanError
from autoplan.search import stages
from autoplan.search.stages import SolverConfig, StageProblem, StageSolution, brute_force, solve_stages
from autoplan.types import Recompute

GIB = 2**30
MS = 1e-3
NONE, SELECTIVE, FULL = Recompute.NONE, Recompute.SELECTIVE, Recompute.FULL
# (time factor, activation factor) per policy: recompute trades time for memory
TRADE = {NONE: (1.0, 1.0), SELECTIVE: (1.05, 0.4), FULL: (1.33, 0.08)}


def uniform(layers: int, ranks: int, vpp: int = 1, *, policies=(NONE,), time_s=MS, act_bytes=0.0,
            static_bytes=0.0, extra_time_s=None, extra_bytes=None, cap_bytes=80 * GIB) -> StageProblem:
    return StageProblem(
        ranks=ranks, chunks_per_rank=vpp, policies=policies,
        layer_time_s=tuple((time_s * TRADE[x][0],) * layers for x in policies),
        layer_act_bytes=tuple((act_bytes * TRADE[x][1],) * layers for x in policies),
        layer_static_bytes=(static_bytes,) * layers,
        rank_extra_time_s=extra_time_s or (0.0,) * ranks,
        rank_extra_bytes=extra_bytes or (0.0,) * ranks,
        in_flight=tuple(float(ranks - r) for r in range(ranks)),
        capacity_bytes=cap_bytes,
    )


def random_problem(seed: int) -> StageProblem:
    rng = np.random.default_rng(seed)
    ranks, vpp = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    layers = int(rng.integers(ranks * vpp, 9))
    policies = tuple(x for x in (NONE, SELECTIVE, FULL) if rng.random() < 0.7) or (FULL,)
    base_s, act = rng.uniform(0.5, 1.5, layers) * MS, rng.uniform(0.5, 2.0, layers) * GIB
    static = rng.uniform(0.1, 1.0, layers) * GIB
    in_flight = tuple(float(ranks - r) for r in range(ranks))
    # Between the memory of the most and of the least memory-hungry even split: often tight.
    per_rank = (static.sum() + in_flight[0] * act.sum()) / ranks
    return StageProblem(
        ranks=ranks, chunks_per_rank=vpp, policies=policies,
        layer_time_s=tuple(tuple(float(t) for t in base_s * TRADE[x][0] * rng.uniform(0.95, 1.05, layers))
                           for x in policies),
        layer_act_bytes=tuple(tuple(float(a) for a in act * TRADE[x][1]) for x in policies),
        layer_static_bytes=tuple(float(b) for b in static),
        rank_extra_time_s=tuple(float(t) for t in rng.uniform(0, 2, ranks) * MS),
        rank_extra_bytes=tuple(float(b) for b in rng.uniform(0, 1, ranks) * GIB),
        in_flight=in_flight,
        capacity_bytes=float(per_rank * rng.uniform(0.3, 1.6)),
    )


def problem_id(seed: int) -> str:
    p = random_problem(seed)
    return f"seed{seed}-L{p.layers}-pp{p.ranks}-vpp{p.chunks_per_rank}-" + "+".join(p.policies)


def assert_feasible(p: StageProblem, sol: StageSolution) -> None:
    """Recomputes the solution's cost from the problem alone."""
    assert sum(sol.chunk_layers) == p.layers and len(sol.chunk_layers) == p.chunks
    assert min(sol.chunk_layers) >= p.min_layers_per_chunk
    starts = np.cumsum((0, *sol.chunk_layers))
    for r, policy in enumerate(sol.rank_recompute):
        i = p.policies.index(policy)
        held = [ll for c in range(r, p.chunks, p.ranks) for ll in range(starts[c], starts[c + 1])]
        mem = sum(p.layer_static_bytes[ll] + p.in_flight[r] * p.layer_act_bytes[i][ll] for ll in held)
        t = sum(p.layer_time_s[i][ll] for ll in held) + p.rank_extra_time_s[r]
        assert mem + p.rank_extra_bytes[r] <= p.capacity_bytes
        assert t == pytest.approx(sol.rank_time_s[r], rel=1e-12)
    assert sol.bottleneck_s == max(sol.rank_time_s)


@pytest.mark.parametrize("seed", range(36), ids=problem_id)
def test_cp_sat_matches_brute_force(seed):
    p = random_problem(seed)
    try:
        expected = brute_force(p)
    except InfeasiblePlanError:
        with pytest.raises(InfeasiblePlanError):
            solve_stages(p)
        return
    got = solve_stages(p)
    assert_feasible(p, got)
    assert (got.optimal, got.method) == (True, "cp-sat")
    # integer nanoseconds: each layer's time rounds by at most half a nanosecond
    assert got.bottleneck_s == pytest.approx(expected.bottleneck_s, abs=p.layers * 1e-9)
    # no near-ties in these floats, so the stated tie-break picks the same split and policies
    assert (got.chunk_layers, got.rank_recompute) == (expected.chunk_layers, expected.rank_recompute)


def test_random_cases_include_tight_and_infeasible_caps():
    outcomes = set()
    for seed in range(36):
        p = random_problem(seed)
        try:
            sol = brute_force(p)
        except InfeasiblePlanError:
            outcomes.add("infeasible")
            continue
        outcomes.add("recompute" if set(sol.rank_recompute) - {NONE} else "no-recompute")
    assert outcomes == {"infeasible", "recompute", "no-recompute"}


def test_same_inputs_same_answer():
    p = uniform(24, 4, 2, policies=(NONE, SELECTIVE, FULL), act_bytes=GIB, cap_bytes=20 * GIB)
    assert solve_stages(p) == solve_stages(p)


def test_heavy_last_rank_gets_fewer_layers():
    # 10 layers of 1 ms; the LM head adds 4 ms to rank 1: 7 + 0 = 3 + 4 balances at 7 ms.
    p = uniform(10, 2, extra_time_s=(0.0, 4 * MS))
    sol = solve_stages(p)
    assert sol.chunk_layers == (7, 3)
    assert sol.bottleneck_s == pytest.approx(7 * MS)


def test_tight_cap_recomputes_only_on_the_first_rank():
    # 1 GiB activations per layer per micro-batch, 5.5 GiB cap; rank 0 holds 2 micro-batches, rank 1 one.
    # Without recompute rank 0 fits 2 layers, rank 1 fits 5: 7 < 10, so someone recomputes.
    # FULL on rank 0 (5 layers x 1.33 ms, 1 GiB), NONE on rank 1 (5 ms, 5 GiB): 6.65 ms.
    # FULL on both also gives 6.65 ms but more total time; NONE on rank 0 forces 8 FULL layers on rank 1.
    p = uniform(10, 2, policies=(NONE, FULL), act_bytes=GIB, cap_bytes=5.5 * GIB)
    sol = solve_stages(p)
    assert (sol.chunk_layers, sol.rank_recompute) == ((5, 5), (FULL, NONE))
    assert sol.bottleneck_s == pytest.approx(5 * 1.33 * MS)
    expected = brute_force(p)
    assert (sol.chunk_layers, sol.rank_recompute) == (expected.chunk_layers, expected.rank_recompute)


def test_out_of_time_falls_back_to_greedy():
    p = llama_like(layers=32, ranks=4)
    sol = solve_stages(p, SolverConfig(deterministic_time_limit=0.0))
    assert (sol.method, sol.optimal) == ("greedy", False)
    assert_feasible(p, sol)


def test_no_fit_names_the_rank_and_the_fix():
    p = uniform(10, 2, policies=(NONE, FULL), act_bytes=GIB, static_bytes=GIB, cap_bytes=4 * GIB)
    message = r"rank \d needs \d+\.\d\d GiB with full recompute vs capacity 4\.00 GiB; try"
    with pytest.raises(InfeasiblePlanError, match=message):
        solve_stages(p)


def test_too_few_layers_for_the_chunks():
    p = uniform(5, 3, 2)
    with pytest.raises(InfeasiblePlanError, match="5 layers cannot fill pp=3 x vpp=2"):
        solve_stages(p)


def llama_like(layers: int = 126, ranks: int = 16) -> StageProblem:
    """405B-like: 126 layers on 16 ranks, 80 GiB devices, embedding on rank 0, LM head on the last."""
    rng = np.random.default_rng(0)
    p = uniform(layers, ranks, policies=(NONE, SELECTIVE, FULL), time_s=30 * MS, act_bytes=0.6 * GIB,
                static_bytes=1.2 * GIB, extra_time_s=(10 * MS,) + (0.0,) * (ranks - 2) + (50 * MS,),
                extra_bytes=(2 * GIB,) + (0.0,) * (ranks - 2) + (4 * GIB,))
    jitter = rng.uniform(0.98, 1.02, layers)
    times = tuple(tuple(float(t * j) for t, j in zip(row, jitter, strict=True)) for row in p.layer_time_s)
    return StageProblem(**{**{f: getattr(p, f) for f in StageProblem.__slots__}, "layer_time_s": times})


def test_realistic_size_is_fast_and_no_worse_than_greedy():
    p = llama_like()
    start = time.perf_counter()
    sol = solve_stages(p)
    elapsed = time.perf_counter() - start
    scaled = stages._scale(p)
    greedy = stages._greedy(p, scaled)
    greedy_time_ns = max(stages._rank_cost(p, scaled, greedy, r, i)[0]
                         for r, i in enumerate(stages._best_policies(p, scaled, greedy)))
    assert_feasible(p, sol)
    assert sol.bottleneck_s <= greedy_time_ns / 1e9 + p.layers * 1e-9
    assert set(sol.rank_recompute) > {NONE}  # the early ranks hold 16 micro-batches and must recompute
    assert elapsed < 2.5, f"{elapsed:.2f}s"
