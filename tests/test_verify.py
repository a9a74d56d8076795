"""autoplan verify: the sharded step against the single-device reference, bugs caught and named,
full-scale operator shapes by hand, and the CLI's exit codes.

JAX reads its device count once, at import, so every run that needs virtual devices happens in a
subprocess; this test process never imports JAX.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from autoplan.cli.main import build_app
from autoplan.errors import ConfigError
from autoplan.plan_io import parse_plan
from autoplan.types import Attention, Job, Layer, Mlp, ModelGraph, Module, Moe, Strategy
from autoplan.verify.compare import relative_error
from autoplan.verify.reduced import reduce_model
from autoplan.verify.shapes import OpKind, operator_shapes

# Architecture of the two presets the verify matrix uses; parameter counts are not used by verify.
LLAMA3_8B_ATT = Attention(hidden=4096, heads=32, kv_heads=8, head_dim=128, params=41943040)
MIXTRAL_MOE = Moe(hidden=4096, experts=8, top_k=2, expert_ffn=14336, gated=True, params=1409318912)


def _graph(name: str, ffn: Mlp | Moe, layers: int = 32) -> ModelGraph:
    layer = Layer(attention=LLAMA3_8B_ATT, ffn=ffn, norm_params=8192)
    module = Module(name="language", layers=(layer,) * layers, vocab=128256,
                    embedding_params=128256 * 4096, head_params=128256 * 4096, final_norm_params=4096)
    return ModelGraph(name=name, modules=(module,))


LLAMA = _graph("llama3-8b", Mlp(hidden=4096, ffn=14336, gated=True, activation="silu", params=176160768))
MIXTRAL = _graph("mixtral-8x7b", MIXTRAL_MOE)

# One subprocess runs every in-process verification: one JAX start-up for all of them.
RUNS = {
    "tp+dp": ("llama", "tp=2,dp=2", ""),
    "pp+vpp": ("llama", "pp=2,vpp=2,recompute=full", ""),
    "cp+tp+sp": ("llama", "cp=2,tp=2,sp=1", ""),
    "ep": ("mixtral", "dp=2,ep=2", ""),
    "wrong-spec": ("llama", "tp=2,dp=2", "wrong-spec"),
}
SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from autoplan.verify import host_devices
host_devices(4)
from autoplan.plan_io import parse_plan
from autoplan.verify import run_verify
from test_verify import LLAMA, MIXTRAL
out = {{}}
for key, (model, plan, bug) in {runs!r}.items():
    p = parse_plan(plan)
    out[key] = run_verify({{"llama": LLAMA, "mixtral": MIXTRAL}}[model], p, p.main.devices, bug=bug)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    from pathlib import Path

    script = SCRIPT.format(tests=str(Path(__file__).parent), runs=RUNS)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("key", ["tp+dp", "pp+vpp", "cp+tp+sp", "ep"])
def test_sharded_step_matches_reference(runs: dict[str, dict], key: str) -> None:
    r = runs[key]
    assert r["passed"], r
    assert r["max_rel_err"] <= 1e-4
    assert r["first_diverging"] is None
    assert r["tensors"] > 10


def test_reduced_model_keeps_structure(runs: dict[str, dict]) -> None:
    ep = runs["ep"]["reduced"]
    assert (ep["experts"], ep["top_k"], ep["gated"]) == (8, 2, True)
    assert runs["pp+vpp"]["reduced"]["layers"] == 4  # every (stage, chunk) holds a layer
    tp = runs["tp+dp"]["reduced"]
    assert tp["heads"] // tp["kv_heads"] == 4  # llama3's GQA ratio


def test_wrong_partition_spec_is_caught(runs: dict[str, dict]) -> None:
    r = runs["wrong-spec"]
    assert not r["passed"]
    assert r["first_diverging"] == "loss"  # w2 split over dp instead of tp corrupts the forward
    assert r["max_rel_err"] > 1e-2


def test_xla_crosscheck_reports_ratios(runs: dict[str, dict]) -> None:
    x = runs["tp+dp"]["xla_crosscheck"]
    assert x["xla_flops_per_device"] > 0 and x["xla_memory_bytes_per_device"] > 0
    # XLA counts the masked half of causal scores and elementwise work; same order of magnitude.
    assert 0.5 < x["flops_ratio"] < 4 and 0.2 < x["memory_ratio"] < 10
    assert x["flops_ratio_per_useful_step"] == pytest.approx(x["flops_ratio"] / x["schedule_factor"])


def test_cli_dropped_allreduce_exits_1_naming_the_tensor() -> None:
    code = textwrap.dedent(f"""
        import sys, types
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        from test_verify import LLAMA
        fake = types.ModuleType("autoplan.frontends")
        fake.load_model = lambda name: LLAMA
        sys.modules["autoplan.frontends"] = fake
        sys.argv = ["autoplan", "verify", "--model", "llama3-8b", "--plan", "tp=2,dp=2", "--devices", "4",
                    "--json", "--inject-bug", "drop-allreduce"]
        from autoplan.cli.main import main
        main()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "grad/layers/0/wo" in proc.stderr
    assert json.loads(proc.stdout)["first_diverging"] == "grad/layers/0/wo"


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2 with one line, before JAX is ever started
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def fake_frontend(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    fake = types.ModuleType("autoplan.frontends")
    fake.load_model = lambda name: {"llama3-8b": LLAMA}.get(name) or (_ for _ in ()).throw(
        ConfigError(f"unknown model {name!r}"))
    monkeypatch.setitem(sys.modules, "autoplan.frontends", fake)


@pytest.mark.parametrize("args, message", [
    (["--plan", "tp=2,dp=2", "--devices", "8"], "must equal --devices 8"),
    (["--plan", "tp=16,dp=1", "--devices", "16"], "tp=16 must divide"),
    (["--plan", "tp=2,dp=2", "--devices", "4", "--inject-bug", "nope"], "unknown injected bug"),
    (["--plan", "dp=2,ep=2", "--devices", "2"], "needs a MoE model"),
], ids=["devices-mismatch", "tp-not-dividing-kv-heads", "unknown-bug", "ep-on-dense"])
def test_cli_bad_input_exits_2(fake_frontend: None, args: list[str], message: str) -> None:
    result = CliRunner().invoke(build_app(), ["verify", "--model", "llama3-8b", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_unknown_model_exits_2(fake_frontend: None) -> None:
    result = CliRunner().invoke(build_app(), ["verify", "--model", "gpt-9", "--plan", "dp=8"])
    assert result.exit_code == 2 and "unknown model" in result.output


# ---------------------------------------------------------------------------------------------
# Pure pieces: reduction rules, relative error, full-scale shapes by hand
# ---------------------------------------------------------------------------------------------


def test_reduce_model_divides_every_axis() -> None:
    cfg = reduce_model(LLAMA, Strategy(tp=4, pp=4, vpp=2, dp=2, mbs=2))
    assert cfg.heads % 4 == 0 and cfg.kv_heads % 4 == 0 and cfg.heads == 4 * cfg.kv_heads
    assert cfg.layers == 8 and cfg.batch == 2 * 4 * 2  # dp x micro-batches (pp) x mbs
    with pytest.raises(ConfigError, match="etp=2"):
        reduce_model(MIXTRAL, Strategy(dp=4, ep=2, etp=2))


def test_relative_error_is_scaled_per_tensor() -> None:
    import numpy as np

    ref = np.array([100.0, 0.0, -1.0])
    assert relative_error(ref + np.array([0.0, 0.01, 0.0]), ref) == pytest.approx((0.01, 1e-4))
    assert relative_error(np.zeros(2), np.zeros(3))[1] == float("inf")


def _ops(model: ModelGraph, plan: str, seq: int = 8192) -> dict[str, object]:
    s = parse_plan(plan).main
    return {op.name: op for op in operator_shapes(model.modules[0], Job(global_batch=64, seq_len=seq), s)}


def test_shapes_tp_cp_sp_by_hand() -> None:
    ops = _ops(LLAMA, "tp=4,cp=2,dp=4,sp=1,mbs=1")
    t = 8192 // 2  # tokens per micro-batch per cp rank
    assert ops["qkv"].shape == (t, (32 + 2 * 8) * 128 // 4, 4096)
    assert ops["core"].shape == (1, 8, 4096, 4096, 128) and ops["core"].count == 2
    assert ops["fc1"].shape == (t, 2 * 14336 // 4, 4096) and ops["fc2"].shape == (t, 4096, 14336 // 4)
    assert ops["cp-ring-kv"].bytes == 2 * 4096 * (8 // 4) * 128 * 2  # K and V of 2 kv heads, bf16
    assert ops["sp-allgather"].kind == OpKind.ALL_GATHER and ops["sp-allgather"].group == 4
    assert ops["lm-head"].shape == (t, 128256 // 4, 4096)


def test_shapes_moe_by_hand() -> None:
    ops = _ops(MIXTRAL, "dp=8,ep=4")
    # 8192 tokens x top-2 from 4 ranks spread over 8 experts -> 8192 tokens per local expert
    assert ops["expert-fc1"].shape == (8192, 2 * 14336, 4096) and ops["expert-fc1"].count == 2
    a2a = ops["ep-dispatch-combine"]
    assert (a2a.kind, a2a.group, a2a.bytes) == (OpKind.ALL_TO_ALL, 4, 8192 * 2 * 4096 * 2)
    assert ops["edp-grads"].group == 2  # each expert replicated over dp*cp*tp/(ep*etp) = 2
