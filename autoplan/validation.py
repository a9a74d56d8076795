"""Score the estimator against measured runs from public papers (`published_runs.json`).

Each record becomes (model, cluster, job, plan) and a measured step time derived the way its
publisher reports it. What a record leaves out is filled by the documented defaults of the
software stack that ran it (`STACKS`), never by a per-run factor. Records that cannot be
scored honestly are skipped with the reason.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoplan.errors import AutoplanError
from autoplan.types import Dispatch, Estimate, Job, ModelGraph, Offload, Plan, Recompute, Strategy


class Skip(Exception):
    """A record that cannot be scored; the message says why."""


@dataclass(frozen=True, slots=True)
class Stack:
    """What a training stack does when a record does not say (its documented defaults)."""

    zero: int  # distributed optimizer / FSDP default
    sp_with_tp: bool  # sequence parallelism whenever tp > 1
    tp_comm_overlap: bool
    overlap: bool = True  # DP reduce behind backward, pipeline sends behind compute
    fp32_grads: bool = False
    recompute: Recompute = Recompute.NONE  # when the record names no policy


# Megatron-Core recipes (NeMo, Megatron-Bridge, dgxc-benchmarking) turn on the distributed optimizer,
# SP with TP and TE TP-overlap, bf16 grads; Megatron-LM 2021-22 used its own DDP with fp32 grads
# and no comm overlap; FSDP stacks shard everything and reduce in fp32; MaxText/Paxml default to
# full rematerialisation (MaxText base.yml remat_policy: full).
STACKS = {
    "megatron-core": Stack(zero=1, sp_with_tp=True, tp_comm_overlap=True),
    "megatron-lm": Stack(zero=0, sp_with_tp=False, tp_comm_overlap=False, overlap=False, fp32_grads=True),
    "fsdp": Stack(zero=3, sp_with_tp=False, tp_comm_overlap=False, fp32_grads=True),
    "xla": Stack(zero=3, sp_with_tp=False, tp_comm_overlap=False, fp32_grads=True, recompute=Recompute.FULL),
}
_FRAMEWORK_STACKS = (  # the record's own `framework` field decides first
    ("maxtext|paxml", "xla"),
    ("megatron-deepspeed", "megatron-lm"),
    ("deepspeed", "fsdp"),
    ("megatron", "megatron-core"),
)
_SOURCE_STACKS = (  # else the publication
    ("maxtext|paxml", "xla"),
    ("dgxc-benchmarking|megatron-bridge|nemo", "megatron-core"),
    ("automodel|llm-foundry|mosaicml|deepspeed|opt:", "fsdp"),
    ("narayanan|korthikanti|bigscience", "megatron-lm"),
)
FLASH_ATTENTION_YEAR = 2023  # fused attention kernels entered the training stacks in 2023


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    family: str
    model: ModelGraph
    cluster_spec: str
    devices: int
    job: Job
    plan: Plan
    measured_step_s: float
    measured_how: str
    pair: str = ""  # twin runs of one job under two plans share this key


def load_records(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["cases"]


def _year(rec: dict[str, Any]) -> int:
    src = rec["source"]
    arxiv = re.search(r"arxiv\.org/abs/(\d{2})(\d{2})\.", src)
    if arxiv:
        return 2000 + int(arxiv.group(1))
    years = [int(y) for y in re.findall(r"\b(20[12]\d)\b", src)]
    if "SC21" in src:
        return 2021
    return max(years) if years else 2024


def _stack(rec: dict[str, Any]) -> Stack:
    framework = str(rec["plan"].get("framework", "")).lower()
    source = rec["source"].lower()
    for text, table in ((framework, _FRAMEWORK_STACKS), (source, _SOURCE_STACKS)):
        for pattern, name in table:
            if text and re.search(pattern, text):
                return STACKS[name]
    return STACKS["megatron-core"]


_ACCELERATORS = (
    ("a100", "40gb", "a100-sxm-40gb"), ("a100", "", "a100-sxm-80gb"), ("a800", "", "a800-sxm-80gb"),
    ("h100", "", "h100-sxm-80gb"), ("h800", "", "h800-sxm-80gb"), ("h200", "", "h200-sxm-141gb"),
    ("h20", "", "h20"), ("gb200", "", "gb200"), ("b200", "", "b200"), ("v5p", "", "tpu-v5p"),
    ("v5e", "", "tpu-v5e"), ("v5 lite", "", "tpu-v5e"), ("v5lite", "", "tpu-v5e"),
    ("v4", "", "tpu-v4"), ("mi300", "", "mi300x"), ("ascend", "", "ascend-910b"),
    ("kunlun", "", "kunlun-p800"),
)


def accelerator_name(text: str) -> str:
    t = text.lower()
    for key, extra, name in _ACCELERATORS:
        if key in t and extra in t:
            return name
    raise Skip(f"accelerator {text!r} is not in the catalog")


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9.]", "", s.lower())


def build_model(rec: dict[str, Any]) -> ModelGraph:
    from autoplan.frontends import load_model, model_from_hf_config, preset_names

    m = rec["model"]
    name = _norm(m["name"].split("(")[0])
    for preset in preset_names():
        if _norm(preset) == name or _norm(preset) == name.replace("671b", "").replace("314b", ""):
            return load_model(preset)
    if not m.get("layers") or not m.get("hidden"):
        raise Skip("model dimensions not published in the record")
    return model_from_hf_config(_hf_config(m, rec), name=m["name"], source=rec["id"])


def _hf_config(m: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    h, heads = m["hidden"], m.get("heads") or m["hidden"] // 128
    vocab, seq = m.get("vocab") or 51200, m.get("seq_len") or 2048
    ffn = m.get("ffn_hidden")
    if m.get("experts") and m.get("top_k") and ffn:  # a Mixtral-style MoE block (ffn = per-expert width)
        return {"model_type": "mixtral", "hidden_size": h, "intermediate_size": ffn,
                "num_hidden_layers": m["layers"], "num_attention_heads": heads,
                "num_key_value_heads": m.get("kv_heads") or heads, "num_local_experts": m["experts"],
                "num_experts_per_tok": m["top_k"], "vocab_size": vocab, "tie_word_embeddings": False,
                "max_position_embeddings": seq}
    if ffn and ffn != 4 * h:  # SwiGLU width: a Llama-style block
        return {"model_type": "llama", "hidden_size": h, "intermediate_size": ffn, "num_hidden_layers": m["layers"],
                "num_attention_heads": heads, "num_key_value_heads": m.get("kv_heads") or heads,
                "vocab_size": vocab, "tie_word_embeddings": False, "max_position_embeddings": seq}
    return {"model_type": "gpt2", "n_embd": h, "n_layer": m["layers"], "n_head": heads, "vocab_size": vocab,
            "n_positions": seq, "n_inner": 4 * h, "tie_word_embeddings": True}


def _zero(text: str | None, stack: Stack) -> tuple[int, Offload]:
    t = (text or "").lower()
    offload = Offload.OPTIMIZER if "offload" in t else Offload.NONE
    if "zero-3" in t or ("fsdp" in t and "fsdp=0" not in t):
        return 3, offload
    if "zero-2" in t:
        return 2, offload
    if "zero-1" in t or "distributed optimizer" in t or "parallel optimizer" in t:
        return 1, offload
    if "none" in t or "ddp" in t:
        return 0, offload
    return stack.zero, offload


def _recompute(text: str | None, stack: Stack) -> Recompute:
    if text is None:
        return stack.recompute
    t = text.lower()
    if "selective" in t or "minimal" in t:
        return Recompute.SELECTIVE
    if "full" in t or "checkpoint" in t or "remat" in t:
        return Recompute.FULL
    return Recompute.NONE


def build_plan(rec: dict[str, Any], model: ModelGraph) -> tuple[Strategy, int]:
    p, n = rec["plan"], rec["cluster"]["num_devices"]
    stack = _stack(rec)
    tp, pp, cp = p.get("tp") or 1, p.get("pp") or 1, p.get("cp") or 1
    dp = n // (tp * pp * cp)  # records disagree on whether "dp" counts FSDP ranks; devices decide
    if tp * pp * cp * dp != n:
        raise Skip(f"degrees tp={tp} pp={pp} cp={cp} do not divide {n} devices")
    zero, offload = _zero(p.get("zero/fsdp"), stack)
    sp = p.get("sequence_parallel")
    sp = (stack.sp_with_tp and tp > 1) if sp is None else bool(sp) and tp > 1
    moe = model.is_moe
    deepep = "deepep" in str(p.get("kernels", "")).lower()
    ep = p.get("ep") or (_widest_ep(model, tp * dp * cp) if deepep else 1)  # DeepEP implies experts are split
    s = Strategy(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep if moe else 1, etp=p.get("etp") or 1,
                 vpp=p.get("vpp") or 1, mbs=p.get("micro_batch") or 1, sp=sp, zero=zero,
                 recompute=_recompute(p.get("recompute"), stack), offload=offload,
                 tp_comm_overlap=stack.tp_comm_overlap and tp > 1, overlap_grad_reduce=stack.overlap,
                 dispatch=Dispatch.HIERARCHICAL if deepep else Dispatch.ALL_TO_ALL,
                 overlap_p2p=stack.overlap)
    return s, n


def _widest_ep(model: ModelGraph, ranks: int) -> int:
    from math import gcd

    experts = next(layer.ffn.experts for layer in model.modules[0].layers if layer.is_moe)  # type: ignore[union-attr]
    return gcd(experts, ranks)


def build_job(rec: dict[str, Any], s: Strategy) -> Job:
    p, m = rec["plan"], rec["model"]
    gb = p.get("global_batch")
    if gb is None and rec["measured"].get("tflops_per_device") and p.get("micro_batch"):
        gb = p["micro_batch"] * s.dp  # one micro-batch per replica per step (no accumulation published)
    if not isinstance(gb, int):
        raise Skip(f"global batch not a number ({gb!r})")
    year = _year(rec)
    dtype = "fp16" if "fp16" in str(p.get("precision", "")).lower()[:12] else "bf16"
    return Job(global_batch=gb, seq_len=m.get("seq_len") or 2048, dtype=dtype,
               flash_attention=year >= FLASH_ATTENTION_YEAR, dropout=year < FLASH_ATTENTION_YEAR,
               fp32_grads=_stack(rec).fp32_grads)


def _megatron_flops(rec: dict[str, Any], gb: int) -> float:
    """Megatron's per-step FLOPs incl. the recompute forward (Narayanan et al. 2021, eq. 3)."""
    m = rec["model"]
    s, layers, h, v = m["seq_len"], m["layers"], m["hidden"], m.get("vocab") or 51200
    return 96 * gb * s * layers * h * h * (1 + s / (6 * h) + v / (16 * layers * h))


