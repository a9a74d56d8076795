"""How a module's layers lie over pipeline ranks: chunk sizes, and per rank how many layers of
each distinct kind it holds (counted in small integers, so scoring a plan never hashes layers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from autoplan.types import Layer, Module, Strategy


def chunk_layers(num_layers: int, s: Strategy) -> tuple[int, ...]:
    """Layers per model chunk (pp·vpp of them): the plan's split, else as even as possible with the
    spare layers on the middle chunks, so the first and last (which also hold the embedding and the
    head) get fewer — a split Megatron expresses with --decoder-first/last-pipeline-num-layers."""
    if s.stage_layers:
        return s.stage_layers
    chunks = s.pp * s.vpp
    base, extra = divmod(num_layers, chunks)
    first = 1 if extra and chunks - extra >= 2 else 0
    return tuple(base + (1 if first <= c < first + extra else 0) for c in range(chunks))


@dataclass(frozen=True, slots=True)
class LayerIndex:
    """A module's distinct layer kinds and which kind each layer is: ranks are then counted in
    small integers instead of hashing layers for every candidate the search scores."""

    kinds: tuple[Layer, ...]
    kind_of: tuple[int, ...]
    _rank_counts: dict = field(default_factory=dict, compare=False, hash=False)  # (pp, chunk split) -> counts

    @classmethod
    def of(cls, module: Module) -> LayerIndex:
        cached = _INDEX_CACHE.get(id(module))
        if cached is not None and cached[0] is module:
            return cached[1]
        positions: dict[Layer, int] = {}
        kind_of = tuple(positions.setdefault(layer, len(positions)) for layer in module.layers)
        index = cls(kinds=tuple(positions), kind_of=kind_of)
        if len(_INDEX_CACHE) > 64:
            _INDEX_CACHE.clear()
        _INDEX_CACHE[id(module)] = (module, index)
        return index

    def counts(self, start: int, stop: int) -> tuple[int, ...]:
        out = [0] * len(self.kinds)
        for k in self.kind_of[start:stop]:
            out[k] += 1
        return tuple(out)


_INDEX_CACHE: dict[int, tuple[Module, LayerIndex]] = {}  # bounded memo; holds the module to pin its id


def rank_layer_counts(module: Module, s: Strategy) -> list[tuple[int, ...]]:
    """Layers of each kind held by each pipeline rank: chunk c runs on rank c % pp (Megatron interleaving)."""
    index = LayerIndex.of(module)
    split = chunk_layers(module.num_layers, s)
    cached = index._rank_counts.get((s.pp, split))
    if cached is not None:
        return cached
    out = [[0] * len(index.kinds) for _ in range(s.pp)]
    start = 0
    for c, n in enumerate(split):
        for k, count in enumerate(index.counts(start, start + n)):
            out[c % s.pp][k] += count
        start += n
    result = index._rank_counts[(s.pp, split)] = [tuple(r) for r in out]
    return result
