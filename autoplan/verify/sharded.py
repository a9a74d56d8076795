"""The plan's training step on a device mesh, every collective written out by hand.

One `shard_map` over a mesh with axes (dp, ep, pp, cp, tp) runs forward, loss, backward and the
SGD update; nothing is left to the SPMD partitioner, so a wrong PartitionSpec or a missing
collective shows up as a numerical difference against the single-device reference.

- DP/ZeRO: batch split over (dp, ep); gradients all-reduced over the axes a tensor is replicated
  on (ZeRO >= 1: reduce-scatter, update the owned slice, all-gather).
- TP: Megatron column-parallel wq/wk/wv/w1/w3 and row-parallel wo/w2 with the `f`/`g` conjugate
  operators (Shoeybi et al. 2019, Fig. 3); SP swaps them for all-gather / reduce-scatter over the
  sequence (Korthikanti et al. 2022, Fig. 5).
- PP: layers stacked [vpp, pp, layers-per-chunk]; micro-batches flow stage to stage by
  `ppermute`. The schedule runs in GPipe order (all forwards, then autodiff's reverse), chunk by
  chunk for vpp > 1; 1F1B and interleaved-1F1B reorder the same per-micro-batch work and
  accumulate the same gradients, so the numbers are the ones the plan's schedule produces.
- CP: ring attention, KV blocks passed around the cp ring, causal mask on global positions and
  an online softmax (Liu et al. 2023); the sequence is split into contiguous chunks.
- EP: experts split over `ep`; tokens dispatched and returned with `all_to_all`, dropless.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from autoplan.types import Recompute, Strategy, value
from autoplan.verify.reduced import Params, ReducedConfig, ffn_act, rms_norm, rope, route, token_loss_sum

AXES = ("dp", "ep", "pp", "cp", "tp")
DATA_AXES = ("dp", "ep")
COLUMN = frozenset({"wq", "wk", "wv", "w1", "w3"})
ROW = frozenset({"wo", "w2"})
EXPERT = frozenset({"e_w1", "e_w3", "e_w2"})
TOP = ("embed", "final_norm", "head")
LR = 0.1


@value
class StepSetup:
    """Everything static the per-device step needs."""

    cfg: ReducedConfig
    strategy: Strategy
    bug: str = ""  # test hook, one of autoplan.verify.BUGS; "wrong-spec" needs dp == tp


def make_mesh(s: Strategy) -> Mesh:
    devices = np.array(jax.devices()[: s.devices]).reshape(s.dp // s.ep, s.ep, s.pp, s.cp, s.tp)
    return Mesh(devices, AXES)


# ---------------------------------------------------------------------------------------------
# Layout: which mesh axis splits which tensor dimension
# ---------------------------------------------------------------------------------------------


def to_stage_layout(params: Params, s: Strategy) -> Params:
    """Layers [L, ...] -> [vpp, pp, L/(pp*vpp), ...]: chunk c of rank r holds layers (c*pp+r)*n..."""
    def split(x: jax.Array) -> jax.Array:
        return x.reshape(s.vpp, s.pp, -1, *x.shape[1:])

    return {**params, "layers": {k: split(v) for k, v in params["layers"].items()}}


def from_stage_layout(params: Params) -> Params:
    def merge(x: jax.Array) -> jax.Array:
        return x.reshape(-1, *x.shape[3:])

    return {**params, "layers": {k: merge(v) for k, v in params["layers"].items()}}


def _layer_spec(name: str, ndim: int, bug: str) -> P:
    dims: list[str | None] = [None] * ndim
    if name in COLUMN:
        dims[-1] = "tp"
    elif name in ROW:
        dims[-2] = "dp" if (bug == "wrong-spec" and name == "w2") else "tp"
    elif name in EXPERT:
        dims[0] = "ep"
    return P(None, "pp", None, *dims)


def param_specs(params: Params, bug: str = "") -> Params:
    layers = {k: _layer_spec(k, v.ndim - 3, bug) for k, v in params["layers"].items()}
    return {"embed": P(), "layers": layers, "final_norm": P(), "head": P()}


def reduce_axes(name: str, s: Strategy) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(data-parallel axes, other axes) a gradient is summed over: every axis on which the tensor
    is replicated but its devices saw different tokens."""
    if name in TOP:
        return DATA_AXES, ("cp", "pp")
    seq_split_tp = ("tp",) if s.sp and name not in COLUMN | ROW else ()
    data = ("dp",) if name in EXPERT else DATA_AXES
    return data, ("cp", *seq_split_tp)


