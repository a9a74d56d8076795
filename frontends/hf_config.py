"""Hugging Face `config.json` -> ModelGraph, one builder per `model_type`.

Every count is the sum of the weight shapes that family's `transformers` modeling file (or,
for grok-1, xai-org/grok-1 `model.py`) creates. `_FAMILIES` at the bottom is the seam: adding
a family means writing one builder and registering it there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from autoplan.errors import ConfigError
from autoplan.types import Attention, Layer, Mlp, Modality, ModelGraph, Module, Moe


@dataclass(frozen=True)
class _Config:
    """A config dict whose lookups fail as one-line ConfigErrors naming the key and the fix."""

    raw: Mapping[str, Any]
    name: str

    @property
    def model_type(self) -> str:
        return str(self.raw.get("model_type", ""))

    def dim(self, key: str, default: int | None = None) -> int:
        value = self.raw.get(key)
        if value is None:
            if default is None:
                raise ConfigError(
                    f"{self.name}: config has no {key!r}, which model_type={self.model_type!r} needs; "
                    f"add it to the config"
                )
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
            raise ConfigError(f"{self.name}: {key}={value!r} must be a non-negative integer; fix the config")
        return int(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key)
        return default if value is None else bool(value)


@dataclass(frozen=True)
class _Heads:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int


# ---------------------------------------------------------------------------------------------
# Blocks shared by the families
# ---------------------------------------------------------------------------------------------


def _heads(c: _Config, hidden: int, heads_key: str = "num_attention_heads",
           kv_key: str = "num_key_value_heads") -> _Heads:
    heads = c.dim(heads_key)
    kv_heads = c.dim(kv_key, default=heads)
    if heads == 0 or kv_heads == 0:
        raise ConfigError(f"{c.name}: {heads_key}={heads}, {kv_key}={kv_heads} must be positive; fix them")
    head_dim = c.dim("head_dim", default=0)
    if not head_dim:
        if hidden % heads:
            raise ConfigError(
                f"{c.name}: {heads_key}={heads} must divide hidden_size={hidden}; fix it or set head_dim"
            )
        head_dim = hidden // heads
    if heads % kv_heads:
        raise ConfigError(f"{c.name}: {kv_key}={kv_heads} must divide {heads_key}={heads}; fix the config")
    return _Heads(hidden=hidden, heads=heads, kv_heads=kv_heads, head_dim=head_dim)


def _gqa(h: _Heads, *, qkv_bias: bool = False, o_bias: bool = False, qk_norm: bool = False,
         window: int = 0, extra: int = 0) -> Attention:
    q, kv = h.heads * h.head_dim, h.kv_heads * h.head_dim
    # q, k, v, o projections: [hidden, q], 2 x [hidden, kv], [q, hidden] (HF modeling_llama)
    params = h.hidden * (q + 2 * kv) + q * h.hidden
    params += (q + 2 * kv if qkv_bias else 0) + (h.hidden if o_bias else 0)
    # Qwen3: one RMSNorm of width head_dim on q and one on k, shared across heads
    params += 2 * h.head_dim if qk_norm else 0
    return Attention(hidden=h.hidden, heads=h.heads, kv_heads=h.kv_heads, head_dim=h.head_dim,
                     window=window, bias=qkv_bias or o_bias, params=params + extra)


def _mlp(hidden: int, ffn: int, *, gated: bool, activation: str, bias: bool = False) -> Mlp:
    mats = 3 if gated else 2
    # gate/up [hidden, ffn] and down [ffn, hidden], biases on each output
    params = mats * hidden * ffn + ((mats - 1) * ffn + hidden if bias else 0)
    return Mlp(hidden=hidden, ffn=ffn, gated=gated, activation=activation, bias=bias, params=params)


def _moe(hidden: int, experts: int, top_k: int, expert_ffn: int, *, shared_ffn: int = 0,
         router_extra: int = 0, expert_bias: bool = False) -> Moe:
    # each expert (and the shared expert) is a SwiGLU MLP; the router a [hidden, experts] linear
    expert = 3 * hidden * expert_ffn + (2 * expert_ffn + hidden if expert_bias else 0)
    params = experts * expert + 3 * hidden * shared_ffn + hidden * experts + router_extra
    return Moe(hidden=hidden, experts=experts, top_k=top_k, expert_ffn=expert_ffn, gated=True,
               shared_ffn=shared_ffn, params=params)


def _language(layers: list[Layer], *, vocab: int, hidden: int, tied: bool, final_norm: int,
              positions: int = 0) -> Module:
    # token embedding [vocab, hidden] (+ learned positions [positions, hidden], GPT-2/3)
    return Module(name="language", modality=Modality.TEXT, layers=tuple(layers), vocab=vocab,
                  embedding_params=(vocab + positions) * hidden, head_params=0 if tied else vocab * hidden,
                  final_norm_params=final_norm, tied_embeddings=tied)


def _sliding(c: _Config, layer: int, default: bool) -> int:
    """Window of `layer`: HF `layer_types` when the config lists them, else the family's rule."""
    types = c.raw.get("layer_types")
    if isinstance(types, list) and layer < len(types):
        default = "sliding" in str(types[layer])
    return c.dim("sliding_window", default=0) if default else 0


