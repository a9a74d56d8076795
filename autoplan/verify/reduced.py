"""A reduced model: the language module's block structure at a size a CPU can train in seconds.

The reduced model keeps what decides how a plan shards the model — the GQA ratio, gated or plain
MLP, MoE routing (top-k, shared experts) — and shrinks everything else, so that every plan degree
still divides its axis. `reference_loss` is the single-device fp32 model every sharded step is
compared against; it is written as plainly as possible (no collectives, dense MoE).
"""

from __future__ import annotations

import math
from typing import Any

from autoplan.errors import ConfigError
from autoplan.types import Attention, Layer, Mlp, ModelGraph, Module, Moe, Strategy, value

HIDDEN = 64
HEAD_DIM = 8
FFN = 128
VOCAB = 256
SEQ = 32
EXPERTS = 8
NORM_EPS = 1e-6
ROPE_BASE = 10000.0
SEED = 0

Params = dict[str, Any]


@value
class ReducedConfig:
    """Sizes of the reduced model and the batch one verification step trains on."""

    layers: int
    hidden: int = HIDDEN
    heads: int
    kv_heads: int
    head_dim: int = HEAD_DIM
    ffn: int = FFN
    gated: bool
    vocab: int = VOCAB
    seq: int = SEQ
    experts: int = 0  # 0: dense MLP layers
    top_k: int = 0
    shared_ffn: int = 0
    micro_batches: int  # per data-parallel replica
    mbs: int
    dp: int

    @property
    def batch(self) -> int:
        return self.dp * self.micro_batches * self.mbs

    @property
    def is_moe(self) -> bool:
        return self.experts > 0


def _reduced_heads(att: Attention, tp: int) -> tuple[int, int]:
    """Smallest GQA layout that keeps heads/kv_heads and lets tp split the KV heads."""
    if att.heads % tp or att.kv_heads % tp:
        raise ConfigError(f"tp={tp} must divide heads={att.heads} and kv_heads={att.kv_heads}; "
                          "Megatron splits whole query groups, pick a tp that divides both")
    ratio = att.heads // att.kv_heads
    kv = tp * math.ceil(min(att.kv_heads, 2) / tp)
    return kv * ratio, kv


def _reduced_experts(moe: Moe, s: Strategy) -> int:
    experts = max(EXPERTS, s.ep, moe.top_k)
    experts = s.ep * math.ceil(experts / s.ep)
    return min(experts, moe.experts) if moe.experts % s.ep == 0 and moe.experts >= s.ep else experts


def _check_strategy(s: Strategy, moe: bool) -> None:
    if s.etp != 1:
        raise ConfigError(f"etp={s.etp}: verify runs experts unsplit; use etp=1")
    if s.ep > 1 and not moe:
        raise ConfigError(f"ep={s.ep} needs a MoE model; this one is dense, use ep=1")
    if s.ep > 1 and s.dp % s.ep:
        raise ConfigError(f"ep={s.ep} must divide dp={s.dp} for verify (experts carved out of dp only)")
    if SEQ % (s.cp * (s.tp if s.sp else 1)):
        raise ConfigError(f"cp={s.cp} x tp={s.tp} (sp) must divide the reduced sequence {SEQ}")


def reduce_model(model: ModelGraph, s: Strategy) -> ReducedConfig:
    """The reduced configuration of `model`'s language module under strategy `s`."""
    module = model.module("language") if any(m.name == "language" for m in model.modules) else model.modules[0]
    moe_layers = [layer.ffn for layer in module.layers if isinstance(layer.ffn, Moe)]
    ffn = moe_layers[0] if moe_layers else module.layers[0].ffn
    _check_strategy(s, bool(moe_layers))
    heads, kv = _reduced_heads(module.layers[0].attention, s.tp)
    layers = max(2, s.pp * s.vpp)
    common = dict(layers=layers, heads=heads, kv_heads=kv, gated=ffn.gated,
                  micro_batches=s.pp, mbs=s.mbs, dp=s.dp)
    if isinstance(ffn, Moe):
        shared = FFN if ffn.shared_ffn else 0
        return ReducedConfig(**common, experts=_reduced_experts(ffn, s), top_k=ffn.top_k, shared_ffn=shared)
    return ReducedConfig(**common)