# ---------------------------------------------------------------------------------------------
# Megatron's conjugate operators: a collective in forward and its adjoint in backward
# ---------------------------------------------------------------------------------------------


def _conjugate(fwd: Any, bwd: Any) -> Any:
    @jax.custom_vjp
    def op(x: jax.Array) -> jax.Array:
        return fwd(x)

    op.defvjp(lambda x: (fwd(x), None), lambda _, g: (bwd(g),))
    return op


def _identity(x: jax.Array) -> jax.Array:
    return x


def _psum_tp(x: jax.Array) -> jax.Array:
    return jax.lax.psum(x, "tp")


def _gather_seq(x: jax.Array) -> jax.Array:
    return jax.lax.all_gather(x, "tp", axis=x.ndim - 2, tiled=True)


def _scatter_seq(x: jax.Array) -> jax.Array:
    return jax.lax.psum_scatter(x, "tp", scatter_dimension=x.ndim - 2, tiled=True)


def _split_seq(x: jax.Array) -> jax.Array:
    n = x.shape[-2] // jax.lax.axis_size("tp")
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index("tp") * n, n, axis=x.ndim - 2)


tp_f = _conjugate(_identity, _psum_tp)  # enter a TP region: copy forward, all-reduce backward
tp_g = _conjugate(_psum_tp, _identity)  # leave a TP region: all-reduce forward, copy backward
sp_enter = _conjugate(_gather_seq, _scatter_seq)  # SP -> TP: all-gather seq / reduce-scatter
sp_exit = _conjugate(_scatter_seq, _gather_seq)  # TP -> SP: reduce-scatter seq / all-gather
sp_split = _conjugate(_split_seq, _gather_seq)  # replicated -> SP (after the embedding)
sp_unsplit = _conjugate(_gather_seq, _split_seq)  # SP -> replicated (before the LM head)


# ---------------------------------------------------------------------------------------------
# Blocks, as one device runs them
# ---------------------------------------------------------------------------------------------


def ring_attention(q: jax.Array, k: jax.Array, v: jax.Array, cp: int) -> jax.Array:
    """Causal attention of this rank's query chunk against every KV chunk of the cp ring.

    q [b, s, h, d], k/v [b, s, kv, d]: the local contiguous sequence chunk. KV blocks move one
    rank round the ring per step; an online softmax (Milakov & Gimelshein 2018) merges them.
    """
    b, s, h, d = q.shape
    rank = jax.lax.axis_index("cp")
    q_pos = rank * s + jnp.arange(s)
    m = jnp.full((b, h, s), -1e30, q.dtype)
    denom = jnp.zeros((b, h, s), q.dtype)
    acc = jnp.zeros((b, h, s, d), q.dtype)
    rep = h // k.shape[2]
    for step in range(cp):
        k_pos = ((rank - step) % cp) * s + jnp.arange(s)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, jnp.repeat(k, rep, axis=2)) / math.sqrt(d)
        scores = jnp.where(q_pos[:, None] >= k_pos[None, :], scores, -1e30)
        m_new = jax.lax.stop_gradient(jnp.maximum(m, scores.max(axis=-1)))  # exact: any shift cancels
        prob = jnp.exp(scores - m_new[..., None])
        corr = jnp.exp(m - m_new)
        denom = denom * corr + prob.sum(axis=-1)
        acc = acc * corr[..., None] + jnp.einsum("bhqk,bkhd->bhqd", prob, jnp.repeat(v, rep, axis=2))
        m = m_new
        if step < cp - 1:
            ring = [(i, (i + 1) % cp) for i in range(cp)]
            k, v = jax.lax.ppermute((k, v), "cp", ring)
    return jnp.einsum("bhqd->bqhd", acc / denom[..., None]).reshape(b, s, h * d)


def _tp_region(setup: StepSetup) -> tuple[Any, Any]:
    return (sp_enter, sp_exit) if setup.strategy.sp else (tp_f, tp_g)


