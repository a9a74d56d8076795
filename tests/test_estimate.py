"""The estimator end to end on a model and cluster built in code: the breakdown adds up, MFU is
the textbook ratio, every memory/time trade moves the way its paper says, and every bad plan is
a ConfigError that names the fix."""

from __future__ import annotations

import pytest
from conftest import fake_cluster, tiny_gpt

from autoplan.cost_models.estimate import estimate
from autoplan.cost_models.layout import chunk_layers
from autoplan.errors import ConfigError
from autoplan.frontends import model_from_hf_config
from autoplan.plan_io import parse_plan
from autoplan.types import Job, Plan, Recompute

GIB = 2**30
MODEL = tiny_gpt(layers=16, hidden=2048, heads=16, vocab=32000)
CLUSTER = fake_cluster(8)
JOB = Job(global_batch=32, seq_len=2048)
UNFUSED = Job(global_batch=32, seq_len=2048, flash_attention=False, dropout=True)


def est(plan: str, job: Job = JOB, model=MODEL, cluster=CLUSTER):
    return estimate(model, cluster, job, parse_plan(plan))


PLANS = ["dp=8", "tp=8", "tp=2,dp=4,sp=1", "tp=2,pp=2,dp=2", "tp=2,pp=4,vpp=2", "pp=8,recompute=full",
         "dp=8,zero=3", "tp=2,dp=2,cp=2", "tp=4,pp=2,mbs=2,recompute=selective"]


@pytest.mark.parametrize("plan", PLANS)
def test_breakdown_sums_to_step_time(plan):
    e = est(plan)
    assert sum(e.time_breakdown.values()) == pytest.approx(e.step_time_s, rel=1e-12)
    assert sum(e.memory_breakdown.values()) == pytest.approx(e.peak_memory_bytes, rel=1e-12)
    assert all(v >= 0 for v in e.time_breakdown.values())
    assert e.tokens_per_s == pytest.approx(JOB.global_batch * JOB.seq_len / e.step_time_s)


@pytest.mark.parametrize("plan", ["dp=8", "tp=2,pp=2,dp=2", "pp=8,recompute=full"])
def test_mfu_is_model_flops_over_time_devices_peak(plan):
    e = est(plan)
    n_layers, h, s, v = 16, 2048, JOB.seq_len, 32000
    # Narayanan et al. 2021 eq. 3 without recompute: 72·l·h²·(1 + s/6h + V/12lh) per token
    model_flops = JOB.global_batch * s * 72 * n_layers * h * h * (1 + s / (6 * h) + v / (12 * n_layers * h))
    assert e.model_flops_per_step == pytest.approx(model_flops, rel=1e-12)
    assert e.mfu == pytest.approx(model_flops / (e.step_time_s * 8 * 1e15), rel=1e-12)
    assert e.model_tflops_per_device == pytest.approx(model_flops / e.step_time_s / 8 / 1e12, rel=1e-12)
    assert 0 < e.mfu < 1 and 0 < e.hfu < 1


def test_full_recompute_adds_a_forward_of_hardware_flops():
    """HFU counts the recompute forward, MFU does not: the model FLOPs are the same."""
    none, full = est("tp=2,pp=2,dp=2"), est("tp=2,pp=2,dp=2,recompute=full")
    assert none.model_flops_per_step == full.model_flops_per_step
    assert full.hardware_flops_per_step / none.hardware_flops_per_step == pytest.approx(4 / 3, rel=0.02)


def test_plan_that_does_not_fit_still_estimates():
    big = tiny_gpt(layers=32, hidden=8192, heads=64, vocab=32000)  # ~26B params
    e = est("dp=8", model=big, cluster=fake_cluster(8, hbm_gib=16))
    assert not e.fits and e.peak_memory_bytes > e.capacity_bytes == 16 * GIB
    assert e.step_time_s > 0


@pytest.mark.parametrize("job", [JOB, UNFUSED], ids=["flash", "unfused+dropout"])
def test_more_recompute_costs_time(job):
    times = [est(f"tp=2,pp=2,dp=2,recompute={r}", job) for r in ("none", "selective", "full")]
    assert times[0].time_breakdown["recompute"] == 0.0
    assert times[0].step_time_s < times[1].step_time_s < times[2].step_time_s


@pytest.mark.parametrize("job", [JOB, UNFUSED], ids=["flash", "unfused+dropout"])
def test_more_recompute_never_costs_memory(job):
    """Recomputation keeps a subset of what no recomputation keeps (Korthikanti et al. 2022 §5):
    selective regenerates only the attention core, so it holds at most what `none` holds."""
    act = [est(f"tp=2,pp=2,dp=2,recompute={r}", job).memory_breakdown["activations"]
           for r in ("none", "selective", "full")]
    assert act[0] >= act[1] > act[2]


def test_selective_recompute_frees_the_attention_scores():
    none = est("tp=2,pp=2,dp=2", UNFUSED).memory_breakdown["activations"]
    selective = est("tp=2,pp=2,dp=2,recompute=selective", UNFUSED).memory_breakdown["activations"]
    assert selective < 0.5 * none  # 5as/h = 5·16·2048/2048 = 80 of 114 sbh units are scores


def test_sequence_parallel_shards_activations():
    off, on = est("tp=2,pp=2,dp=2,sp=0"), est("tp=2,pp=2,dp=2,sp=1")
    assert on.memory_breakdown["activations"] < off.memory_breakdown["activations"]
    assert on.memory_breakdown["weights"] == off.memory_breakdown["weights"]


