"""Core value types: what a model, a cluster, a job, a plan and an estimate are.

Every type here is a frozen, self-validating value (STYLE.md §1). They depend on nothing else
in the project; frontends, cost models and the search all speak in these terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum

from autoplan.errors import ConfigError

value = dataclass(frozen=True, slots=True, kw_only=True)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ---------------------------------------------------------------------------------------------
# Closed sets
# ---------------------------------------------------------------------------------------------


class Recompute(StrEnum):
    """Activation recomputation policy (Korthikanti et al. 2022)."""

    NONE = "none"
    SELECTIVE = "selective"  # recompute the attention core only
    FULL = "full"  # keep each layer's input, recompute the whole layer in backward


class Schedule(StrEnum):
    ONE_F_ONE_B = "1f1b"
    INTERLEAVED = "interleaved"  # Megatron virtual stages (vpp > 1)


class Offload(StrEnum):
    NONE = "none"
    OPTIMIZER = "optimizer"  # optimizer states and master weights in host memory (ZeRO-Offload)


class Modality(StrEnum):
    TEXT = "text"
    VISION = "vision"
    AUDIO = "audio"


class Dispatch(StrEnum):
    """How MoE tokens reach their experts."""

    ALL_TO_ALL = "alltoall"
    ALL_GATHER = "allgather"
    HIERARCHICAL = "hierarchical"  # one copy per destination node, NVLink fan-out inside (DeepEP)


class Optimizer(StrEnum):
    ADAM = "adam"  # fp32 master weights + two fp32 moments
    SGD = "sgd"


# ---------------------------------------------------------------------------------------------
# Model graph
# ---------------------------------------------------------------------------------------------


@value
class Attention:
    """Self-attention sub-block. Splittable along heads (tp) and sequence (cp)."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    v_head_dim: int = 0  # 0: same as head_dim
    window: int = 0  # sliding-window length; 0 = full causal attention
    causal: bool = True
    q_lora_rank: int = 0  # MLA (DeepSeek-V2/V3) low-rank query; 0 = plain projection
    kv_lora_rank: int = 0  # MLA compressed KV; 0 = plain GQA/MHA
    rope_head_dim: int = 0  # MLA decoupled rotary dims
    bias: bool = False
    params: int

    def __post_init__(self) -> None:
        _require(self.heads > 0 and self.head_dim > 0,
                 f"attention needs heads > 0 and head_dim > 0, got heads={self.heads}, head_dim={self.head_dim}")
        _require(
            self.kv_heads > 0 and self.heads % self.kv_heads == 0,
            f"kv_heads={self.kv_heads} must divide heads={self.heads}",
        )
        _require(self.params > 0, "attention params must be positive")

    @property
    def value_dim(self) -> int:
        return self.v_head_dim or self.head_dim


@value
class Mlp:
    """Dense feed-forward sub-block. Splittable along the FFN dimension (tp)."""

    hidden: int
    ffn: int
    gated: bool  # SwiGLU/GeGLU: three matrices instead of two
    activation: str = "gelu"
    bias: bool = False
    params: int

    def __post_init__(self) -> None:
        _require(self.ffn > 0 and self.hidden > 0,
                 f"an MLP needs ffn > 0 and hidden > 0, got ffn={self.ffn}, hidden={self.hidden}; fix the config")


