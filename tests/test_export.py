"""Exporters: each engine's config parses with that engine's own convention and carries the plan's
degrees; every plan an engine cannot express is refused with one line naming the knob."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autoplan.cli.main import build_app
from autoplan.errors import ConfigError
from autoplan.export import FORMATS, ExportContext, export_plan
from autoplan.plan_io import PlanRecord, plan_to_json, write_record
from autoplan.types import (
    Accelerator,
    Attention,
    Cluster,
    FabricTier,
    Job,
    Layer,
    Mlp,
    ModelGraph,
    Module,
    Moe,
    Offload,
    Placement,
    Plan,
    Recompute,
    Strategy,
)

H, HEADS, KV, HD, FFN, VOCAB = 8192, 64, 8, 128, 28672, 128256
PLAN_70B = Strategy(tp=8, pp=4, dp=16, vpp=5, zero=1, sp=True)


def llama70b() -> ModelGraph:
    attn = Attention(hidden=H, heads=HEADS, kv_heads=KV, head_dim=HD, params=2 * H * H + 2 * H * KV * HD)
    mlp = Mlp(hidden=H, ffn=FFN, gated=True, params=3 * H * FFN)
    layer = Layer(attention=attn, ffn=mlp, norm_params=2 * H)
    module = Module(name="language", layers=(layer,) * 80, vocab=VOCAB, embedding_params=VOCAB * H,
                    head_params=VOCAB * H, final_norm_params=H)
    return ModelGraph(name="llama3.1-70b", modules=(module,))


def tiny_moe(dense_first: int = 1, layers: int = 4) -> ModelGraph:
    attn = Attention(hidden=64, heads=8, kv_heads=8, head_dim=8, params=4 * 64 * 64)
    moe = Moe(hidden=64, experts=8, top_k=2, expert_ffn=32, gated=True, params=8 * 3 * 64 * 32 + 64 * 8)
    mlp = Mlp(hidden=64, ffn=128, gated=True, params=3 * 64 * 128)
    stack = tuple(Layer(attention=attn, ffn=mlp if i < dense_first else moe, norm_params=128)
                  for i in range(layers))
    return ModelGraph(name="tiny-moe", modules=(Module(name="language", layers=stack, vocab=512),))


def h100(devices: int) -> Cluster:
    chip = Accelerator(name="h100-sxm-80gb", vendor="nvidia", generation="hopper",
                       peak_flops_per_s={"bf16": 989e12}, hbm_bytes=80e9, hbm_bytes_per_s=3.35e12,
                       scale_up_bytes_per_s=450e9, scale_up_domain=8, devices_per_node=8,
                       nic_bytes_per_s=50e9)
    tiers = (FabricTier(name="nvlink", span=8, bytes_per_s=450e9, latency_s=3e-6),
             FabricTier(name="ib", span=max(devices, 8), bytes_per_s=50e9, latency_s=8e-6))
    return Cluster(name="h100-sxm-80gb", accelerator=chip, devices=devices, tiers=tiers)


def context(strategy: Strategy = PLAN_70B, model: ModelGraph | None = None, global_batch: int = 1024,
            placement: Placement | None = None, dtype: str = "bf16") -> ExportContext:
    return ExportContext(plan=Plan.single(strategy, placement=placement), model=model or llama70b(),
                         job=Job(global_batch=global_batch, seq_len=8192, dtype=dtype),
                         cluster=h100(strategy.devices))


# --- megatron --------------------------------------------------------------------------------

MEGATRON_SWITCHES = ("--sequence-parallel", "--use-distributed-optimizer", "--overlap-grad-reduce",
                     "--overlap-param-gather", "--tp-comm-overlap", "--group-query-attention", "--swiglu",
                     "--untie-embeddings-and-output-weights", "--bf16", "--fp16", "--optimizer-cpu-offload")
MEGATRON_INTS = ("--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--context-parallel-size",
                 "--num-layers-per-virtual-pipeline-stage", "--virtual-pipeline-model-parallel-size",
                 "--decoder-first-pipeline-num-layers", "--decoder-last-pipeline-num-layers",
                 "--expert-model-parallel-size", "--expert-tensor-parallel-size", "--recompute-num-layers",
                 "--micro-batch-size", "--global-batch-size", "--seq-length", "--num-layers", "--hidden-size",
                 "--ffn-hidden-size", "--num-attention-heads", "--num-query-groups", "--num-experts",
                 "--moe-router-topk", "--moe-ffn-hidden-size")
MEGATRON_STRS = ("--recompute-granularity", "--recompute-method", "--moe-token-dispatcher-type",
                 "--moe-layer-freq")


def megatron_args(text: str) -> argparse.Namespace:
    """Parse as Megatron does (argparse, no abbreviations); a shell joins the ` \\` continuations."""
    parser = argparse.ArgumentParser(allow_abbrev=False, exit_on_error=False)
    for flag in MEGATRON_SWITCHES:
        parser.add_argument(flag, action="store_true")
    for flag in MEGATRON_INTS:
        parser.add_argument(flag, type=int)
    for flag in MEGATRON_STRS:
        parser.add_argument(flag)
    return parser.parse_args(shlex.split(text.replace("\\\n", " ")))


def test_megatron_flags_carry_the_70b_plan():
    args = megatron_args(export_plan(context(), "megatron"))
    assert (args.tensor_model_parallel_size, args.pipeline_model_parallel_size) == (8, 4)
    # 80 layers over pp=4 x vpp=5 virtual stages: 4 layers each
    assert args.num_layers_per_virtual_pipeline_stage == 4 and args.context_parallel_size == 1
    assert args.sequence_parallel and args.use_distributed_optimizer and args.overlap_param_gather
    assert (args.micro_batch_size, args.global_batch_size, args.seq_length) == (1, 1024, 8192)
    assert (args.num_layers, args.hidden_size, args.ffn_hidden_size) == (80, H, FFN)
    assert (args.num_attention_heads, args.num_query_groups) == (HEADS, KV) and args.group_query_attention
    assert args.bf16 and args.swiglu and args.recompute_granularity is None


def test_megatron_lines_are_a_shell_command_line():
    text = export_plan(context(), "megatron")
    lines = text.rstrip("\n").split("\n")
    assert all(line.endswith(" \\") for line in lines[:-1]) and not lines[-1].endswith("\\")
    assert shutil.which("bash"), "bash joins the continuation lines (present on every Linux CI image)"
    words = subprocess.run(["bash", "-c", 'printf "%s\\n" ' + text], capture_output=True, text=True,
                           check=True).stdout.split()
    assert words == shlex.split(text.replace("\\\n", " "))


def test_megatron_full_recompute_and_first_last_stage_split():
    s = Strategy(tp=8, pp=4, dp=16, zero=1, sp=True, recompute=Recompute.FULL, stage_layers=(18, 21, 21, 20))
    args = megatron_args(export_plan(context(s), "megatron"))
    assert args.recompute_granularity == "full" and args.recompute_method == "uniform"
    assert args.recompute_num_layers == 1
    assert (args.decoder_first_pipeline_num_layers, args.decoder_last_pipeline_num_layers) == (18, 20)


def test_megatron_moe_flags():
    s = Strategy(tp=2, dp=4, ep=4, etp=1, sp=True, zero=1)
    args = megatron_args(export_plan(context(s, model=tiny_moe(), global_batch=8), "megatron"))
    assert (args.expert_model_parallel_size, args.expert_tensor_parallel_size) == (4, 1)
    assert (args.num_experts, args.moe_router_topk, args.moe_ffn_hidden_size) == (8, 2, 32)
    assert args.moe_layer_freq == "([0]*1+[1]*3)" and args.ffn_hidden_size == 128


# --- torchtitan ------------------------------------------------------------------------------


def test_torchtitan_toml_carries_the_70b_plan():
    cfg = tomllib.loads(export_plan(context(), "torchtitan"))
    par = cfg["parallelism"]
    # zero=1: data parallelism is FSDP-sharded, not replicated
    assert (par["data_parallel_shard_degree"], par["data_parallel_replicate_degree"]) == (16, 1)
    assert par["tensor_parallel_degree"] == 8 and par["pipeline_parallel_degree"] == 4
    assert par["context_parallel_degree"] == 1
    assert par["pipeline_parallel_schedule"] == "Interleaved1F1B"
    assert par["pipeline_parallel_split_points"][:2] == ["layers.4", "layers.8"]
    assert len(par["pipeline_parallel_split_points"]) == 4 * 5 - 1
    assert cfg["activation_checkpoint"]["mode"] == "none"
    assert cfg["training"] == {"local_batch_size": 64, "global_batch_size": 1024, "seq_len": 8192,
                               "mixed_precision_param": "bfloat16"}


def test_torchtitan_replicates_without_zero_and_checkpoints_selectively():
    s = Strategy(tp=8, dp=64, recompute=Recompute.SELECTIVE, mbs=2)
    cfg = tomllib.loads(export_plan(context(s), "torchtitan"))
    par = cfg["parallelism"]
    assert (par["data_parallel_replicate_degree"], par["data_parallel_shard_degree"]) == (64, 1)
    assert "pipeline_parallel_schedule" not in cfg["parallelism"]
    assert cfg["activation_checkpoint"] == {"mode": "selective", "selective_ac_option": "op"}
    assert cfg["training"]["local_batch_size"] == 2


# --- deepspeed -------------------------------------------------------------------------------


def test_deepspeed_json_for_a_pipelined_zero1_plan():
    s = Strategy(pp=4, dp=128, mbs=2, zero=1, recompute=Recompute.FULL, offload=Offload.OPTIMIZER)
    cfg = json.loads(export_plan(context(s), "deepspeed"))
    micro, steps = cfg["train_micro_batch_size_per_gpu"], cfg["gradient_accumulation_steps"]
    assert cfg["train_batch_size"] == micro * steps * 128
    assert (cfg["train_micro_batch_size_per_gpu"], cfg["gradient_accumulation_steps"]) == (2, 4)
    assert cfg["bf16"] == {"enabled": True} and cfg["zero_optimization"]["stage"] == 1
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert cfg["pipeline"]["stages"] == 4 and cfg["pipeline"]["activation_checkpoint_interval"] == 1
    assert "activation_checkpointing" in cfg


def test_deepspeed_zero3_without_pipeline():
    cfg = json.loads(export_plan(context(Strategy(dp=512, zero=3)), "deepspeed"))
    assert cfg["zero_optimization"]["stage"] == 3 and "pipeline" not in cfg


# --- maxtext ---------------------------------------------------------------------------------

DEGREES_70B = {"data": 16, "fsdp": 1, "tensor": 8, "context": 1, "expert": 1, "pipeline": 4}


def test_maxtext_yaml_splits_axes_by_scale_up_domain():
    cfg = yaml.safe_load(export_plan(context(), "maxtext"))
    for axis, degree in DEGREES_70B.items():
        assert cfg[f"ici_{axis}_parallelism"] * cfg[f"dcn_{axis}_parallelism"] == degree, axis
    # tp=8 fills one 8-GPU NVLink domain; dp and pp cross nodes
    assert cfg["ici_tensor_parallelism"] == 8 and cfg["dcn_data_parallelism"] == 16
    assert math.prod(cfg[f"ici_{a}_parallelism"] for a in DEGREES_70B) == 8
    assert math.prod(cfg[f"dcn_{a}_parallelism"] for a in DEGREES_70B) == 64
    assert cfg["shard_optimizer_over_data"] is True and cfg["remat_policy"] == "minimal_with_context"
    assert cfg["num_pipeline_microbatches"] == 64
    assert (cfg["num_layers_per_pipeline_stage"], cfg["num_pipeline_repeats"]) == (4, 5)
    assert (cfg["per_device_batch_size"], cfg["max_target_length"]) == (2, 8192)


def test_maxtext_zero3_is_fsdp_and_follows_placement_order():
    s = Strategy(tp=2, dp=256, zero=3, recompute=Recompute.FULL)
    cfg = yaml.safe_load(export_plan(context(s, placement=Placement(order=("dp", "tp", "cp", "pp"))),
                                     "maxtext"))
    # dp is innermost here: 8 of its ranks share a node, and tp strides across nodes
    assert (cfg["ici_fsdp_parallelism"], cfg["dcn_fsdp_parallelism"]) == (8, 32)
    assert (cfg["ici_tensor_parallelism"], cfg["dcn_tensor_parallelism"]) == (1, 2)
    assert cfg["remat_policy"] == "full" and cfg["gradient_accumulation_steps"] == 4


# --- jax -------------------------------------------------------------------------------------


def jax_namespace(src: str) -> dict:
    namespace: dict = {}
    exec(compile(src, "plan_mesh.py", "exec"), namespace)
    return namespace


def mesh_sizes(ns: dict) -> dict[str, int]:
    return dict(zip(ns["MESH_AXES"], ns["MESH_SHAPE"], strict=True))


def test_jax_module_compiles_with_mesh_in_placement_order():
    src = export_plan(context(), "jax")
    ns = jax_namespace(src)
    assert mesh_sizes(ns) == {"pp": 4, "dp": 16, "ep": 1, "cp": 1, "tp": 8}
    assert ns["MESH_AXES"][-1] == "tp"
    specs = ns["PARAM_SPECS"]
    assert "'layers.wq': P(None, 'pp', None, None, 'tp')" in src  # column-parallel in
    assert tuple(specs["layers.wo"]) == (None, "pp", None, "tp", None)  # row-parallel out
    assert tuple(specs["embed"]) == ("tp", None) and tuple(specs["head"]) == (None, "tp")
    assert tuple(ns["ACTIVATION_SPECS"]["residual"]) == (("dp", "ep"), ("cp", "tp"), None)


def test_jax_every_sharded_dimension_divides():
    ns = jax_namespace(export_plan(context(), "jax"))
    sizes = mesh_sizes(ns)
    for shapes, specs in (("PARAM_SHAPES", "PARAM_SPECS"), ("ACTIVATION_SHAPES", "ACTIVATION_SPECS")):
        assert ns[shapes].keys() == ns[specs].keys()
        for name, shape in ns[shapes].items():
            spec = tuple(ns[specs][name])
            assert len(spec) == len(shape), name
            for dim, entry in zip(shape, spec, strict=True):
                axes = (entry,) if isinstance(entry, str) else entry or ()
                assert dim % math.prod(sizes[a] for a in axes) == 0, (name, dim, entry)


def test_jax_zero3_shards_parameters_and_ep_shards_experts():
    s = Strategy(tp=2, dp=4, ep=2, etp=2, zero=3)
    ns = jax_namespace(export_plan(context(s, model=tiny_moe(dense_first=0), global_batch=8), "jax"))
    assert mesh_sizes(ns) == {"pp": 1, "dp": 2, "ep": 2, "cp": 1, "tp": 2}
    assert tuple(ns["PARAM_SPECS"]["layers.wq"]) == (None, ("dp", "ep", "cp"), "tp")
    assert tuple(ns["PARAM_SPECS"]["layers.experts.w1"]) == (None, "ep", ("dp", "cp"), "tp")


def test_jax_module_builds_a_mesh_on_eight_cpu_devices(tmp_path):
    s = Strategy(tp=2, pp=2, dp=2, sp=True)
    path = tmp_path / "plan_mesh.py"
    path.write_text(export_plan(context(s, model=tiny_moe(dense_first=4), global_batch=8), "jax"))
    check = ("import runpy, jax\nfrom jax.sharding import NamedSharding\n"
             f"ns = runpy.run_path({str(path)!r})\nmesh = ns['make_mesh']()\n"
             "for name, shape in ns['PARAM_SHAPES'].items():\n"
             "    NamedSharding(mesh, ns['PARAM_SPECS'][name]).shard_shape(shape)\n"
             "print(dict(mesh.shape))\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'pp': 2" in out.stdout and "'tp': 2" in out.stdout


# --- refusals --------------------------------------------------------------------------------

UNEVEN = (10, 30, 20, 20)
PER_STAGE = (Recompute.FULL,) * 3 + (Recompute.NONE,)
REFUSALS = {
    "megatron-zero3": (Strategy(tp=8, pp=4, dp=16, zero=3), "megatron", "megatron cannot run zero=3"),
    "megatron-uneven-middle": (Strategy(tp=8, pp=4, dp=16, stage_layers=UNEVEN), "megatron", "stage_layers="),
    "megatron-tp-overlap-without-sp": (Strategy(tp=8, pp=4, dp=16, tp_comm_overlap=True), "megatron",
                                       "tp_comm_overlap=1 with sp=0"),
    "megatron-offload-without-zero": (Strategy(tp=8, pp=4, dp=16, offload=Offload.OPTIMIZER), "megatron",
                                      "offload=optimizer with zero=0"),
    "deepspeed-tp": (PLAN_70B, "deepspeed", "use the megatron export (Megatron-DeepSpeed) for tp>1"),
    "deepspeed-vpp": (Strategy(pp=4, dp=128, vpp=2), "deepspeed", "vpp=2"),
    "deepspeed-selective": (Strategy(dp=512, recompute=Recompute.SELECTIVE), "deepspeed",
                            "recompute=selective"),
    "deepspeed-uneven": (Strategy(pp=4, dp=128, stage_layers=UNEVEN), "deepspeed", "stage_layers="),
    "torchtitan-offload-without-zero": (Strategy(dp=512, offload=Offload.OPTIMIZER), "torchtitan", "offload"),
    "maxtext-microbatches": (Strategy(tp=8, pp=4, dp=16, mbs=1), "maxtext", "num_pipeline_microbatches"),
    "maxtext-domain-not-filled": (Strategy(tp=2, dp=6), "maxtext", "must fill the domain"),
    "jax-uneven": (Strategy(tp=8, pp=4, dp=16, stage_layers=UNEVEN), "jax", "stage_layers="),
    "any-per-stage-recompute": (Strategy(tp=8, pp=4, dp=16, stage_recompute=PER_STAGE), "torchtitan",
                                "recompute=full"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=str)
def test_refusal_names_the_knob(case):
    strategy, fmt, expected = REFUSALS[case]
    batch = 16 * 6 if case == "maxtext-microbatches" else 1536
    with pytest.raises(ConfigError) as err:
        export_plan(context(strategy, global_batch=batch), fmt)
    message = str(err.value)
    assert expected in message and "\n" not in message and message.startswith(fmt)


def test_deepspeed_refuses_zero_beyond_1_with_pipeline_in_the_documented_words():
    expected = ("deepspeed cannot run zero=3 with pp=4 (ZeRO-2/3 are incompatible with pipeline "
                "parallelism); use zero<=1 or pp=1")
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        export_plan(context(Strategy(pp=4, dp=128, zero=3)), "deepspeed")


def test_megatron_refuses_ep_with_tp_but_no_sp():
    with pytest.raises(ConfigError, match="needs sequence parallelism"):
        export_plan(context(Strategy(tp=2, dp=4, ep=4), model=tiny_moe(), global_batch=8), "megatron")


def test_unknown_format_lists_the_formats():
    with pytest.raises(ConfigError, match="choose one of jax, megatron, torchtitan, deepspeed, maxtext"):
        export_plan(context(), "nemo")


def test_context_refuses_a_plan_for_another_device_count():
    with pytest.raises(ConfigError, match="uses 512 devices but cluster"):
        ExportContext(plan=Plan.single(PLAN_70B), model=llama70b(), job=Job(global_batch=1024, seq_len=8192),
                      cluster=h100(256))


def test_global_batch_must_split_into_micro_batches():
    with pytest.raises(ConfigError, match=r"global_batch=1000 must be a multiple of dp\*mbs=16\*1=16"):
        export_plan(context(global_batch=1000), "megatron")


# --- CLI -------------------------------------------------------------------------------------


def invoke(args: list[str]):
    app = build_app()
    # Typer runs a lone registered command without its name; drop it while export stands alone
    if len(app.registered_commands) == 1:
        args = args[1:]
    return CliRunner().invoke(app, args)


@pytest.fixture
def record_file(tmp_path: Path) -> Path:
    record = PlanRecord(model="llama3.1-70b", cluster="h100-sxm-80gb", devices=512,
                        job=Job(global_batch=1024, seq_len=8192), plan=Plan.single(PLAN_70B))
    path = tmp_path / "plan.json"
    write_record(record, path)
    return path


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "deepspeed"])
def test_cli_exports_a_plan_record(record_file, fmt):
    result = invoke(["export", str(record_file), "--format", fmt])
    assert result.exit_code == 0, result.output
    assert "8" in result.stdout and result.stdout.strip()


def test_cli_writes_the_output_file(record_file, tmp_path):
    out = tmp_path / "titan.toml"
    result = invoke(["export", str(record_file), "--format", "torchtitan", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert tomllib.loads(out.read_text())["parallelism"]["tensor_parallel_degree"] == 8


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_cli_errors_are_one_line(record_file, tmp_path):
    assert "choose one of" in one_line_error(invoke(["export", str(record_file), "--format", "nemo"]))
    missing = str(tmp_path / "no.json")
    assert "does not exist" in one_line_error(invoke(["export", missing, "--format", "jax"]))
    bare = tmp_path / "bare.json"
    bare.write_text(plan_to_json(Plan.single(PLAN_70B)))
    assert "bare plan" in one_line_error(invoke(["export", str(bare), "--format", "jax"]))
    assert "tp>1" in one_line_error(invoke(["export", str(record_file), "--format", "deepspeed"]))
