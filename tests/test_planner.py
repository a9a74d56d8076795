"""The planner against brute force on problems small enough to enumerate: its plan is as fast as
the best of every mesh × knob the space holds, every plan it returns passes a checker written
here without the solver, and the same inputs give the same plan."""

from __future__ import annotations

import pytest
from conftest import fake_cluster, tiny_gpt

from autoplan.cost_models.estimate import estimate
from autoplan.errors import AutoplanError, InfeasiblePlanError
from autoplan.search.planner import SearchConfig, search
from autoplan.search.space import knob_options, meshes
from autoplan.types import Cluster, Job, ModelGraph, Module, Plan, Strategy

PROBLEMS = {
    # name: (model, cluster, job)
    "roomy": (tiny_gpt(layers=8, hidden=512, heads=8, vocab=1024), fake_cluster(8), Job(global_batch=16, seq_len=1024)),
    "tight": (tiny_gpt(layers=8, hidden=2048, heads=16, vocab=32000), fake_cluster(8, hbm_gib=6),
              Job(global_batch=32, seq_len=2048)),
    "needs-cp": (tiny_gpt(layers=8, hidden=2048, heads=16, vocab=32000), fake_cluster(8, hbm_gib=5.5),
                 Job(global_batch=8, seq_len=4096)),
    "needs-recompute": (tiny_gpt(layers=8, hidden=2048, heads=16, vocab=32000), fake_cluster(8, hbm_gib=5.3),
                        Job(global_batch=8, seq_len=4096)),
    "needs-pipeline": (tiny_gpt(layers=16, hidden=2048, heads=16, vocab=32000), fake_cluster(8, hbm_gib=6),
                       Job(global_batch=16, seq_len=4096)),
}


def brute_force(model: ModelGraph, cluster: Cluster, job: Job, fixed: dict | None = None) -> tuple[float, Plan]:
    """Every mesh × knob of the space, scored by the estimator; the fastest that fits."""
    fixed = fixed or {}
    best = None
    module = model.modules[0]
    for mesh in meshes(module, cluster, job, fixed):
        for s in knob_options(mesh, module, job, fixed):
            if not is_valid(module, cluster, job, s):
                continue
            plan = Plan.single(s)
            e = estimate(model, cluster, job, plan)
            if e.fits and (best is None or e.step_time_s < best[0]):
                best = (e.step_time_s, plan)
    assert best is not None, "the brute force found no fitting plan; the problem is mis-sized"
    return best


def is_valid(module: Module, cluster: Cluster, job: Job, s: Strategy) -> bool:
    """The divisibility rules, written here without the cost models' own check."""
    att = module.layers[0].attention
    layers = s.stage_layers or ()
    return (
        s.tp * s.pp * s.dp * s.cp == cluster.devices
        and att.heads % s.tp == 0
        and (att.kv_heads % s.tp == 0 or s.tp % att.kv_heads == 0)
        and module.num_layers >= s.pp * s.vpp
        and job.global_batch % (s.dp * s.mbs) == 0
        and (not s.sp or s.tp > 1)
        and (s.cp == 1 or job.seq_len % (2 * s.cp) == 0)
        and (not layers or (sum(layers) == module.num_layers and min(layers) >= 1))
        and s.ep == 1  # dense models only here
    )


def assert_valid_plan(model: ModelGraph, cluster: Cluster, job: Job, plan: Plan) -> None:
    s = plan.main
    assert is_valid(model.modules[0], cluster, job, s), s
    e = estimate(model, cluster, job, plan)
    assert e.fits and e.peak_memory_bytes <= cluster.accelerator.hbm_bytes


@pytest.mark.parametrize("model, cluster, job", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_sweep_equals_brute_force(model, cluster, job):
    """Without the stage re-split and placement, the screened sweep finds the exhaustive optimum."""
    brute_s, _ = brute_force(model, cluster, job)
    result = search(model, cluster, job, config=SearchConfig(refine_top=0))
    assert result.best.estimate.step_time_s == pytest.approx(brute_s, rel=1e-12)


@pytest.mark.parametrize("model, cluster, job", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_search_at_least_as_fast_as_brute_force(model, cluster, job):
    brute_s, _ = brute_force(model, cluster, job)
    result = search(model, cluster, job)
    assert result.best.estimate.step_time_s <= brute_s * (1 + 1e-12)
    assert result.best.estimate.step_time_s == pytest.approx(
        estimate(model, cluster, job, result.best.plan).step_time_s, rel=1e-12)


@pytest.mark.parametrize("model, cluster, job", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_every_returned_plan_is_valid_and_ranked(model, cluster, job):
    result = search(model, cluster, job)
    assert result.best == result.ranked[0] and result.candidates > 0
    for scored in result.ranked:
        assert_valid_plan(model, cluster, job, scored.plan)
    times = [x.estimate.step_time_s for x in result.ranked]
    assert times == sorted(times)
    assert len({x.plan for x in result.ranked}) == len(result.ranked)


@pytest.mark.parametrize("name", ["tight", "needs-pipeline"])
def test_same_inputs_same_plan(name):
    model, cluster, job = PROBLEMS[name]
    a, b = search(model, cluster, job), search(model, cluster, job)
    assert a.best.plan == b.best.plan
    assert [x.plan for x in a.ranked] == [x.plan for x in b.ranked]


@pytest.mark.parametrize("fixed", [{"tp": 2}, {"tp": 4, "pp": 2}, {"recompute": "full"}, {"mbs": 1, "zero": 3}],
                         ids=["tp2", "tp4-pp2", "recompute-full", "mbs1-zero3"])
def test_fixed_keys_are_respected(fixed):
    model, cluster, job = PROBLEMS["tight"]
    result = search(model, cluster, job, dict(fixed))
    for scored in result.ranked:
        s = scored.plan.main
        for key, value in fixed.items():
            got = getattr(s, key)
            assert (got.value if hasattr(got, "value") else got) == value, (key, s)
        assert_valid_plan(model, cluster, job, scored.plan)
    brute_s, _ = brute_force(model, cluster, job, dict(fixed))
    assert result.best.estimate.step_time_s <= brute_s * (1 + 1e-12)


def test_model_too_large_is_infeasible():
    huge = tiny_gpt(layers=32, hidden=8192, heads=64, vocab=32000, name="huge")
    with pytest.raises(InfeasiblePlanError) as info:
        search(huge, fake_cluster(1, hbm_gib=16), Job(global_batch=8, seq_len=2048))
    message = str(info.value)
    assert "\n" not in message and "no plan fits huge" in message and "add devices" in message


def test_impossible_fix_is_infeasible():
    model, cluster, job = PROBLEMS["tight"]
    with pytest.raises(AutoplanError, match="tp=3"):
        search(model, cluster, job, {"tp": 3})


def test_progress_is_reported():
    model, cluster, job = PROBLEMS["roomy"]
    said: list[str] = []
    search(model, cluster, job, progress=said.append)
    assert said and said[0].startswith("screened")
