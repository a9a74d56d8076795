"""Each cost formula against the number its source gives: Megatron's FLOPs (Narayanan et al.
2021), activation bytes (Korthikanti et al. 2022, Table 2), the pipeline bubble (Narayanan et al.
2021, eq. 1), model states under ZeRO (Rajbhandari et al. 2020, Fig. 1) and the micro-batches a
pipeline rank holds (Megatron-LM's 1F1B and interleaved schedules)."""

from __future__ import annotations

import pytest
from conftest import gpt_layer

from autoplan.cost_models.compute import model_flops_per_token
from autoplan.cost_models.memory import in_flight_microbatches, layer_activation_bytes, model_state_bytes
from autoplan.cost_models.pipeline import bubble_fraction, pipeline_time
from autoplan.frontends import model_from_hf_config
from autoplan.types import Job, Offload, Recompute, Strategy

# --- model FLOPs per token ----------------------------------------------------------------------


def megatron_flops_per_token(layers: int, hidden: int, seq: int, vocab: int) -> float:
    """Narayanan et al. 2021 eq. 3 without the recompute forward: 72·l·h²·(1 + s/(6h) + V/(12·l·h)).
    Per token: 6 × (12·l·h² weights + V·h logits) + 3 × 4·l·s·h full-square attention."""
    return 72 * layers * hidden**2 * (1 + seq / (6 * hidden) + vocab / (12 * layers * hidden))


GPT_SHAPES = {
    "gpt3-1.3b": (24, 2048, 16, 2048, 50257),
    "gpt3-13b": (40, 5120, 40, 2048, 50257),
    "gpt3-175b": (96, 12288, 96, 2048, 51200),
    "long-seq": (32, 4096, 32, 16384, 51200),
}


@pytest.mark.parametrize("layers, hidden, heads, seq, vocab", GPT_SHAPES.values(), ids=GPT_SHAPES.keys())
def test_model_flops_match_megatron_formula(layers, hidden, heads, seq, vocab):
    cfg = {"model_type": "gpt2", "n_embd": hidden, "n_layer": layers, "n_head": heads, "vocab_size": vocab,
           "n_positions": seq}
    module = model_from_hf_config(cfg, name="gpt").modules[0]
    got = model_flops_per_token(module.layers[:1], (layers,), module.head_matmul_params, seq)
    # GPT-2 layers carry 9h biases next to 12h² weights: 0.75/h relative, below 1e-3 at these widths
    assert got == pytest.approx(megatron_flops_per_token(layers, hidden, seq, vocab), rel=1e-3)


def test_model_flops_exact_without_biases():
    layers, hidden, heads, seq, vocab = 8, 512, 8, 1024, 1000
    got = model_flops_per_token((gpt_layer(hidden, heads),), (layers,), vocab * hidden, seq)
    assert got == pytest.approx(megatron_flops_per_token(layers, hidden, seq, vocab), rel=1e-12)


def test_model_flops_count_active_experts_only():
    """A top-2-of-8 MoE costs like a dense model with two experts' FFN plus the router."""
    cfg = {"model_type": "mixtral", "hidden_size": 1024, "intermediate_size": 3584, "num_hidden_layers": 4,
           "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 32000, "num_local_experts": 8,
           "num_experts_per_tok": 2}
    module = model_from_hf_config(cfg, name="moe").modules[0]
    layer = module.layers[0]
    h, f, s = 1024, 3584, 4096
    per_layer = 6 * (4 * h * h + 2 * 3 * h * f + h * 8) + 12 * s * h
    got = model_flops_per_token((layer,), (4,), module.head_matmul_params, s)
    assert got == pytest.approx(4 * per_layer + 6 * 32000 * h, rel=1e-12)


# --- activation bytes per layer: Korthikanti et al. 2022, Table 2 -----------------------------

