"""The few named constants that turn peak hardware numbers into achievable ones.

One `Efficiency` per accelerator generation, identical for every job and plan: no per-run or
per-publisher factors. Each value is grounded in a public hardware measurement (cited); the
validation report (`benchmarks/validate.py`) shows how well they carry to measured runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoplan.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class Efficiency:
    gemm: float  # large dense GEMM throughput / dense peak
    gemm_half_dim: float  # a GEMM dimension this small halves the efficiency (tile/wave quantisation)
    # MoE grouped GEMM vs one dense GEMM of the same FLOPs: variable per-expert M leaves partial tiles
    # and idle SMs (CUTLASS grouped-GEMM and TE grouped-linear benchmarks: ~75-85%)
    grouped_gemm: float = 0.80
    attention: float  # fused (flash) attention forward throughput / dense peak
    attention_bwd_flops_ratio: float  # backward matmul FLOPs over forward (FlashAttention-2 §3.2: 2.5)
    unfused_attention: float  # batched-GEMM QK^T / AV throughput without a fused kernel
    hbm: float  # achieved / peak HBM bandwidth for memory-bound kernels (STREAM-like)
    scale_up_bus: float  # NCCL bus bandwidth / link bandwidth inside the scale-up domain
    scale_out_bus: float  # bus bandwidth / NIC line rate across nodes
    kernel_overhead_s: float  # launch + sync gap per kernel on the critical path
    memory_reserved_bytes: float  # CUDA/driver context, NCCL buffers, allocator fragmentation


# A100: cuBLAS fp16 GEMMs reach ~250-270 of 312 TFLOP/s at large shapes (NVIDIA A100 tuning guide);
# NCCL all-reduce on DGX A100 NVLink3 reaches ~230 of 300 GB/s bus bandwidth (nccl-tests);
# STREAM-like kernels reach ~85% of 2.0 TB/s; FlashAttention-2 forward ~ 70% of peak (Dao 2023, Fig. 4).
AMPERE = Efficiency(
    gemm=0.80,
    gemm_half_dim=64.0,
    attention=0.62,
    attention_bwd_flops_ratio=2.5,
    unfused_attention=0.45,
    hbm=0.80,
    scale_up_bus=0.78,
    scale_out_bus=0.85,
    kernel_overhead_s=4e-6,
    memory_reserved_bytes=3.0 * 2**30,
)

# H100 SXM: training-shaped bf16 GEMMs sustain ~600-650 of 989 TFLOP/s once the 700 W cap throttles
# clocks (public cuBLAS sweeps reach ~750 only in short bursts); FlashAttention-3 / cuDNN forward
# ~ 450-500 TFLOP/s at head_dim 128 (Shah et al. 2024, Fig. 5); NVLink4 all-reduce busbw ~360 of 450 GB/s.
HOPPER = Efficiency(
    gemm=0.62,
    gemm_half_dim=96.0,
    attention=0.47,
    attention_bwd_flops_ratio=2.5,
    unfused_attention=0.40,
    hbm=0.80,
    scale_up_bus=0.80,
    scale_out_bus=0.85,
    kernel_overhead_s=4e-6,
    memory_reserved_bytes=4.0 * 2**30,
)

# B200/GB200: public bf16 GEMM sweeps sustain ~1.4-1.6 of the 2.25-2.5 PFLOP/s dense peak.
BLACKWELL = Efficiency(
    gemm=0.60,
    gemm_half_dim=128.0,
    attention=0.44,
    attention_bwd_flops_ratio=2.5,
    unfused_attention=0.35,
    hbm=0.80,
    scale_up_bus=0.80,
    scale_out_bus=0.85,
    kernel_overhead_s=4e-6,
    memory_reserved_bytes=5.0 * 2**30,
)

# TPUs: XLA fuses elementwise work into matmuls; MaxText reports 60-72% MFU on v5p/v5e.
TPU = Efficiency(
    gemm=0.80,
    gemm_half_dim=64.0,
    attention=0.60,
    attention_bwd_flops_ratio=2.5,
    unfused_attention=0.45,
    hbm=0.85,
    scale_up_bus=0.80,
    scale_out_bus=0.80,
    kernel_overhead_s=2e-6,
    memory_reserved_bytes=1.0 * 2**30,
)

# Accelerators with few public kernel measurements (MI300X, Ascend, Kunlun): conservative estimates.
OTHER = Efficiency(
    gemm=0.65,
    gemm_half_dim=96.0,
    attention=0.45,
    attention_bwd_flops_ratio=2.5,
    unfused_attention=0.35,
    hbm=0.75,
    scale_up_bus=0.75,
    scale_out_bus=0.80,
    kernel_overhead_s=6e-6,
    memory_reserved_bytes=4.0 * 2**30,
)

_BY_GENERATION = {
    "ampere": AMPERE,
    "hopper": HOPPER,
    "blackwell": BLACKWELL,
    "tpu-v4": TPU,
    "tpu-v5e": TPU,
    "tpu-v5p": TPU,
    "cdna3": OTHER,
    "ascend": OTHER,
    "kunlun": OTHER,
}


def efficiency(generation: str) -> Efficiency:
    try:
        return _BY_GENERATION[generation]
    except KeyError:
        raise ConfigError(
            f"no calibration for accelerator generation {generation!r}; use one of {sorted(_BY_GENERATION)}"
        ) from None
