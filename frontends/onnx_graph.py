"""ONNX file -> ModelGraph, best effort, from the initializers' shapes.

Weights are grouped into repeated layers by name (`layers.N.`, `h.N.`, `blocks.N.`); a weight
whose own name carries no layer index (`onnx::MatMul_123`) takes the name of the node that
reads it. Parameter counts are exact: every initializer element lands in exactly one bucket.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from autoplan.errors import ConfigError
from autoplan.types import Attention, Layer, Mlp, Modality, ModelGraph, Module

_LAYER = re.compile(r"(?:^|[/._])(?:layers|layer|h|blocks|block)[./_](\d+)(?=[/._]|$)")
_NORM = re.compile(r"norm|(?:^|[./_])ln", re.IGNORECASE)
_MATMULS = {"MatMul", "Gemm"}
_ATTENTION_OPS = {"Attention", "MultiHeadAttention", "GroupQueryAttention"}
_DEFAULT_HEAD_DIM = 128  # heads = hidden // 128 when the graph names none
# TensorProto element types of trainable weights; int64 shape constants and the like are not
_FLOAT_TYPES = {1, 10, 11, 16, 17, 18, 19, 20}  # float, float16, double, bfloat16, float8 variants


@dataclass(frozen=True)
class _Weight:
    name: str  # initializer name, or its reader's node name when that one carries the layer
    shape: tuple[int, ...]
    op: str  # op type of the first node that reads it ("" when none does)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def parent(self) -> str:
        return self.name[: max(self.name.rfind("."), self.name.rfind("/"))]


def _read(path: Path):
    import onnx  # lazily: importing autoplan must not import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError, OSError, ... for unreadable files
        reason = e.__class__.__name__
        raise ConfigError(f"cannot read ONNX file {str(path)!r} ({reason}); check the path") from None


def _weights(model) -> list[_Weight]:
    readers: dict[str, tuple[str, str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, (node.name, node.op_type))
    weights = []
    for init in model.graph.initializer:
        if init.data_type not in _FLOAT_TYPES or not init.dims:
            continue
        node_name, op = readers.get(init.name, ("", ""))
        name = init.name if _LAYER.search(init.name) or not _LAYER.search(node_name) else node_name
        weights.append(_Weight(name=name, shape=tuple(int(d) for d in init.dims), op=op))
    return weights


def _num_heads(model) -> tuple[int, int]:
    """(heads, kv_heads) from the first attention node's attributes; 0 when absent."""
    for node in model.graph.node:
        if node.op_type in _ATTENTION_OPS:
            attrs = {a.name: a.i for a in node.attribute}
            return attrs.get("num_heads", 0), attrs.get("kv_num_heads", 0)
    return 0, 0


def _hidden(layer: list[_Weight]) -> int:
    """The width every projection shares: the commonest dimension of the layer's matrices."""
    dims = Counter(d for w in layer if len(w.shape) == 2 for d in w.shape)
    return dims.most_common(1)[0][0]


def _split(weights: list[_Weight], where: str) -> tuple[list[_Weight], list[_Weight], list[_Weight]]:
    """(ffn, norm, attention) weights of one layer: FFN matrices carry the widest dimension."""
    matrices = [w for w in weights if len(w.shape) == 2]
    if not matrices:
        raise ConfigError(f"{where}: a layer has no weight matrices; pass the HF config.json instead")
    hidden, ffn = _hidden(weights), max(max(w.shape) for w in matrices)
    ffn_mats = [w for w in matrices if ffn in w.shape and ffn != hidden]
    if len(ffn_mats) not in (2, 3):
        raise ConfigError(
            f"{where}: found {len(ffn_mats)} FFN matrices of width {ffn} in one layer (MoE and fused weights "
            f"are not read from ONNX); pass the model's HF config.json instead"
        )
    parents = {w.parent for w in ffn_mats}
    ffn_part = [w for w in weights if w in ffn_mats or (len(w.shape) == 1 and w.parent in parents)]
    norm = [w for w in weights if w not in ffn_part and len(w.shape) == 1 and _NORM.search(w.name)]
    attention = [w for w in weights if w not in ffn_part and w not in norm]
    return ffn_part, norm, attention