S, B, H, A, T = 2048, 2, 2048, 16, 4
SBH = S * B * H
KORTHIKANTI = {
    # name: (tp, sp, recompute, bytes)
    "no-parallelism": (1, False, Recompute.NONE, SBH * (34 + 5 * A * S / H)),
    "tensor-parallel": (T, False, Recompute.NONE, SBH * (10 + 24 / T + 5 * A * S / (H * T))),
    "tp+sp": (T, True, Recompute.NONE, SBH * (34 / T + 5 * A * S / (H * T))),
    "tp+selective": (T, False, Recompute.SELECTIVE, SBH * (10 + 24 / T)),
    "tp+sp+selective": (T, True, Recompute.SELECTIVE, SBH * 34 / T),
    "full-recompute": (T, False, Recompute.FULL, 2 * SBH),
    "full-recompute-no-tp": (1, False, Recompute.FULL, 2 * SBH),
    # with SP, Megatron keeps each layer's input sharded over the tp ranks (Korthikanti §5)
    "full-recompute+sp": (T, True, Recompute.FULL, 2 * SBH / T),
}


@pytest.mark.parametrize("tp, sp, recompute, expected", KORTHIKANTI.values(), ids=KORTHIKANTI.keys())
def test_activation_bytes_match_korthikanti_table2(tp, sp, recompute, expected):
    job = Job(global_batch=B, seq_len=S, flash_attention=False, dropout=True)
    got = layer_activation_bytes(gpt_layer(H, A), Strategy(tp=tp, sp=sp, mbs=B), job, recompute)
    assert got == pytest.approx(expected, rel=1e-12)


def test_fused_attention_stores_no_scores():
    """Without dropout and with a fused kernel the 5as/h term vanishes: selective costs nothing more."""
    job = Job(global_batch=B, seq_len=S, flash_attention=True, dropout=False)
    s = Strategy(tp=T, sp=True, mbs=B)
    layer = gpt_layer(H, A)
    none = layer_activation_bytes(layer, s, job, Recompute.NONE)
    # Table 2 without the dropout masks (2sbh of 34sbh) and the scores: sbh·32/t
    assert none == pytest.approx(SBH * 32 / T, rel=1e-12)
    assert layer_activation_bytes(layer, s, job, Recompute.SELECTIVE) == pytest.approx(none, rel=1e-12)


def test_context_parallel_splits_activations():
    job = Job(global_batch=1, seq_len=8192, flash_attention=True)
    layer = gpt_layer(1024, 8)
    one = layer_activation_bytes(layer, Strategy(tp=2, sp=True), job, Recompute.NONE)
    four = layer_activation_bytes(layer, Strategy(tp=2, sp=True, cp=4), job, Recompute.NONE)
    assert four == pytest.approx(one / 4, rel=1e-12)


# --- pipeline: Narayanan et al. 2021, eq. 1 and §2.2 -------------------------------------------

BUBBLES = {"p4-m8": (4, 8, 1, 3 / 8), "p4-m8-v2": (4, 8, 2, 3 / 16), "p8-m32-v4": (8, 32, 4, 7 / 128),
           "p1": (1, 4, 1, 0.0)}


@pytest.mark.parametrize("pp, m, vpp, expected", BUBBLES.values(), ids=BUBBLES.keys())
def test_bubble_fraction(pp, m, vpp, expected):
    assert bubble_fraction(pp, m, vpp) == pytest.approx(expected)


@pytest.mark.parametrize("pp, m, vpp", [(4, 8, 1), (4, 8, 2), (8, 16, 4), (1, 5, 1)], ids=lambda x: str(x))
def test_pipeline_time_of_uniform_ranks(pp, m, vpp):
    t = 0.01
    got = pipeline_time([t] * pp, m, vpp)
    assert got == pytest.approx((m + (pp - 1) / vpp) * t)
    assert got / (m * t) - 1 == pytest.approx(bubble_fraction(pp, m, vpp))


def test_pipeline_time_paced_by_slowest_rank():
    # 6 micro-batches at the 3 ms rank; fill and drain cross the other two ranks once: 1 + 2 ms
    assert pipeline_time([1e-3, 3e-3, 2e-3], 6, 1) == pytest.approx(6 * 3e-3 + 3e-3)
    assert pipeline_time([1e-3, 3e-3, 2e-3], 6, 3) == pytest.approx(6 * 3e-3 + 1e-3)


# --- model states under ZeRO: Rajbhandari et al. 2020, Figure 1 ---------------------------------