def reduced_graph(cfg: ReducedConfig, name: str = "reduced") -> ModelGraph:
    """The reduced model as a ModelGraph, so the estimator can score it like any other."""
    h, hd = cfg.hidden, cfg.head_dim
    att = Attention(hidden=h, heads=cfg.heads, kv_heads=cfg.kv_heads, head_dim=hd,
                    params=h * hd * (2 * cfg.heads + 2 * cfg.kv_heads))
    mats = 3 if cfg.gated else 2
    if cfg.is_moe:
        ffn: Mlp | Moe = Moe(hidden=h, experts=cfg.experts, top_k=cfg.top_k, expert_ffn=cfg.ffn,
                             gated=cfg.gated, shared_ffn=cfg.shared_ffn,
                             params=mats * h * (cfg.experts * cfg.ffn + cfg.shared_ffn) + h * cfg.experts)
    else:
        ffn = Mlp(hidden=h, ffn=cfg.ffn, gated=cfg.gated, activation="silu", params=mats * h * cfg.ffn)
    layer = Layer(attention=att, ffn=ffn, norm_params=2 * h)
    module = Module(name="language", layers=(layer,) * cfg.layers, vocab=cfg.vocab,
                    embedding_params=cfg.vocab * h, head_params=cfg.vocab * h, final_norm_params=h)
    return ModelGraph(name=name, modules=(module,), source="autoplan.verify")


# ---------------------------------------------------------------------------------------------
# Parameters and data
# ---------------------------------------------------------------------------------------------


