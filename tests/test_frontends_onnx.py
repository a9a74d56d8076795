"""ONNX frontend: tiny transformers built with onnx.helper, every weight counted by hand."""

import numpy as np
import pytest
from onnx import helper, numpy_helper, save

from autoplan.errors import ConfigError
from autoplan.frontends import load_model
from autoplan.frontends.onnx_graph import model_from_onnx

HIDDEN, FFN, VOCAB = 64, 256, 100


class _Graph:
    """Collects initializers and the nodes that read them."""

    def __init__(self, anonymous: bool = False):
        self.inits, self.nodes, self.anonymous = [], [], anonymous

    def weight(self, name: str, shape: tuple[int, ...], op: str = "MatMul") -> None:
        init = f"onnx::{op}_{len(self.inits)}" if self.anonymous and op == "MatMul" else name
        self.inits.append(numpy_helper.from_array(np.zeros(shape, np.float32), init))
        node = "/" + name.rsplit(".", 1)[0].replace(".", "/") + f"/{op}"
        self.nodes.append(helper.make_node(op, ["x", init], [f"{node}_out"], name=node))

    def shape_constant(self, name: str) -> None:
        """An int64 initializer (a Reshape target): not a weight."""
        self.inits.append(numpy_helper.from_array(np.array([1, -1, 16], np.int64), name))
        self.nodes.append(helper.make_node("Reshape", ["x", name], [name + "_out"]))

    def save(self, path, heads: int = 0):
        if heads:
            self.nodes.append(helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"],
                                               domain="com.microsoft", num_heads=heads))
        graph = helper.make_graph(self.nodes, "tiny", [], [], initializer=self.inits)
        save(helper.make_model(graph), str(path))
        return path


def _gpt_like(path, heads: int = 4):
    """2 layers, hidden 64: biased q/k/v/o, LayerNorms with bias, GELU MLP 64->256->64, untied head."""
    g = _Graph()
    g.weight("model.embed_tokens.weight", (VOCAB, HIDDEN), op="Gather")
    for i in range(2):
        p = f"model.layers.{i}."
        for norm in ("input_layernorm", "post_attention_layernorm"):
            g.weight(p + norm + ".weight", (HIDDEN,), op="LayerNormalization")
            g.weight(p + norm + ".bias", (HIDDEN,), op="LayerNormalization")
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            g.weight(p + f"self_attn.{proj}.weight", (HIDDEN, HIDDEN))
            g.weight(p + f"self_attn.{proj}.bias", (HIDDEN,), op="Add")
        g.shape_constant(p + "self_attn.split_heads_shape")
        g.weight(p + "mlp.fc1.weight", (HIDDEN, FFN))
        g.weight(p + "mlp.fc1.bias", (FFN,), op="Add")
        g.weight(p + "mlp.fc2.weight", (FFN, HIDDEN))
        g.weight(p + "mlp.fc2.bias", (HIDDEN,), op="Add")
    g.weight("model.norm.weight", (HIDDEN,), op="LayerNormalization")
    g.weight("model.norm.bias", (HIDDEN,), op="LayerNormalization")
    g.weight("lm_head.weight", (HIDDEN, VOCAB))
    return g.save(path, heads=heads)


def _llama_like(path, experts: int = 0):
    """2 layers, hidden 64, GQA (k/v 32 wide), SwiGLU, RMSNorm, tied, MatMul weights unnamed."""
    g = _Graph(anonymous=True)
    g.weight("model.embed_tokens.weight", (VOCAB, HIDDEN), op="Gather")
    for i in range(2):
        p = f"model.layers.{i}."
        g.weight(p + "input_layernorm.weight", (HIDDEN,), op="SimplifiedLayerNormalization")
        g.weight(p + "post_attention_layernorm.weight", (HIDDEN,), op="SimplifiedLayerNormalization")
        for proj, width in (("q_proj", 64), ("k_proj", 32), ("v_proj", 32), ("o_proj", 64)):
            g.weight(p + f"self_attn.{proj}.weight", (HIDDEN, width))
        for e in range(experts or 1):
            ffn = f"mlp.experts.{e}." if experts else "mlp."
            g.weight(p + ffn + "gate_proj.weight", (HIDDEN, FFN))
            g.weight(p + ffn + "up_proj.weight", (HIDDEN, FFN))
            g.weight(p + ffn + "down_proj.weight", (FFN, HIDDEN))
    g.weight("model.norm.weight", (HIDDEN,), op="SimplifiedLayerNormalization")
    return g.save(path)


def test_gpt_like_onnx_counts_every_weight(tmp_path):
    m = load_model(str(_gpt_like(tmp_path / "tiny.onnx")))
    lang = m.module("language")
    assert lang.num_layers == 2
    layer = lang.layers[0]
    assert layer.attention.params == 4 * (64 * 64 + 64)  # q, k, v, o with biases
    assert (layer.attention.heads, layer.attention.kv_heads, layer.attention.head_dim) == (4, 4, 16)
    assert layer.attention.bias
    assert layer.ffn.params == 64 * 256 + 256 + 256 * 64 + 64
    assert (layer.ffn.ffn, layer.ffn.gated, layer.ffn.bias) == (256, False, True)
    assert layer.norm_params == 2 * (64 + 64)
    assert (lang.vocab, lang.embedding_params, lang.head_params) == (100, 6400, 6400)
    assert lang.final_norm_params == 128
    assert not lang.tied_embeddings
    assert m.params == 2 * (16640 + 33088 + 256) + 6400 + 6400 + 128


def test_unnamed_matmul_weights_take_their_node_names(tmp_path):
    m = model_from_onnx(_llama_like(tmp_path / "llama.onnx"))
    lang = m.module("language")
    layer = lang.layers[1]
    assert layer.attention.params == 64 * 64 + 64 * 32 + 64 * 32 + 64 * 64
    # no attention node: hidden // 128 heads, at least one; k/v width 32 gives kv heads from head_dim 64
    assert (layer.attention.heads, layer.attention.kv_heads) == (1, 1)
    assert layer.ffn.gated and layer.ffn.params == 3 * 64 * 256
    assert layer.norm_params == 128
    assert lang.tied_embeddings and lang.head_params == 0 and lang.final_norm_params == 64
    assert m.params == 2 * (12288 + 49152 + 128) + 6400 + 64


def test_unsupported_graphs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="HF config.json"):
        model_from_onnx(_llama_like(tmp_path / "moe.onnx", experts=4))
    empty = _Graph()
    empty.weight("embed.weight", (VOCAB, HIDDEN), op="Gather")
    with pytest.raises(ConfigError, match="no repeated layers"):
        model_from_onnx(empty.save(tmp_path / "flat.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ConfigError, match="cannot read ONNX file"):
        load_model(str(tmp_path / "junk.onnx"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(str(tmp_path / "absent.onnx"))