PSI, ND = 7.5e9, 64
ZERO = {
    # stage: (formula, the figure's GB for Ψ=7.5B, Nd=64, K=12)
    "baseline": (0, (2 + 2 + 12) * PSI, 120.0),
    "p_os": (1, 2 * PSI + 2 * PSI + 12 * PSI / ND, 31.4),
    "p_os+g": (2, 2 * PSI + (2 + 12) * PSI / ND, 16.6),
    "p_os+g+p": (3, (2 + 2 + 12) * PSI / ND, 1.9),
}


@pytest.mark.parametrize("zero, expected, figure_gb", ZERO.values(), ids=ZERO.keys())
def test_model_states_match_zero_paper(zero, expected, figure_gb):
    states = model_state_bytes(PSI, 0.0, Strategy(dp=ND, zero=zero), Job(global_batch=ND, seq_len=1))
    assert sum(states.values()) == pytest.approx(expected, rel=1e-12)
    assert sum(states.values()) / 1e9 == pytest.approx(figure_gb, abs=0.05)


def test_model_states_split_by_kind():
    psi = 1e9
    s = Strategy(dp=8, zero=1)
    states = model_state_bytes(psi, 0.0, s, Job(global_batch=8, seq_len=1))
    assert states == {"weights": 2 * psi, "gradients": 2 * psi, "optimizer": 12 * psi / 8}
    fp32 = model_state_bytes(psi, 0.0, s, Job(global_batch=8, seq_len=1, fp32_grads=True))
    assert fp32["gradients"] == 4 * psi
    offloaded = model_state_bytes(psi, 0.0, s.with_(offload=Offload.OPTIMIZER), Job(global_batch=8, seq_len=1))
    assert offloaded["optimizer"] == 0.0


def test_expert_states_shard_over_expert_data_parallel():
    # dp=8, ep=4: each expert has 8/4 = 2 replicas, so ZeRO-1 shards its optimizer states 2 ways
    s = Strategy(dp=8, ep=4, zero=1)
    states = model_state_bytes(0.0, 1e9, s, Job(global_batch=8, seq_len=1))
    assert states["optimizer"] == pytest.approx(12e9 / 2)


# --- micro-batches in flight ----------------------------------------------------------------------


@pytest.mark.parametrize("pp, rank, m, expected", [(4, 0, 16, 4), (4, 1, 16, 3), (4, 3, 16, 1), (8, 0, 3, 3),
                                                   (1, 0, 16, 1)],
                         ids=["first", "second", "last", "capped-by-m", "no-pipeline"])
def test_in_flight_1f1b(pp, rank, m, expected):
    """1F1B: rank r runs pp-r-1 warm-up forwards, then holds one more (Narayanan et al. 2021, §2.2.1)."""
    assert in_flight_microbatches(Strategy(pp=pp), rank, m) == expected


def megatron_interleaved_in_flight(pp: int, vpp: int, rank: int) -> float:
    """Megatron-LM `forward_backward_pipelining_with_interleaving`: rank r runs
    (pp-r-1)·2 + (vpp-1)·pp warm-up chunk forwards and holds one more; a chunk is 1/vpp of the
    rank's layers. Rank 0 gives pp + (pp-1)/vpp, Korthikanti et al. 2022 §4.2.3's 1 + (p-1)/(p·v)."""
    return ((pp - rank - 1) * 2 + (vpp - 1) * pp + 1) / vpp


@pytest.mark.parametrize("pp, vpp, rank", [(4, 2, 0), (4, 2, 1), (4, 2, 3), (8, 4, 0), (8, 4, 7)],
                         ids=["p4v2-first", "p4v2-second", "p4v2-last", "p8v4-first", "p8v4-last"])
def test_in_flight_interleaved(pp, vpp, rank):
    got = in_flight_microbatches(Strategy(pp=pp, vpp=vpp), rank, 64)
    assert got == pytest.approx(megatron_interleaved_in_flight(pp, vpp, rank))


def test_interleaved_first_rank_factor():
    assert in_flight_microbatches(Strategy(pp=4, vpp=2), 0, 64) == pytest.approx(4 * (1 + 3 / (4 * 2)))