def layer_shapes(cfg: ReducedConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer parameter shapes, in model order (the order tensors are compared in)."""
    h, hd, f = cfg.hidden, cfg.head_dim, cfg.ffn
    out: dict[str, tuple[int, ...]] = {
        "ln1": (h,), "wq": (h, cfg.heads * hd), "wk": (h, cfg.kv_heads * hd),
        "wv": (h, cfg.kv_heads * hd), "wo": (cfg.heads * hd, h), "ln2": (h,),
    }
    if not cfg.is_moe:
        out |= {"w1": (h, f), **({"w3": (h, f)} if cfg.gated else {}), "w2": (f, h)}
        return out
    e = cfg.experts
    out |= {"router": (h, e), "e_w1": (e, h, f), **({"e_w3": (e, h, f)} if cfg.gated else {}),
            "e_w2": (e, f, h)}
    if cfg.shared_ffn:
        sf = cfg.shared_ffn
        out |= {"s_w1": (h, sf), **({"s_w3": (h, sf)} if cfg.gated else {}), "s_w2": (sf, h)}
    return out


def init_params(cfg: ReducedConfig) -> Params:
    """Deterministic fp32 init from a fixed key: N(0, 1/fan_in) matrices, ones for norms."""
    import jax
    import jax.numpy as jnp

    keys = iter(jax.random.split(jax.random.key(SEED), 64))

    def dense(shape: tuple[int, ...], fan_in: int) -> jax.Array:
        return jax.random.normal(next(keys), shape, jnp.float32) / math.sqrt(fan_in)

    layers: Params = {}
    for name, shape in layer_shapes(cfg).items():
        full = (cfg.layers, *shape)
        if name.startswith("ln"):
            layers[name] = 1.0 + 0.1 * jax.random.normal(next(keys), full, jnp.float32)
        else:
            layers[name] = dense(full, shape[-2])
    return {"embed": dense((cfg.vocab, cfg.hidden), 1), "layers": layers,
            "final_norm": jnp.ones((cfg.hidden,), jnp.float32), "head": dense((cfg.hidden, cfg.vocab), cfg.hidden)}


def make_batch(cfg: ReducedConfig) -> tuple[Any, Any]:
    """Token ids and next-token targets, [batch, seq] int32, from a fixed key."""
    import jax

    tokens = jax.random.randint(jax.random.key(SEED + 1), (cfg.batch, cfg.seq + 1), 0, cfg.vocab)
    return tokens[:, :-1], tokens[:, 1:]


# ---------------------------------------------------------------------------------------------
# Building blocks shared by the reference and the sharded step
# ---------------------------------------------------------------------------------------------


def rms_norm(x: Any, w: Any) -> Any:
    import jax.numpy as jnp

    return x * jnp.reciprocal(jnp.sqrt(jnp.mean(x * x, axis=-1, keepdims=True) + NORM_EPS)) * w


def rope(x: Any, positions: Any) -> Any:
    """Rotary embedding (Su et al. 2021) on [..., seq, heads, head_dim] at absolute positions."""
    import jax.numpy as jnp

    half = x.shape[-1] // 2
    freq = ROPE_BASE ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle = positions[:, None, None].astype(jnp.float32) * freq
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * jnp.cos(angle) - x2 * jnp.sin(angle),
                            x1 * jnp.sin(angle) + x2 * jnp.cos(angle)], axis=-1)


def ffn_act(h1: Any, h3: Any | None) -> Any:
    import jax

    return jax.nn.silu(h1) * h3 if h3 is not None else jax.nn.gelu(h1)


def route(x: Any, router: Any, top_k: int) -> tuple[Any, Any]:
    """Top-k routing, gates renormalised over the chosen experts (Mixtral)."""
    import jax

    logits = x @ router
    top, idx = jax.lax.top_k(logits, top_k)
    return jax.nn.softmax(top, axis=-1), idx


def token_loss_sum(x: Any, final_norm: Any, head: Any, targets: Any) -> Any:
    """Sum over tokens of the next-token cross-entropy."""
    import jax
    import jax.numpy as jnp

    logits = rms_norm(x, final_norm) @ head
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.take_along_axis(logp, targets[..., None], axis=-1))


# ---------------------------------------------------------------------------------------------
# The single-device reference
# ---------------------------------------------------------------------------------------------


def _ref_attention(x: Any, p: Params, cfg: ReducedConfig) -> Any:
    import jax
    import jax.numpy as jnp

    b, s, _ = x.shape
    pos = jnp.arange(s)
    q = rope((x @ p["wq"]).reshape(b, s, cfg.heads, cfg.head_dim), pos)
    k = rope((x @ p["wk"]).reshape(b, s, cfg.kv_heads, cfg.head_dim), pos)
    v = (x @ p["wv"]).reshape(b, s, cfg.kv_heads, cfg.head_dim)
    rep = cfg.heads // cfg.kv_heads
    k, v = jnp.repeat(k, rep, axis=2), jnp.repeat(v, rep, axis=2)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(cfg.head_dim)
    scores = jnp.where(jnp.tril(jnp.ones((s, s), bool)), scores, -1e30)
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)
    return out.reshape(b, s, -1) @ p["wo"]


def _ref_mlp(x: Any, w1: Any, w3: Any | None, w2: Any) -> Any:
    return ffn_act(x @ w1, x @ w3 if w3 is not None else None) @ w2


def _ref_moe(x: Any, p: Params, cfg: ReducedConfig) -> Any:
    """Every expert on every token, weighted by the (mostly zero) gate: dense and exact."""
    import jax
    import jax.numpy as jnp

    gates, idx = route(x, p["router"], cfg.top_k)
    weight = jnp.sum(jax.nn.one_hot(idx, cfg.experts) * gates[..., None], axis=-2)
    h1 = jnp.einsum("bsh,ehf->ebsf", x, p["e_w1"])
    h3 = jnp.einsum("bsh,ehf->ebsf", x, p["e_w3"]) if "e_w3" in p else None
    y = jnp.einsum("ebsf,efh->ebsh", ffn_act(h1, h3), p["e_w2"])
    out = jnp.einsum("ebsh,bse->bsh", y, weight)
    if "s_w1" in p:
        out = out + _ref_mlp(x, p["s_w1"], p.get("s_w3"), p["s_w2"])
    return out


def _ref_layer(x: Any, p: Params, cfg: ReducedConfig) -> Any:
    x = x + _ref_attention(rms_norm(x, p["ln1"]), p, cfg)
    h = rms_norm(x, p["ln2"])
    return x + (_ref_moe(h, p, cfg) if cfg.is_moe else _ref_mlp(h, p["w1"], p.get("w3"), p["w2"]))


def reference_loss(params: Params, tokens: Any, targets: Any, cfg: ReducedConfig) -> Any:
    """Mean next-token cross-entropy of the whole batch on one device."""
    x = params["embed"][tokens]
    for i in range(cfg.layers):
        x = _ref_layer(x, {k: v[i] for k, v in params["layers"].items()}, cfg)
    return token_loss_sum(x, params["final_norm"], params["head"], targets) / targets.size


def reference_step(params: Params, tokens: Any, targets: Any, cfg: ReducedConfig, lr: float) -> tuple:
    """(loss, grads, updated params) of one SGD step on one device."""
    import jax

    loss, grads = jax.value_and_grad(reference_loss)(params, tokens, targets, cfg)
    return loss, grads, jax.tree.map(lambda p, g: p - lr * g, params, grads)