@value
class Moe:
    """Mixture-of-experts sub-block. Splittable along experts (ep) and each expert's FFN (etp)."""

    hidden: int
    experts: int
    top_k: int
    expert_ffn: int
    gated: bool
    shared_ffn: int = 0  # total FFN width of always-on shared experts (DeepSeek, Qwen2-MoE)
    route_groups: int = 0  # group-limited routing: a token reaches at most this many expert groups (0 = any)
    params: int  # all experts + shared experts + router

    def __post_init__(self) -> None:
        _require(0 < self.top_k <= self.experts, f"top_k={self.top_k} must be in 1..experts={self.experts}")

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert."""
        return (3 if self.gated else 2) * self.hidden * self.expert_ffn

    @property
    def shared_params(self) -> int:
        return (3 if self.gated else 2) * self.hidden * self.shared_ffn if self.shared_ffn else 0

    @property
    def router_params(self) -> int:
        return self.hidden * self.experts

    @property
    def active_params(self) -> int:
        return self.top_k * self.expert_params + self.shared_params + self.router_params


@value
class Layer:
    """One repeated transformer layer: the unit a pipeline stage holds a whole number of."""

    attention: Attention
    ffn: Mlp | Moe
    norm_params: int

    @property
    def params(self) -> int:
        return self.attention.params + self.ffn.params + self.norm_params

    @property
    def is_moe(self) -> bool:
        return isinstance(self.ffn, Moe)

    @property
    def active_params(self) -> int:
        ffn = self.ffn.active_params if isinstance(self.ffn, Moe) else self.ffn.params
        return self.attention.params + ffn + self.norm_params


@value
class Module:
    """A stack of layers with its embedding and head: `language`, `vision`, ...

    `embedding_params` sit on the first pipeline stage, `head_params` (LM head and final norm)
    on the last; a tied head shares the embedding's matrix but still runs its GEMM.
    """

    name: str
    modality: Modality = Modality.TEXT
    layers: tuple[Layer, ...]
    vocab: int = 0
    embedding_params: int = 0  # token (+ learned position) embeddings
    head_params: int = 0  # untied output projection; 0 when tied
    final_norm_params: int = 0
    tied_embeddings: bool = False

    def __post_init__(self) -> None:
        _require(bool(self.name), "a module needs a name")
        _require(len(self.layers) > 0, f"module {self.name!r} has no layers")

    @property
    def hidden(self) -> int:
        return self.layers[0].attention.hidden

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def params(self) -> int:
        body = sum(layer.params for layer in self.layers)
        return body + self.embedding_params + self.head_params + self.final_norm_params

    @property
    def active_params(self) -> int:
        body = sum(layer.active_params for layer in self.layers)
        return body + self.embedding_params + self.head_params + self.final_norm_params

    @property
    def head_matmul_params(self) -> int:
        """Parameters of the LM-head GEMM, which runs whether or not it is tied."""
        return self.vocab * self.hidden if self.vocab else 0


@value
class ModelGraph:
    name: str
    modules: tuple[Module, ...]
    source: str = ""  # where it came from: preset name, file path

    def __post_init__(self) -> None:
        _require(len(self.modules) > 0, f"model {self.name!r} has no modules")
        names = [m.name for m in self.modules]
        _require(len(set(names)) == len(names), f"module names repeat in {names}")

    @property
    def params(self) -> int:
        return sum(m.params for m in self.modules)

    @property
    def active_params(self) -> int:
        return sum(m.active_params for m in self.modules)

    @property
    def is_moe(self) -> bool:
        return any(layer.is_moe for m in self.modules for layer in m.layers)

    def module(self, name: str) -> Module:
        for m in self.modules:
            if m.name == name:
                return m
        raise ConfigError(f"model {self.name!r} has no module {name!r}; it has {[m.name for m in self.modules]}")


# ---------------------------------------------------------------------------------------------
# Hardware
# ---------------------------------------------------------------------------------------------


@value
class Accelerator:
    """One chip. Peaks are dense (no sparsity); `sources` says where each number comes from."""

    name: str
    vendor: str
    generation: str  # calibration family: ampere, hopper, blackwell, cdna3, tpu-v4, ...
    peak_flops_per_s: dict[str, float] = field(hash=False)  # dtype -> dense FLOP/s
    hbm_bytes: float
    hbm_bytes_per_s: float
    scale_up_bytes_per_s: float  # per device, one direction, inside the scale-up domain
    scale_up_domain: int  # devices sharing the scale-up fabric (8 per NVLink node, 72 for NVL72)
    devices_per_node: int
    nic_bytes_per_s: float  # per device, one direction, scale-out
    estimated: tuple[str, ...] = ()  # fields with no public vendor figure, estimated
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(self.hbm_bytes > 0 and self.hbm_bytes_per_s > 0, f"{self.name}: HBM must be positive")
        _require(bool(self.peak_flops_per_s), f"{self.name}: needs at least one peak FLOP/s")

    def __hash__(self) -> int:
        return hash(self.name)

    def peak(self, dtype: str) -> float:
        key = "bf16" if dtype == "fp16" and "fp16" not in self.peak_flops_per_s else dtype
        if key not in self.peak_flops_per_s:
            raise ConfigError(
                f"{self.name} has no published {dtype} peak; use one of {sorted(self.peak_flops_per_s)}"
            )
        return self.peak_flops_per_s[key]


@value
class FabricTier:
    """One level of the network, innermost first: scale-up domain, leaf (rail), spine."""

    name: str
    span: int  # devices reachable inside this tier
    bytes_per_s: float  # per device, one direction
    latency_s: float
    oversubscription: float = 1.0  # >1 when the tier's uplinks are thinner than its downlinks

    def __post_init__(self) -> None:
        _require(self.span >= 1 and self.bytes_per_s > 0, f"fabric tier {self.name}: bad span/bandwidth")
        _require(self.oversubscription >= 1.0, f"tier {self.name}: oversubscription must be >= 1")


@value
class Cluster:
    name: str
    accelerator: Accelerator
    devices: int
    tiers: tuple[FabricTier, ...]  # innermost first; the last spans every device

    def __post_init__(self) -> None:
        _require(self.devices >= 1, f"devices={self.devices} must be >= 1")
        _require(len(self.tiers) > 0, f"cluster {self.name} needs at least one fabric tier")
        spans = [t.span for t in self.tiers]
        _require(spans == sorted(spans), f"fabric tiers must widen outward, got spans {spans}")

    @property
    def devices_per_node(self) -> int:
        return min(self.accelerator.devices_per_node, self.devices)

    def tier_for_span(self, span: int) -> FabricTier:
        """Narrowest tier whose span holds a group of `span` consecutive devices."""
        for tier in self.tiers:
            if span <= tier.span:
                return tier
        return self.tiers[-1]


# ---------------------------------------------------------------------------------------------
# Job
# ---------------------------------------------------------------------------------------------


@value
class Job:
    global_batch: int  # sequences per optimizer step
    seq_len: int
    dtype: str = "bf16"  # training compute dtype: bf16, fp16, fp8
    optimizer: Optimizer = Optimizer.ADAM
    flash_attention: bool = True  # fused attention kernel that stores no s×s scores
    dropout: bool = False  # dropout masks stored for backward (GPT-3-era recipes)
    fp32_grads: bool = False  # gradients accumulated and reduced in fp32 (Megatron-LM bf16 default)
    # busiest expert's load over the mean; 1.0 = balanced routing, as the published MoE benchmarks
    # force (Megatron-Bridge, NeMo Automodel); measured routers in training run ~1.1-1.5
    moe_imbalance: float = 1.0
    capacity_factor: float = 0.0  # 0 = dropless; else tokens past capacity_factor x mean are dropped
    images_per_sample: float = 0.0  # multimodal data mix
    tokens_per_image: int = 0

    def __post_init__(self) -> None:
        _require(self.global_batch >= 1, f"global_batch={self.global_batch} must be >= 1")
        _require(self.seq_len >= 1, f"seq_len={self.seq_len} must be >= 1")
        _require(self.dtype in ("bf16", "fp16", "fp8"), f"dtype={self.dtype!r} must be bf16, fp16 or fp8")
        _require(math.isfinite(self.moe_imbalance) and self.moe_imbalance >= 1.0,
                 f"moe_imbalance={self.moe_imbalance} must be a finite number >= 1.0")
        _require(self.capacity_factor == 0 or (math.isfinite(self.capacity_factor) and self.capacity_factor >= 1.0),
                 f"capacity_factor={self.capacity_factor} must be 0 (dropless) or >= 1.0")

    @property
    def tokens(self) -> int:
        return self.global_batch * self.seq_len


# ---------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------


@value
class Strategy:
    """How one module is split. Degrees follow Megatron-Core: tp·pp·dp·cp = devices of the
    module; ep is carved out of dp·cp and etp splits each expert like tp."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    etp: int = 1
    vpp: int = 1  # model chunks per pipeline rank
    mbs: int = 1
    sp: bool = False
    zero: int = 0  # 0 none, 1 optimizer states, 2 + gradients, 3 + parameters (FSDP)
    recompute: Recompute = Recompute.NONE
    offload: Offload = Offload.NONE
    dispatch: Dispatch = Dispatch.ALL_TO_ALL
    overlap_grad_reduce: bool = True  # DP reduce bucketed behind backward
    overlap_param_gather: bool = True  # ZeRO-3 / distributed-optimizer gathers prefetched
    overlap_p2p: bool = True  # pipeline sends overlapped with compute (interleaved schedules only)
    tp_comm_overlap: bool = False  # TP collectives pipelined with GEMMs (TE userbuffers)
    ep_overlap: bool = False  # all-to-all hidden behind another micro-batch (DualPipe style)
    stage_layers: tuple[int, ...] = ()  # layers per pipeline stage; () = even split
    stage_recompute: tuple[Recompute, ...] = ()  # per stage; () = `recompute` everywhere

    def __post_init__(self) -> None:
        # messages are built only on failure: the planner constructs millions of these
        for name in ("tp", "pp", "dp", "cp", "ep", "etp", "vpp", "mbs"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}={v!r} must be a positive integer")
        if self.zero not in (0, 1, 2, 3):
            raise ConfigError(f"zero={self.zero} must be 0, 1, 2 or 3")
        if (self.tp * self.dp * self.cp) % (self.ep * self.etp):
            raise ConfigError(f"ep*etp={self.ep * self.etp} must divide tp*dp*cp={self.tp * self.dp * self.cp} "
                              "(Megatron-Core folds the expert mesh onto the dense ranks)")
        if self.vpp > 1 and self.pp == 1:
            raise ConfigError(f"vpp={self.vpp} needs pp > 1")
        if self.stage_layers and len(self.stage_layers) != self.pp * self.vpp:
            raise ConfigError(f"stage_layers has {len(self.stage_layers)} entries; it needs "
                              f"pp*vpp={self.pp * self.vpp}")
        if self.stage_recompute and len(self.stage_recompute) != self.pp:
            raise ConfigError(f"stage_recompute has {len(self.stage_recompute)} entries; it needs pp={self.pp}")

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def schedule(self) -> Schedule:
        return Schedule.INTERLEAVED if self.vpp > 1 else Schedule.ONE_F_ONE_B

    @property
    def expert_dp(self) -> int:
        """Replicas of each expert: dp·cp·tp / (ep·etp) (Megatron-Core expert-data-parallel)."""
        return self.dp * self.cp * self.tp // (self.ep * self.etp)

    def recompute_of_stage(self, stage: int) -> Recompute:
        return self.stage_recompute[stage] if self.stage_recompute else self.recompute

    def with_(self, **changes: object) -> Strategy:
        return replace(self, **changes)