@pytest.mark.parametrize("zero", [1, 2, 3])
def test_zero_shards_model_states(zero):
    base, sharded = est("dp=8,zero=0").memory_breakdown, est(f"dp=8,zero={zero}").memory_breakdown
    assert sharded["optimizer"] == pytest.approx(base["optimizer"] / 8)
    assert sharded["gradients"] == pytest.approx(base["gradients"] / (8 if zero >= 2 else 1))
    assert sharded["weights"] == pytest.approx(base["weights"] / (8 if zero >= 3 else 1))


def test_zero3_keeps_gathered_layers():
    mem = est("dp=8,zero=3").memory_breakdown
    layer_params = 12 * 2048 * 2048 + 4 * 2048
    assert mem["gathered_params"] == pytest.approx(2 * layer_params * 2)  # current + prefetched, bf16


@pytest.mark.parametrize("vpp", [2, 4])
def test_interleaving_shrinks_the_bubble(vpp):
    one, many = est("tp=2,pp=4"), est(f"tp=2,pp=4,vpp={vpp}")
    assert many.time_breakdown["pp_bubble"] < one.time_breakdown["pp_bubble"]
    # the bubble is (p-1)/v rank-times: roughly v times smaller
    assert many.time_breakdown["pp_bubble"] * vpp == pytest.approx(one.time_breakdown["pp_bubble"], rel=0.15)


def test_no_pipeline_no_bubble():
    e = est("tp=2,dp=4")
    assert e.time_breakdown["pp_bubble"] == 0.0 and e.time_breakdown["pp_p2p"] == 0.0


def test_tp_comm_exposed_only_with_tp():
    assert est("dp=8").time_breakdown["tp_comm"] == 0.0
    assert est("tp=8").time_breakdown["tp_comm"] > 0.0


# spare layers go to the middle chunks: the first and last also hold the embedding and the head
@pytest.mark.parametrize("layers, chunks, expected", [(16, 4, (4, 4, 4, 4)), (10, 4, (2, 3, 3, 2)),
                                                      (126, 8, (15, 16, 16, 16, 16, 16, 16, 15)),
                                                      (7, 7, (1,) * 7)], ids=["even", "uneven", "llama405b-pp8",
                                                                              "one-each"])
def test_even_chunk_split(layers, chunks, expected):
    assert chunk_layers(layers, parse_plan(f"pp={chunks}").main) == expected


def test_explicit_stage_split_is_used():
    even = est("tp=2,pp=4")
    skewed = estimate(MODEL, CLUSTER, JOB, Plan.single(parse_plan("tp=2,pp=4").main.with_(stage_layers=(1, 5, 5, 5))))
    assert skewed.step_time_s > even.step_time_s  # the 5-layer ranks pace the pipeline


def test_estimate_is_deterministic():
    a, b = est("tp=2,pp=2,dp=2,vpp=2"), est("tp=2,pp=2,dp=2,vpp=2")
    assert a == b and a.time_breakdown == b.time_breakdown


# --- check_plan errors ---------------------------------------------------------------------------

MOE = model_from_hf_config({"model_type": "mixtral", "hidden_size": 1024, "intermediate_size": 3584,
                            "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 8,
                            "vocab_size": 32000, "num_local_experts": 8, "num_experts_per_tok": 2}, name="moe")

ERRORS = {
    "degrees-not-devices": ("tp=2,dp=2", MODEL, JOB, "= 4 but the cluster has 8 devices; change the degrees"),
    "tp-not-dividing-heads": ("tp=8", tiny_gpt(heads=12, hidden=768), JOB, "tp=8 must divide num_heads=12; pick tp"),
    "batch-not-divisible": ("dp=8,mbs=3", MODEL, JOB, "global_batch=32 must be a multiple of dp\\*mbs=8\\*3=24"),
    "sp-without-tp": ("dp=8,sp=1", MODEL, JOB, "needs tp > 1; set sp=0 or raise tp"),
    "ep-on-dense": ("dp=8,ep=2", MODEL, JOB, "ep=2 needs an MoE model.*set ep=1"),
    "ep-not-dividing-experts": ("dp=8,ep=8", model_from_hf_config(
        {"model_type": "mixtral", "hidden_size": 1024, "intermediate_size": 3584, "num_hidden_layers": 4,
         "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 32000, "num_local_experts": 6,
         "num_experts_per_tok": 2}, name="moe6"), JOB, "ep=8 must divide the 6 experts; pick ep from"),
    "too-many-stages": ("pp=8", tiny_gpt(layers=4), JOB, "pp\\*vpp=8 exceeds the 4 layers"),
    "cp-seq": ("cp=8", MODEL, Job(global_batch=32, seq_len=1000), "seq_len=1000 must be a multiple of 2\\*cp=16"),
}


@pytest.mark.parametrize("plan, model, job, message", ERRORS.values(), ids=ERRORS.keys())
def test_check_plan_errors_name_the_fix(plan, model, job, message):
    with pytest.raises(ConfigError, match=message):
        estimate(model, CLUSTER, job, parse_plan(plan))


def test_global_batch_error_message():
    with pytest.raises(ConfigError, match="change --global-batch, dp or mbs"):
        est("dp=8,mbs=1", Job(global_batch=12, seq_len=2048))


def test_moe_plan_estimates():
    e = estimate(MOE, CLUSTER, JOB, parse_plan("dp=8,ep=8"))
    assert e.time_breakdown["ep_comm"] > 0 and e.step_time_s > 0
    assert sum(e.time_breakdown.values()) == pytest.approx(e.step_time_s, rel=1e-12)


def test_recompute_enum_flows_through():
    assert parse_plan("recompute=full").main.recompute is Recompute.FULL