def attention_block(x: jax.Array, p: Params, setup: StepSetup) -> jax.Array:
    cfg, s = setup.cfg, setup.strategy
    enter, leave = _tp_region(setup)
    h = enter(x)
    b, n, _ = h.shape
    pos = jax.lax.axis_index("cp") * n + jnp.arange(n)
    heads, kv = cfg.heads // s.tp, cfg.kv_heads // s.tp
    q = rope((h @ p["wq"]).reshape(b, n, heads, cfg.head_dim), pos)
    k = rope((h @ p["wk"]).reshape(b, n, kv, cfg.head_dim), pos)
    v = (h @ p["wv"]).reshape(b, n, kv, cfg.head_dim)
    core = functools.partial(ring_attention, cp=s.cp)
    if s.recompute == Recompute.SELECTIVE:
        core = jax.checkpoint(core)
    return leave(core(q, k, v) @ p["wo"])


def mlp_block(x: jax.Array, p: Params, setup: StepSetup) -> jax.Array:
    enter, leave = _tp_region(setup)
    h = enter(x)
    return leave(ffn_act(h @ p["w1"], h @ p["w3"] if "w3" in p else None) @ p["w2"])


def _dispatch_masks(idx: jax.Array, experts: int, capacity: int) -> tuple[jax.Array, jax.Array]:
    """One-hot expert [A, E] and slot-in-expert [A, C] of each (token, choice) assignment."""
    onehot_e = jax.nn.one_hot(idx.reshape(-1), experts, dtype=jnp.float32)
    slot = jnp.sum((jnp.cumsum(onehot_e, axis=0) - 1) * onehot_e, axis=-1).astype(jnp.int32)
    return onehot_e, jax.nn.one_hot(slot, capacity, dtype=jnp.float32)


def moe_block(x: jax.Array, p: Params, setup: StepSetup) -> jax.Array:
    """Top-k MoE with experts split over `ep`: all-to-all out, expert FFN, all-to-all back."""
    cfg, ep = setup.cfg, setup.strategy.ep
    tokens = x.reshape(-1, x.shape[-1])
    t, hid = tokens.shape
    gates, idx = route(tokens, p["router"], cfg.top_k)
    onehot_e, onehot_c = _dispatch_masks(idx, cfg.experts, t)  # capacity t: dropless
    assigned = jnp.repeat(tokens, cfg.top_k, axis=0)
    buf = jnp.einsum("ae,ac,ah->ech", onehot_e, onehot_c, assigned).reshape(ep, -1, t, hid)
    buf = jax.lax.all_to_all(buf, "ep", 0, 0)  # [source rank, local experts, slot, hidden]
    h1 = jnp.einsum("sech,ehf->secf", buf, p["e_w1"])
    h3 = jnp.einsum("sech,ehf->secf", buf, p["e_w3"]) if "e_w3" in p else None
    out = jnp.einsum("secf,efh->sech", ffn_act(h1, h3), p["e_w2"])
    out = jax.lax.all_to_all(out, "ep", 0, 0).reshape(cfg.experts, t, hid)
    per_choice = jnp.einsum("ech,ae,ac->ah", out, onehot_e, onehot_c).reshape(t, cfg.top_k, hid)
    y = jnp.einsum("tkh,tk->th", per_choice, gates)
    if "s_w1" in p:
        y = y + ffn_act(tokens @ p["s_w1"], tokens @ p["s_w3"] if "s_w3" in p else None) @ p["s_w2"]
    return y.reshape(x.shape)


def layer(x: jax.Array, p: Params, setup: StepSetup) -> jax.Array:
    x = x + attention_block(rms_norm(x, p["ln1"]), p, setup)
    ffn = moe_block if setup.cfg.is_moe else mlp_block
    return x + ffn(rms_norm(x, p["ln2"]), p, setup)


# ---------------------------------------------------------------------------------------------
# Pipeline and the per-device step
# ---------------------------------------------------------------------------------------------


def _run_chunk(x: jax.Array, chunk: Params, setup: StepSetup) -> jax.Array:
    body = functools.partial(layer, setup=setup)
    if setup.strategy.recompute == Recompute.FULL:
        body = jax.checkpoint(body)
    for i in range(next(iter(chunk.values())).shape[0]):
        x = body(x, {k: v[i] for k, v in chunk.items()})
    return x