PLAN_KEYS = ("tp", "pp", "dp", "cp", "ep", "etp", "vpp", "mbs", "sp", "zero", "recompute")


MESH_AXES = ("tp", "cp", "dp", "pp")  # ep and etp are carved out of these (Megatron-Core)


@value
class Placement:
    """Mesh axes laid onto the fabric, innermost (fastest-varying rank) first."""

    order: tuple[str, ...] = ("tp", "cp", "dp", "pp")
    naive: bool = False  # ranks in plain order with no topology awareness (for comparison)

    def __post_init__(self) -> None:
        _require(sorted(self.order) == sorted(MESH_AXES), f"placement order {self.order} must order {MESH_AXES}")


@value
class Plan:
    """One strategy per module, their device split, and where the mesh axes sit."""

    strategies: tuple[tuple[str, Strategy], ...]  # (module name, strategy), model order
    placement: Placement = Placement()

    def __post_init__(self) -> None:
        _require(len(self.strategies) > 0, "a plan needs at least one module strategy")

    @classmethod
    def single(cls, strategy: Strategy, module: str = "language", placement: Placement | None = None) -> Plan:
        return cls(strategies=((module, strategy),), placement=placement or Placement())

    @property
    def main(self) -> Strategy:
        """The first module's strategy (the only one for a single-module model)."""
        return self.strategies[0][1]

    def strategy(self, module: str) -> Strategy:
        for name, s in self.strategies:
            if name == module:
                return s
        return self.main

    @property
    def devices(self) -> int:
        return sum(s.devices for _, s in self.strategies)