def _attention(weights: list[_Weight], hidden: int, heads: int, kv_heads: int, where: str) -> Attention:
    params = sum(w.size for w in weights)
    matrices = [w for w in weights if len(w.shape) == 2]
    if not matrices:
        raise ConfigError(f"{where}: found no attention weights in a layer; pass the HF config.json instead")
    heads = heads or max(1, hidden // _DEFAULT_HEAD_DIM)
    head_dim = hidden // heads
    # k and v projections are the narrowest: kv_heads * head_dim wide (GQA)
    kv_width = min(w.shape[1] if w.shape[0] == hidden else w.shape[0] for w in matrices)
    kv_heads = kv_heads or max(1, kv_width // head_dim)
    kv_heads = kv_heads if heads % kv_heads == 0 else heads
    return Attention(hidden=hidden, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                     bias=any(len(w.shape) == 1 for w in weights), params=params)


def _layer(weights: list[_Weight], heads: int, kv_heads: int, where: str) -> Layer:
    ffn_part, norm, attention = _split(weights, where)
    hidden = _hidden(weights)
    ffn_mats = [w for w in ffn_part if len(w.shape) == 2]
    width = max(max(w.shape) for w in ffn_mats)
    gated = len(ffn_mats) == 3
    mlp = Mlp(hidden=hidden, ffn=width, gated=gated, activation="silu" if gated else "gelu",
              bias=len(ffn_part) > len(ffn_mats), params=sum(w.size for w in ffn_part))
    return Layer(attention=_attention(attention, hidden, heads, kv_heads, where), ffn=mlp,
                 norm_params=sum(w.size for w in norm))


def _outside(rest: list[_Weight], hidden: int) -> dict[str, int]:
    """Embedding, head and final norm from the weights outside the repeated layers."""
    gathered = sorted((w for w in rest if w.op == "Gather" and len(w.shape) == 2), key=lambda w: w.size)
    vocab = gathered[-1].shape[0] if gathered else 0
    head = [w for w in rest if w.op in _MATMULS and len(w.shape) == 2 and hidden in w.shape]
    final_norm = sum(w.size for w in rest if len(w.shape) == 1)
    embedding = sum(w.size for w in rest if w not in head and len(w.shape) != 1)
    return {"vocab": vocab or max((max(w.shape) for w in head), default=0), "embedding_params": embedding,
            "head_params": sum(w.size for w in head), "final_norm_params": final_norm}


def model_from_onnx(path: str | Path) -> ModelGraph:
    """Read an ONNX transformer's weights into a one-module (`language`) ModelGraph."""
    path = Path(path)
    model = _read(path)
    by_layer: dict[int, list[_Weight]] = defaultdict(list)
    rest: list[_Weight] = []
    for w in _weights(model):
        match = _LAYER.search(w.name)
        (by_layer[int(match.group(1))] if match else rest).append(w)
    if not by_layer:
        raise ConfigError(
            f"{path}: no repeated layers found (weights or nodes named like 'layers.N.', 'h.N.', "
            f"'blocks.N.'); export with parameter names kept, or pass the HF config.json instead"
        )
    heads, kv_heads = _num_heads(model)
    layers = tuple(_layer(by_layer[i], heads, kv_heads, str(path)) for i in sorted(by_layer))
    outside = _outside(rest, layers[0].attention.hidden)
    tied = outside["head_params"] == 0 and outside["embedding_params"] > 0
    module = Module(name="language", modality=Modality.TEXT, layers=layers, tied_embeddings=tied, **outside)
    return ModelGraph(name=model.graph.name or path.stem, modules=(module,), source=str(path))
