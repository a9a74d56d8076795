"""Exporters: turn a `Plan` into the configuration an engine runs (STYLE.md §9).

Each engine is one module holding one `Exporter`; `export_plan(ctx, fmt)` looks it up by name.
An exporter renders text the engine reads as-is, or raises `ConfigError` naming the knob the
engine cannot express and the way out. Helpers shared by several engines live here.
"""

from __future__ import annotations

import functools
import math
from typing import Protocol

from autoplan.errors import ConfigError
from autoplan.types import Cluster, Job, Mlp, ModelGraph, Module, Moe, Plan, Recompute, Strategy, value

FORMATS = ("jax", "megatron", "torchtitan", "deepspeed", "maxtext")


@value
class ExportContext:
    """Everything an exporter may read: the plan and the inputs it was made for."""

    plan: Plan
    model: ModelGraph
    job: Job
    cluster: Cluster

    def __post_init__(self) -> None:
        if self.plan.devices != self.cluster.devices:
            raise ConfigError(f"the plan uses {self.plan.devices} devices but cluster {self.cluster.name} "
                              f"has {self.cluster.devices}; re-plan with --devices {self.plan.devices}")

    @property
    def strategy(self) -> Strategy:
        return self.plan.main

    @property
    def module(self) -> Module:
        """The model module the plan's (single) strategy splits."""
        name = self.plan.strategies[0][0]
        if len(self.model.modules) == 1:
            return self.model.modules[0]
        return self.model.module(name)


class Exporter(Protocol):
    name: str  # the --format value
    suffix: str  # file extension for -o defaults and editors

    def render(self, ctx: ExportContext) -> str: ...


def refuse(engine: str, what: str, why: str, fix: str) -> ConfigError:
    """The one shape of a refusal: `<engine> cannot run <what> (<why>); <fix>`."""
    return ConfigError(f"{engine} cannot run {what} ({why}); {fix}")


def single_module(ctx: ExportContext, engine: str) -> tuple[Module, Strategy]:
    if len(ctx.plan.strategies) > 1:
        names = [name for name, _ in ctx.plan.strategies]
        raise refuse(engine, f"a plan with per-module strategies {names}",
                     "one launch config holds one parallel layout", "export a single-module plan")
    return ctx.module, ctx.strategy


def uniform_recompute(s: Strategy, engine: str) -> Recompute:
    """Engines take one recompute policy for every stage."""
    if s.stage_recompute and len(set(s.stage_recompute)) > 1:
        per_stage = ",".join(r.value for r in s.stage_recompute)
        safest = max(s.stage_recompute, key=_recompute_rank)
        raise refuse(engine, f"stage_recompute={per_stage}", "it applies one recompute policy to every stage",
                     f"use one recompute policy, e.g. recompute={safest}")
    return s.stage_recompute[0] if s.stage_recompute else s.recompute


def _recompute_rank(r: Recompute) -> int:
    return (Recompute.NONE, Recompute.SELECTIVE, Recompute.FULL).index(r)


def microbatches(ctx: ExportContext) -> int:
    """Micro-batches per data-parallel rank per step: the estimator's own count."""
    from autoplan.cost_models.check import microbatches as count

    return count(ctx.job, ctx.strategy)


def virtual_stage_layers(module: Module, s: Strategy) -> tuple[int, ...]:
    """Layers per virtual stage (pp*vpp entries, model order): exactly the split the estimator
    scored (`cost_models.layout.chunk_layers`), so an export runs the plan that was predicted."""
    from autoplan.cost_models.layout import chunk_layers

    if s.stage_layers and sum(s.stage_layers) != module.num_layers:
        raise ConfigError(f"stage_layers sum to {sum(s.stage_layers)} but {module.name} has "
                          f"{module.num_layers} layers; re-plan")
    return chunk_layers(module.num_layers, s)


def is_even(stage_layers: tuple[int, ...]) -> bool:
    return len(set(stage_layers)) == 1


def first_moe(module: Module) -> Moe | None:
    return next((layer.ffn for layer in module.layers if isinstance(layer.ffn, Moe)), None)


def first_dense(module: Module) -> Mlp | None:
    return next((layer.ffn for layer in module.layers if isinstance(layer.ffn, Mlp)), None)


def ffn_shape(module: Module) -> tuple[int, bool]:
    """(FFN width, gated) of the dense layers, or of one expert in an all-MoE model."""
    ffn = first_dense(module) or first_moe(module)
    assert ffn is not None, module.name
    return (ffn.ffn if isinstance(ffn, Mlp) else ffn.expert_ffn), ffn.gated


def mesh_axes(ctx: ExportContext, engine: str) -> tuple[tuple[str, int], ...]:
    """(axis, size) innermost first, in placement order; ep is carved out of dp as its inner factor,
    so the sizes multiply to the device count."""
    s = ctx.strategy
    if s.dp % s.ep:
        raise refuse(engine, f"ep={s.ep} with dp={s.dp}", "its expert axis is carved out of data parallelism "
                     "alone", f"choose ep dividing dp={s.dp}")
    sizes = {"tp": s.tp, "cp": s.cp, "ep": s.ep, "dp": s.dp // s.ep, "pp": s.pp}
    order = list(ctx.plan.placement.order)
    for axis in sizes:
        if axis not in order:
            order.insert(order.index("dp") if axis == "ep" and "dp" in order else len(order), axis)
    return tuple((axis, sizes[axis]) for axis in order if axis in sizes)


def scale_up_span(cluster: Cluster) -> int:
    """Devices that share the innermost (scale-up) fabric tier."""
    return min(cluster.tiers[0].span, cluster.accelerator.scale_up_domain, cluster.devices)


def split_ici_dcn(axes: tuple[tuple[str, int], ...], span: int) -> dict[str, tuple[int, int]]:
    """axis -> (inside the scale-up domain, across it). Axes fill the domain innermost first; once
    one spills over, every outer axis strides across domains."""
    room, out = span, {}
    for axis, size in axes:
        inside = math.gcd(size, room)
        out[axis] = (inside, size // inside)
        room = room // inside if inside == size else 1
    return out


@functools.cache
def exporters() -> dict[str, Exporter]:
    """The registry: adding an engine means adding a module and one entry here."""
    from autoplan.export import deepspeed, jax_mesh, maxtext, megatron, torchtitan

    found = (jax_mesh.EXPORTER, megatron.EXPORTER, torchtitan.EXPORTER, deepspeed.EXPORTER, maxtext.EXPORTER)
    return {e.name: e for e in found}


def export_plan(ctx: ExportContext, fmt: str) -> str:
    table = exporters()
    if fmt not in table:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return table[fmt].render(ctx)


__all__ = ["FORMATS", "ExportContext", "Exporter", "export_plan", "exporters"]