def measured_step(rec: dict[str, Any], job: Job, model_flops_per_step: float, peak: float) -> tuple[float, str]:
    me, n = rec["measured"], rec["cluster"]["num_devices"]
    notes = rec.get("notes", "")
    if me.get("step_time_s"):
        return float(me["step_time_s"]), "step time"
    if me.get("tflops_per_device") and ("96*B*s*l*h^2" in notes or "hardware TFLOPs" in notes):
        return _megatron_flops(rec, job.global_batch) / (n * me["tflops_per_device"] * 1e12), "Megatron TFLOP/s"
    if me.get("tflops_per_device"):
        return model_flops_per_step / (n * me["tflops_per_device"] * 1e12), "model TFLOP/s"
    if isinstance(me.get("mfu"), float):
        return model_flops_per_step / (n * peak * me["mfu"]), "MFU"
    raise Skip("no step time, TFLOP/s or MFU published")


def build_case(rec: dict[str, Any]) -> Case:
    return _build(rec)[0]


def _build(rec: dict[str, Any]) -> tuple[Case, Estimate]:
    """The record as inputs, and the estimate its measured step time was derived beside."""
    from autoplan.api import load_cluster
    from autoplan.cost_models.estimate import estimate

    if rec.get("trust") == "low":
        raise Skip("low trust: informal or range measurement")
    if "upper value" in rec.get("notes", "") or "not a steady-state" in rec.get("notes", ""):
        raise Skip("published figure is a peak, not a steady-state average")
    if rec["model"]["family"] == "multimodal":
        raise Skip("multimodal records carry no per-module plan")
    model = build_model(rec)
    strategy, devices = build_plan(rec, model)
    job = build_job(rec, strategy)
    accel = accelerator_name(rec["cluster"]["accelerator"])
    cluster = load_cluster(accel, devices)
    plan = Plan.single(strategy)
    est = estimate(model, cluster, job, plan)
    step, how = measured_step(rec, job, est.model_flops_per_step, est.peak_flops_per_s)
    case = Case(rec["id"], rec["model"]["family"], model, accel, devices, job, plan, step, how,
                pair=_twin_pair(rec["id"]))
    return case, est