# ---------------------------------------------------------------------------------------------
# Dense families
# ---------------------------------------------------------------------------------------------


def _llama_family(c: _Config, *, qkv_bias: bool, qk_norm: bool,
                  window: Callable[[int], bool]) -> Module:
    hidden, n, ffn = c.dim("hidden_size"), c.dim("num_hidden_layers"), c.dim("intermediate_size")
    h = _heads(c, hidden)
    bias = c.flag("attention_bias", False)
    mlp = _mlp(hidden, ffn, gated=True, activation="silu", bias=c.flag("mlp_bias", False))
    layers = [Layer(attention=_gqa(h, qkv_bias=qkv_bias or bias, o_bias=bias, qk_norm=qk_norm,
                                   window=_sliding(c, i, window(i))),
                    ffn=mlp, norm_params=2 * hidden) for i in range(n)]
    return _language(layers, vocab=c.dim("vocab_size"), hidden=hidden,
                     tied=c.flag("tie_word_embeddings", False), final_norm=hidden)


def _mistral_window(c: _Config) -> Callable[[int], bool]:
    # Mistral 7B: sliding window only when shorter than the context it was trained for
    window, positions = c.dim("sliding_window", 0), c.dim("max_position_embeddings", 0)
    return lambda _i: window > 0 and (positions == 0 or window < positions)


def _qwen_window(c: _Config) -> Callable[[int], bool]:
    # Qwen2: layers from max_window_layers on use the window, and only if use_sliding_window
    first = c.dim("max_window_layers", 0)
    return lambda i: c.flag("use_sliding_window", False) and i >= first


def _llama(c: _Config) -> Module:
    return _llama_family(c, qkv_bias=False, qk_norm=False, window=lambda _i: False)


def _mistral(c: _Config) -> Module:
    return _llama_family(c, qkv_bias=False, qk_norm=False, window=_mistral_window(c))


def _qwen2(c: _Config) -> Module:
    return _llama_family(c, qkv_bias=True, qk_norm=False, window=_qwen_window(c))


def _qwen3(c: _Config) -> Module:
    return _llama_family(c, qkv_bias=False, qk_norm=True, window=_qwen_window(c))


def _nemotron(c: _Config) -> Module:
    hidden, n = c.dim("hidden_size"), c.dim("num_hidden_layers")
    bias = c.flag("attention_bias", False)
    attention = _gqa(_heads(c, hidden), qkv_bias=bias, o_bias=bias)
    # Nemotron-4 (arXiv:2402.16819): squared-ReLU, non-gated MLP; LayerNorm1P with bias
    mlp = _mlp(hidden, c.dim("intermediate_size"), gated=False, activation="relu2",
               bias=c.flag("mlp_bias", False))
    layers = [Layer(attention=attention, ffn=mlp, norm_params=2 * 2 * hidden)] * n
    return _language(layers, vocab=c.dim("vocab_size"), hidden=hidden,
                     tied=c.flag("tie_word_embeddings", False), final_norm=2 * hidden)


def _gpt2(c: _Config) -> Module:
    hidden, n = c.dim("n_embd"), c.dim("n_layer")
    h = _heads(c, hidden, heads_key="n_head", kv_key="n_head")
    # GPT-2/3: fused c_attn + c_proj with biases, 4h GELU MLP with biases, LayerNorm with bias
    attention = _gqa(h, qkv_bias=True, o_bias=True)
    mlp = _mlp(hidden, c.dim("n_inner", default=0) or 4 * hidden, gated=False, activation="gelu", bias=True)
    layers = [Layer(attention=attention, ffn=mlp, norm_params=2 * 2 * hidden)] * n
    return _language(layers, vocab=c.dim("vocab_size"), hidden=hidden,
                     tied=c.flag("tie_word_embeddings", True), final_norm=2 * hidden,
                     positions=c.dim("n_positions"))


