"""HF-config frontend and presets: exact counts against hand derivations and published totals."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoplan.errors import ConfigError
from autoplan.frontends import load_model, model_from_hf_config, preset_names
from autoplan.types import Mlp, Moe

FRONTENDS = Path(__file__).resolve().parents[1] / "frontends"

TINY_LLAMA = {
    "model_type": "llama", "hidden_size": 16, "num_attention_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 40, "num_hidden_layers": 2, "vocab_size": 100, "tie_word_embeddings": False,
}


def test_tiny_llama_counts_every_matrix_by_hand():
    m = model_from_hf_config(TINY_LLAMA, name="tiny")
    lang = m.module("language")
    # q 16x16, k 16x8, v 16x8, o 16x16 (head_dim 4, 2 kv heads)
    assert lang.layers[0].attention.params == 256 + 128 + 128 + 256
    # gate, up 16x40 and down 40x16
    assert lang.layers[0].ffn.params == 3 * 640
    assert lang.layers[0].norm_params == 2 * 16
    assert (lang.embedding_params, lang.head_params, lang.final_norm_params) == (1600, 1600, 16)
    assert m.params == 2 * (768 + 1920 + 32) + 1600 + 1600 + 16 == 8656
    assert m.active_params == m.params and not m.is_moe


def test_tiny_gpt2_counts_biases_positions_and_layernorm():
    cfg = {"model_type": "gpt2", "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 10, "vocab_size": 20}
    lang = model_from_hf_config(cfg, name="tiny-gpt2").module("language")
    assert lang.layers[0].attention.params == 8 * 24 + 24 + 8 * 8 + 8  # c_attn, c_proj with biases
    assert lang.layers[0].ffn.params == 8 * 32 + 32 + 32 * 8 + 8  # c_fc, c_proj with biases
    assert lang.layers[0].norm_params == 2 * (8 + 8)  # two LayerNorms, weight and bias
    assert lang.tied_embeddings and lang.head_params == 0
    assert lang.embedding_params == 20 * 8 + 10 * 8  # wte + wpe
    assert lang.params == 288 + 552 + 32 + 240 + 16


def test_tiny_deepseek_counts_mla_shared_experts_and_dense_layers():
    cfg = {"model_type": "deepseek_v3", "hidden_size": 8, "num_attention_heads": 2, "q_lora_rank": 4,
           "kv_lora_rank": 6, "qk_nope_head_dim": 3, "qk_rope_head_dim": 2, "v_head_dim": 5,
           "num_hidden_layers": 2, "first_k_dense_replace": 1, "n_routed_experts": 4,
           "num_experts_per_tok": 2, "moe_intermediate_size": 3, "n_shared_experts": 1,
           "intermediate_size": 10, "vocab_size": 11, "topk_method": "noaux_tc"}
    m = model_from_hf_config(cfg, name="tiny-dsv3")
    dense, sparse = m.module("language").layers
    # q_a 8x4 + norm 4 + q_b 4x(2*5); kv_a 8x(6+2) + norm 6 + kv_b 6x(2*(3+5)); o (2*5)x8
    assert dense.attention.params == (32 + 4 + 40) + (64 + 6 + 96) + 80
    assert (dense.attention.head_dim, dense.attention.v_head_dim, dense.attention.rope_head_dim) == (5, 5, 2)
    assert isinstance(dense.ffn, Mlp) and dense.ffn.params == 3 * 8 * 10
    # 4 routed + 1 shared expert of 3 matrices 8x3, router 8x4, score-correction bias 4
    assert isinstance(sparse.ffn, Moe) and sparse.ffn.params == 4 * 72 + 72 + 32 + 4
    assert sparse.ffn.shared_ffn == 3
    assert m.params == (322 + 240 + 16) + (322 + 396 + 16) + 88 + 88 + 8
    assert m.active_params == (322 + 240 + 16) + (322 + 2 * 72 + 72 + 32 + 16) + 88 + 88 + 8


# (preset, published total, published active, relative tolerance); sources in each test id's comment
PUBLISHED = [
    ("llama3.1-8b", 8.03e9, None, 5e-4),  # Llama 3.1 model card
    ("llama3.1-70b", 70.6e9, None, 1e-3),  # 70.55B: 70.6 to 3 significant figures
    ("llama3.1-405b", 405.9e9, None, 5e-4),  # 405,853M, HF safetensors metadata
    ("nemotron4-340b", 341e9, None, 2e-3),  # arXiv:2406.11704, incl. embeddings
    ("deepseek-v3", 671e9, 37e9, 2e-2),  # arXiv:2412.19437: 671B total, 37B activated
    ("mixtral-8x7b", 46.7e9, 12.9e9, 2e-3),  # Mixtral paper / Mistral blog
    ("qwen3-30b-a3b", 30.5e9, 3.3e9, 2e-2),  # Qwen3 model card
    ("qwen3-235b-a22b", 235e9, 22e9, 1e-2),
    ("llama2-7b", 6.74e9, None, 1e-3),  # HF safetensors metadata (6,738M)
    ("qwen2.5-7b", 7.61e9, None, 1e-3),  # Qwen2.5 model card: 7.61B
    ("qwen2.5-72b", 72.7e9, None, 1e-3),  # Qwen2.5 model card: 72.7B
]


@pytest.mark.parametrize(("preset", "total", "active", "rel"), PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_preset_matches_published_parameter_count(preset, total, active, rel):
    m = load_model(preset)
    assert m.params == pytest.approx(total, rel=rel)
    assert m.active_params == pytest.approx(active or total, rel=rel)


def test_gpt3_175b_within_published_range():
    assert 174.6e9 <= load_model("gpt3-175b").params <= 175.2e9  # Brown et al. 2020


def test_gpt_oss_120b_matches_model_card():
    m = load_model("gpt-oss-120b")
    assert m.params == pytest.approx(116.83e9, rel=1e-4)
    # the model card counts the unembedding but not the embedding lookup as active
    active = m.active_params - m.module("language").embedding_params
    assert active == pytest.approx(5.13e9, rel=2e-3)
    windows = [layer.attention.window for layer in m.module("language").layers]
    assert windows[:4] == [128, 0, 128, 0] and windows.count(128) == 18


def test_deepseek_v3_layer_structure():
    layers = load_model("deepseek-v3").module("language").layers
    assert len(layers) == 61  # the MTP module is not counted
    assert [layer.is_moe for layer in layers[:4]] == [False, False, False, True]
    a, moe = layers[3].attention, layers[3].ffn
    assert (a.head_dim, a.v_head_dim, a.rope_head_dim) == (192, 128, 64)
    assert (a.q_lora_rank, a.kv_lora_rank) == (1536, 512)
    assert (moe.experts, moe.top_k, moe.expert_ffn, moe.shared_ffn) == (256, 8, 2048, 2048)


def test_megatron_1t_matches_sc21_table():
    m = load_model("megatron-1t")
    assert m.params == pytest.approx(1008e9, rel=1e-3)  # Narayanan et al. SC21 Table 1: 1008B


def test_family_conventions():
    nemotron = load_model("nemotron4-15b").module("language").layers[0].ffn
    assert isinstance(nemotron, Mlp) and not nemotron.gated and nemotron.activation == "relu2"
    qwen3 = load_model("qwen3-30b-a3b").module("language").layers[0].attention
    assert qwen3.params == 2048 * 4096 * 2 + 2 * 2048 * 512 + 2 * 128  # q, o, k, v, q/k norms
    qwen25 = load_model("qwen2.5-7b").module("language").layers[0].attention
    assert qwen25.bias and qwen25.window == 0  # use_sliding_window is false
    assert not load_model("llama3.1-8b").module("language").tied_embeddings


def test_mistral_window_only_when_shorter_than_context():
    def window(sliding):
        cfg = {**TINY_LLAMA, "model_type": "mistral", "max_position_embeddings": 32,
               "sliding_window": sliding}
        return model_from_hf_config(cfg, "m").module("language").layers[0].attention.window

    assert (window(8), window(32), window(None)) == (8, 0, 0)


def test_every_preset_loads_and_names_its_source():
    names = preset_names()
    assert len(names) >= 21 and "grok-1" in names
    for name in names:
        m = load_model(name)
        assert m.name == name and m.params > 0
        text = (FRONTENDS / "presets" / f"{name}.json").read_text()
        assert json.loads(text)["_source"]


def test_load_model_reads_a_config_file_and_its_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_LLAMA))
    assert load_model(str(tmp_path / "config.json")).params == 8656
    assert load_model(str(tmp_path)).source == str(tmp_path / "config.json")


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ({**TINY_LLAMA, "model_type": "bert"}, "model_type='bert' is not supported; use one of"),
        ({k: v for k, v in TINY_LLAMA.items() if k != "hidden_size"}, "no 'hidden_size'"),
        ({**TINY_LLAMA, "num_attention_heads": 5}, "num_attention_heads=5 must divide hidden_size=16"),
        ({**TINY_LLAMA, "num_key_value_heads": 3}, "num_key_value_heads=3 must divide num_attention_heads=4"),
        ({**TINY_LLAMA, "hidden_size": "16"}, "hidden_size='16' must be a non-negative integer"),
    ],
    ids=["unsupported-type", "missing-key", "heads-not-dividing-hidden", "kv-not-dividing-heads", "not-int"],
)
def test_bad_config_is_one_line_config_error(cfg, needle):
    with pytest.raises(ConfigError) as e:
        model_from_hf_config(cfg, name="bad")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_sources_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="autoplan catalog models"):
        load_model("llama9-1t")
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text('{"model_type": "llama",')
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_model(str(tmp_path / "broken.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_model(str(tmp_path / "list.json"))
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read"):
        load_model(str(tmp_path / "binary.json"))


def test_frontends_import_no_cost_models_and_do_no_work_on_import():
    for path in FRONTENDS.rglob("*.py"):
        assert "cost_models" not in path.read_text(), path
    probe = "import sys, autoplan.frontends; assert 'onnx' not in sys.modules"
    subprocess.run([sys.executable, "-c", probe], check=True)