def _twin_pair(run_id: str) -> str:
    """Korthikanti et al. measured each job twice (selective+SP, full recompute): the shared stem."""
    if not run_id.startswith("korthikanti"):
        return ""
    return run_id.removesuffix("-sp-selective").removesuffix("-full-recompute")


@dataclass(frozen=True, slots=True)
class Row:
    case: Case
    predicted_s: float
    fits: bool

    @property
    def error(self) -> float:
        return self.predicted_s / self.case.measured_step_s - 1


def score(path: Path) -> tuple[list[Row], list[tuple[str, str]]]:
    rows, skipped = [], []
    for rec in load_records(path):
        try:
            case, est = _build(rec)
        except (Skip, AutoplanError) as e:
            skipped.append((rec.get("id", "?"), str(e)))
            continue
        except (KeyError, TypeError, ValueError, ZeroDivisionError, StopIteration) as e:
            skipped.append((rec.get("id", "?"), f"malformed record ({type(e).__name__}: {e})"))
            continue
        rows.append(Row(case, est.step_time_s, est.fits))
    return rows, skipped



def summary(errors: list[float]) -> dict[str, float]:
    a = sorted(abs(e) for e in errors)
    if not a:
        return {"n": 0, "median": float("nan"), "p80": float("nan"), "max": float("nan")}
    p80 = a[min(len(a) - 1, int(round(0.8 * (len(a) - 1))))]
    return {"n": len(a), "median": statistics.median(a), "p80": p80, "max": a[-1]}