def pipeline(inputs: jax.Array, chunk: Params, setup: StepSetup) -> jax.Array:
    """Micro-batches [M, ...] through one chunk of every stage; valid on the last stage."""
    pp, m = setup.strategy.pp, inputs.shape[0]
    stage = jax.lax.axis_index("pp")
    carry = jnp.zeros_like(inputs[0])
    outs = []
    for t in range(m + pp - 1):
        x = jnp.where(stage == 0, inputs[min(t, m - 1)], carry)
        y = _run_chunk(x, chunk, setup)
        if t >= pp - 1:
            outs.append(y)
        if t < m + pp - 2:
            carry = jax.lax.ppermute(y, "pp", [(i, i + 1) for i in range(pp - 1)])
    return jnp.stack(outs)


def device_loss(params: Params, tokens: jax.Array, targets: jax.Array, setup: StepSetup) -> jax.Array:
    """This device's share of the mean loss: nonzero on the last stage only."""
    cfg, s = setup.cfg, setup.strategy
    toks = tokens.reshape(cfg.micro_batches, cfg.mbs, -1)
    x = params["embed"][toks]
    if s.sp:
        x = sp_split(x)
    for c in range(s.vpp):
        chunk = {k: v[c, 0] for k, v in params["layers"].items()}
        x = pipeline(x, chunk, setup)
        if c < s.vpp - 1:
            x = jax.lax.ppermute(x, "pp", [(s.pp - 1, 0)])  # back to stage 0 for the next chunk
    if s.sp:
        x = sp_unsplit(x)
    loss = token_loss_sum(x, params["final_norm"], params["head"], targets.reshape(toks.shape))
    last = jax.lax.axis_index("pp") == s.pp - 1
    return jnp.where(last, loss, 0.0) / (cfg.batch * cfg.seq)


def _reduce(g: jax.Array, p: jax.Array, name: str, setup: StepSetup) -> tuple[jax.Array, jax.Array]:
    """All-reduce a gradient and apply SGD; ZeRO >= 1 reduce-scatters and updates one slice."""
    data, other = reduce_axes(name, setup.strategy)
    if setup.bug == "drop-allreduce" and name == "wo":
        data = ()
    g = jax.lax.psum(g, other) if other else g
    if setup.strategy.zero == 0 or not data:
        g = jax.lax.psum(g, data) if data else g
        return g, p - LR * g
    n = math.prod(jax.lax.axis_size(a) for a in data)
    pad = -g.size % n
    flat_g = jnp.pad(g.reshape(-1), (0, pad))
    g_own = jax.lax.psum_scatter(flat_g, data, tiled=True)
    p_own = jax.lax.dynamic_slice_in_dim(jnp.pad(p.reshape(-1), (0, pad)),
                                         jax.lax.axis_index(data) * g_own.size, g_own.size)
    gather = functools.partial(jax.lax.all_gather, axis_name=data, tiled=True)
    unpad = lambda a: a[: g.size].reshape(g.shape)  # noqa: E731
    return unpad(gather(g_own)), unpad(gather(p_own - LR * g_own))


def device_step(params: Params, tokens: jax.Array, targets: jax.Array, setup: StepSetup) -> tuple:
    loss, grads = jax.value_and_grad(device_loss)(params, tokens, targets, setup)
    loss = jax.lax.psum(loss, (*DATA_AXES, "cp", "pp"))
    new_grads: Params = {"layers": {}}
    new_params: Params = {"layers": {}}
    for name in TOP:
        new_grads[name], new_params[name] = _reduce(grads[name], params[name], name, setup)
    for name, g in grads["layers"].items():
        new_grads["layers"][name], new_params["layers"][name] = _reduce(g, params["layers"][name], name, setup)
    return loss, new_grads, new_params


def sharded_step(params: Params, tokens: jax.Array, targets: jax.Array, setup: StepSetup) -> tuple:
    """Jitted step on the plan's mesh, and the compiled executable (for XLA's cost analysis).

    Returns (loss, grads, updated params, compiled) with grads/params in the reference layout.
    """
    mesh = make_mesh(setup.strategy)
    staged = to_stage_layout(params, setup.strategy)
    specs = param_specs(staged, setup.bug)
    data_spec = P(DATA_AXES, "cp")
    step = jax.jit(jax.shard_map(
        functools.partial(device_step, setup=setup), mesh=mesh, in_specs=(specs, data_spec, data_spec),
        out_specs=(P(), specs, specs), check_vma=False))
    place = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))  # noqa: E731
    args = (jax.tree.map(place, staged, specs), place(tokens, data_spec), place(targets, data_spec))
    compiled = step.lower(*args).compile()
    loss, grads, new = compiled(*args)
    return loss, from_stage_layout(grads), from_stage_layout(new), compiled