def _gpt_neox(c: _Config) -> Module:
    hidden, n = c.dim("hidden_size"), c.dim("num_hidden_layers")
    bias = c.flag("attention_bias", True)
    attention = _gqa(_heads(c, hidden), qkv_bias=bias, o_bias=bias)
    mlp = _mlp(hidden, c.dim("intermediate_size"), gated=False, activation="gelu", bias=True)
    layers = [Layer(attention=attention, ffn=mlp, norm_params=2 * 2 * hidden)] * n
    return _language(layers, vocab=c.dim("vocab_size"), hidden=hidden,
                     tied=c.flag("tie_word_embeddings", False), final_norm=2 * hidden)


# ---------------------------------------------------------------------------------------------
# Mixture-of-experts families
# ---------------------------------------------------------------------------------------------


def _mixtral(c: _Config) -> Module:
    hidden, n = c.dim("hidden_size"), c.dim("num_hidden_layers")
    moe = _moe(hidden, c.dim("num_local_experts"), c.dim("num_experts_per_tok"), c.dim("intermediate_size"))
    window = _mistral_window(c)
    layers = [Layer(attention=_gqa(_heads(c, hidden), window=_sliding(c, i, window(i))), ffn=moe,
                    norm_params=2 * hidden) for i in range(n)]
    return _language(layers, vocab=c.dim("vocab_size"), hidden=hidden,
                     tied=c.flag("tie_word_embeddings", False), final_norm=hidden)


def _qwen_moe_family(c: _Config, *, qkv_bias: bool, qk_norm: bool, shared: bool) -> Module:
    hidden, n = c.dim("hidden_size"), c.dim("num_hidden_layers")
    h, window = _heads(c, hidden), _qwen_window(c)
    experts, step = c.dim("num_experts"), c.dim("decoder_sparse_step", 1) or 1
    dense_only = set(c.raw.get("mlp_only_layers") or ())
    shared_ffn = c.dim("shared_expert_intermediate_size") if shared else 0
    # Qwen2-MoE gates its shared expert with a [hidden, 1] sigmoid gate
    moe = _moe(hidden, experts, c.dim("num_experts_per_tok"), c.dim("moe_intermediate_size"),
               shared_ffn=shared_ffn, router_extra=hidden if shared else 0)
    layers = []
    for i in range(n):
        sparse = experts > 0 and i not in dense_only and (i + 1) % step == 0
        ffn = moe if sparse else _mlp(hidden, c.dim("intermediate_size"), gated=True, activation="silu")
        attention = _gqa(h, qkv_bias=qkv_bias or c.flag("attention_bias", False), qk_norm=qk_norm,
                         window=_sliding(c, i, window(i)))
        layers.append(Layer(attention=attention, ffn=ffn, norm_params=2 * hidden))
    return _language(layers, vocab=c.dim("vocab_size"), hidden=hidden,
                     tied=c.flag("tie_word_embeddings", False), final_norm=hidden)


def _qwen2_moe(c: _Config) -> Module:
    return _qwen_moe_family(c, qkv_bias=True, qk_norm=False, shared=True)


def _qwen3_moe(c: _Config) -> Module:
    return _qwen_moe_family(c, qkv_bias=False, qk_norm=True, shared=False)


def _mla(c: _Config, hidden: int) -> Attention:
    heads = c.dim("num_attention_heads")
    q_lora, kv_lora = c.dim("q_lora_rank", 0), c.dim("kv_lora_rank")
    nope, rope, v = c.dim("qk_nope_head_dim"), c.dim("qk_rope_head_dim"), c.dim("v_head_dim")
    qk = nope + rope
    # MLA (DeepSeek-V2 paper §2.1; HF modeling_deepseek_v3): q_a, q_a_norm, q_b | q_proj
    q = hidden * q_lora + q_lora + q_lora * heads * qk if q_lora else hidden * heads * qk
    # kv_a (latent + shared rope key), kv_a_norm, kv_b (per-head nope key and value), o_proj
    kv = hidden * (kv_lora + rope) + kv_lora + kv_lora * heads * (nope + v)
    bias = c.flag("attention_bias", False)
    extra = (q_lora + kv_lora + rope + hidden) if bias else 0
    return Attention(hidden=hidden, heads=heads, kv_heads=heads, head_dim=qk, v_head_dim=v,
                     q_lora_rank=q_lora, kv_lora_rank=kv_lora, rope_head_dim=rope, bias=bias,
                     params=q + kv + heads * v * hidden + extra)