# ---------------------------------------------------------------------------------------------
# Estimate
# ---------------------------------------------------------------------------------------------


@value
class Estimate:
    """A predicted step, and the terms behind every number (seconds and bytes per device)."""

    step_time_s: float
    time_breakdown: dict[str, float] = field(hash=False)  # term -> seconds on the critical path
    memory_breakdown: dict[str, float] = field(hash=False)  # term -> bytes on the fullest device
    peak_memory_bytes: float
    capacity_bytes: float
    tokens_per_s: float
    model_flops_per_step: float
    hardware_flops_per_step: float
    devices: int
    peak_flops_per_s: float
    comm_by_tier: dict[str, float] = field(default_factory=dict, hash=False)  # exposed s per tier
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert self.step_time_s > 0 and math.isfinite(self.step_time_s), self.step_time_s

    @property
    def fits(self) -> bool:
        return self.peak_memory_bytes <= self.capacity_bytes

    @property
    def mfu(self) -> float:
        return self.model_flops_per_step / (self.step_time_s * self.devices * self.peak_flops_per_s)

    @property
    def hfu(self) -> float:
        return self.hardware_flops_per_step / (self.step_time_s * self.devices * self.peak_flops_per_s)

    @property
    def model_tflops_per_device(self) -> float:
        return self.model_flops_per_step / self.step_time_s / self.devices / 1e12

    @property
    def peak_memory_gib(self) -> float:
        return self.peak_memory_bytes / 2**30


def strategy_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Strategy))
