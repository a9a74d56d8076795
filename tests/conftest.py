"""Small fixtures built in code: a fake accelerator and cluster, and a tiny GPT-style model.

Nothing here touches jax, the network or the catalog files, so every cost-model test runs on
numbers a reader can check by hand.
"""

from __future__ import annotations

import pytest

from autoplan.types import Accelerator, Attention, Cluster, FabricTier, Layer, Mlp, ModelGraph, Module

GIB = 2**30


def fake_accelerator(*, hbm_gib: float = 80.0, node: int = 8) -> Accelerator:
    """An H100-shaped chip with round numbers; `hopper` calibration."""
    return Accelerator(
        name=f"fake-{hbm_gib:g}g", vendor="test", generation="hopper",
        peak_flops_per_s={"bf16": 1e15}, hbm_bytes=hbm_gib * GIB, hbm_bytes_per_s=3e12,
        scale_up_bytes_per_s=400e9, scale_up_domain=node, devices_per_node=node, nic_bytes_per_s=50e9,
    )


def fake_cluster(devices: int = 8, *, node: int = 8, leaf: int = 64, hbm_gib: float = 80.0,
                 spine_oversubscription: float = 1.0) -> Cluster:
    """`devices` chips: NVLink-like domains of `node`, a leaf of `leaf` devices, a spine over all."""
    tiers = [FabricTier(name="nvlink", span=node, bytes_per_s=400e9, latency_s=2e-6)]
    if devices > node:
        tiers.append(FabricTier(name="leaf", span=max(leaf, node), bytes_per_s=50e9, latency_s=5e-6))
    if devices > leaf:
        tiers.append(FabricTier(name="spine", span=devices, bytes_per_s=50e9, latency_s=8e-6,
                                oversubscription=spine_oversubscription))
    return Cluster(name=f"fake-{devices}", accelerator=fake_accelerator(hbm_gib=hbm_gib, node=node),
                   devices=devices, tiers=tuple(tiers))


def gpt_layer(hidden: int, heads: int, ffn: int | None = None) -> Layer:
    """A GPT layer without biases: 4h^2 attention weights, 2·h·ffn MLP weights, two norms."""
    ffn = ffn or 4 * hidden
    attention = Attention(hidden=hidden, heads=heads, kv_heads=heads, head_dim=hidden // heads,
                          params=4 * hidden * hidden)
    mlp = Mlp(hidden=hidden, ffn=ffn, gated=False, params=2 * hidden * ffn)
    return Layer(attention=attention, ffn=mlp, norm_params=4 * hidden)


def tiny_gpt(layers: int = 8, hidden: int = 512, heads: int = 8, vocab: int = 1024,
             name: str = "tiny-gpt") -> ModelGraph:
    module = Module(name="language", layers=(gpt_layer(hidden, heads),) * layers, vocab=vocab,
                    embedding_params=vocab * hidden, head_params=vocab * hidden, final_norm_params=2 * hidden)
    return ModelGraph(name=name, modules=(module,), source="tests")


@pytest.fixture
def cluster8() -> Cluster:
    return fake_cluster(8)


@pytest.fixture
def tiny_model() -> ModelGraph:
    return tiny_gpt()