def _deepseek(c: _Config) -> Module:
    # num_hidden_layers excludes the multi-token-prediction layers (num_nextn_predict_layers)
    hidden, n = c.dim("hidden_size"), c.dim("num_hidden_layers")
    experts, ffn = c.dim("n_routed_experts", 0), c.dim("moe_intermediate_size", 0)
    first_moe, freq = c.dim("first_k_dense_replace", 0), c.dim("moe_layer_freq", 1) or 1
    # DeepSeek-V3 routes with a per-expert score-correction bias (topk_method noaux_tc)
    correction = experts if c.raw.get("topk_method") == "noaux_tc" else 0
    moe = _moe(hidden, experts, c.dim("num_experts_per_tok"), ffn,
               shared_ffn=c.dim("n_shared_experts", 0) * ffn, router_extra=correction) if experts else None
    if moe is not None and c.dim("topk_group", 0):  # node-limited routing (DeepSeek-V3 §2.1.2)
        moe = replace(moe, route_groups=c.dim("topk_group"))
    dense = _mlp(hidden, c.dim("intermediate_size"), gated=True, activation="silu")
    attention = _mla(c, hidden)
    layers = [Layer(attention=attention, norm_params=2 * hidden,
                    ffn=moe if moe and i >= first_moe and i % freq == 0 else dense) for i in range(n)]
    return _language(layers, vocab=c.dim("vocab_size"), hidden=hidden,
                     tied=c.flag("tie_word_embeddings", False), final_norm=hidden)


def _gpt_oss(c: _Config) -> Module:
    hidden, n = c.dim("hidden_size"), c.dim("num_hidden_layers")
    h, experts = _heads(c, hidden), c.dim("num_local_experts")
    top_k = c.dim("num_experts_per_tok", default=c.dim("experts_per_token", default=0))
    # gpt-oss model card: experts and router carry biases; one learned attention sink per head
    moe = _moe(hidden, experts, top_k, c.dim("intermediate_size"), router_extra=experts, expert_bias=True)
    layers = [Layer(attention=_gqa(h, qkv_bias=True, o_bias=True, extra=h.heads,
                                   window=_sliding(c, i, i % 2 == 0)),
                    ffn=moe, norm_params=2 * hidden) for i in range(n)]
    return _language(layers, vocab=c.dim("vocab_size"), hidden=hidden,
                     tied=c.flag("tie_word_embeddings", False), final_norm=hidden)


def _grok1(c: _Config) -> Module:
    hidden, n = c.dim("hidden_size"), c.dim("num_hidden_layers")
    moe = _moe(hidden, c.dim("num_experts"), c.dim("num_experts_per_tok"), c.dim("intermediate_size"))
    # xai-org/grok-1 model.py: RMSNorm before and after both attention and MoE (four per layer)
    layers = [Layer(attention=_gqa(_heads(c, hidden)), ffn=moe, norm_params=4 * hidden)] * n
    return _language(layers, vocab=c.dim("vocab_size"), hidden=hidden,
                     tied=c.flag("tie_word_embeddings", True), final_norm=hidden)


_FAMILIES: dict[str, Callable[[_Config], Module]] = {
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "nemotron": _nemotron,
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
    "mixtral": _mixtral,
    "qwen2_moe": _qwen2_moe,
    "qwen3_moe": _qwen3_moe,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "gpt_oss": _gpt_oss,
    "grok1": _grok1,
}


def supported_model_types() -> list[str]:
    return sorted(_FAMILIES)


def model_from_hf_config(cfg: dict, name: str, source: str = "") -> ModelGraph:
    """Build the language module of a Hugging Face-style config dict."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{name}: a config must be a JSON object, got {type(cfg).__name__}; fix the file")
    c = _Config(raw=cfg, name=name)
    build = _FAMILIES.get(c.model_type)
    if build is None:
        raise ConfigError(
            f"{name}: model_type={c.model_type!r} is not supported; use one of "
            f"{', '.join(supported_model_types())}"
        )
    return ModelGraph(name=name, modules=(build(c),), source=source or name)
