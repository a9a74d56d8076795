"""Every CLI command through typer's CliRunner, the error paths too: a user error is one line
on stderr starting `error:`, exit code 2, and never a traceback (STYLE.md §10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoplan.cli.main import build_app

APP = build_app()
RUNNER = CliRunner()  # keeps stdout and stderr apart on Result (click >= 8.2)
ESTIMATE_KEYS = {"step_time_s", "tokens_per_s", "mfu", "hfu", "model_tflops_per_device", "peak_memory_gib", "fits",
                 "breakdown"}
TINY_CONFIG = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 8,
               "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 4096, "tie_word_embeddings": False}


def run(*args: str, code: int = 0):
    result = RUNNER.invoke(APP, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def assert_user_error(*args: str, mentions: str = ""):
    result = run(*args, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert mentions.lower() in lines[0].lower()
    return lines[0]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


@pytest.fixture(scope="module")
def saved_plans(tmp_path_factory, tiny_config) -> dict[str, Path]:
    """A planned record, and a hand-made slower record of the same job, for explain and diff."""
    folder = tmp_path_factory.mktemp("plans")
    best = folder / "best.json"
    run("plan", "-m", tiny_config, "-c", "h100", "-n", 8, "--global-batch", 16, "--seq-len", 2048, "-o", best)
    record = json.loads(best.read_text())
    slow = dict(record)
    slow["plan"] = {"tp": 8, "pp": 1, "dp": 1, "recompute": "full"}
    slower = folder / "slower.json"
    slower.write_text(json.dumps(slow))
    return {"best": best, "slower": slower}


# --- estimate ------------------------------------------------------------------------------------


def test_estimate_table():
    out = run("estimate", "-m", "llama3.1-8b", "-c", "h100", "-p", "tp=2,dp=4,sp=1,recompute=selective").stdout
    assert "llama3.1-8b" in out and "8 x h100-sxm-80gb" in out
    assert "tp=2,pp=1,dp=4" in out and "step time" in out and "MFU" in out


def test_estimate_json():
    out = run("estimate", "-m", "llama3.1-8b", "-c", "h100", "-p", "tp=2,dp=4,sp=1", "--json",
              "--global-batch", 32, "--seq-len", 4096).stdout
    d = json.loads(out)
    assert set(d) >= ESTIMATE_KEYS
    assert d["devices"] == 8 and d["global_batch"] == 32 and d["seq_len"] == 4096
    assert d["tokens_per_s"] == pytest.approx(32 * 4096 / d["step_time_s"])
    assert sum(d["breakdown"]["time_s"].values()) == pytest.approx(d["step_time_s"])
    assert isinstance(d["fits"], bool) and 0 < d["mfu"] < 1


def test_estimate_from_config_file_and_plan_file(tiny_config, tmp_path):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"tp": 2, "dp": 2}))
    d = json.loads(run("estimate", "-m", tiny_config, "-c", "h100", "-p", plan, "--json").stdout)
    assert d["devices"] == 4 and d["fits"]


# --- catalog -------------------------------------------------------------------------------------


@pytest.mark.parametrize("what, expect", [("models", "llama3.1-8b"), ("accelerators", "h100-sxm-80gb"),
                                          ("clusters", "dgx-h100-superpod")])
def test_catalog(what, expect):
    assert expect in run("catalog", what).stdout
    rows = json.loads(run("catalog", what, "--json").stdout)
    assert isinstance(rows, list) and any(expect in str(r["name"]) for r in rows)


def test_catalog_unknown_kind_is_a_usage_error():
    result = run("catalog", "gpus", code=2)
    assert "Traceback" not in result.output


# --- plan ----------------------------------------------------------------------------------------

PLAN_ARGS = ("plan", "-m", "tiny", "-c", "h100", "-n", 8, "--global-batch", 16, "--seq-len", 2048)


def plan_args(tiny_config: Path, *extra: str) -> list[str]:
    return [str(tiny_config) if a == "tiny" else a for a in PLAN_ARGS] + list(extra)


def test_plan_table(tiny_config):
    out = run(*plan_args(tiny_config)).stdout
    assert out.startswith("best of ") and "plan        tp=" in out and "step time" in out


def test_plan_json(tiny_config):
    d = json.loads(run(*plan_args(tiny_config, "--json")).stdout)
    assert {"plan", "estimate", "search_time_s", "candidates"} <= set(d)
    assert set(d["estimate"]) >= ESTIMATE_KEYS and d["estimate"]["fits"]
    p = d["plan"]
    assert p["tp"] * p["pp"] * p["dp"] * p["cp"] == 8 and d["candidates"] > 0


def test_plan_top_three(tiny_config):
    out = run(*plan_args(tiny_config, "--top", 3)).stdout
    assert "#2 " in out and "#3 " in out and "loses on:" in out
    d = json.loads(run(*plan_args(tiny_config, "--top", 3, "--json")).stdout)
    alts = d["alternatives"]
    assert len(alts) == 2 and all(a["step_time_s"] >= d["estimate"]["step_time_s"] for a in alts)


def test_plan_fix(tiny_config):
    d = json.loads(run(*plan_args(tiny_config, "--fix", "tp=2", "--json")).stdout)
    assert d["plan"]["tp"] == 2


def test_plan_output_then_explain(saved_plans, tmp_path):
    record = json.loads(saved_plans["best"].read_text())
    assert {"model", "cluster", "devices", "job", "plan", "estimate"} <= set(record)
    out = run("explain", saved_plans["best"]).stdout
    assert "8 x h100-sxm-80gb" in out and "step time" in out and "note:" not in out
    trace = tmp_path / "trace.json"
    out = run("explain", saved_plans["best"], "--trace", trace).stdout
    assert f"wrote {trace}" in out
    assert json.loads(trace.read_text())


# --- diff ----------------------------------------------------------------------------------------


def test_diff_identical_plans(saved_plans):
    out = run("diff", saved_plans["best"], saved_plans["best"], "--fail-above", 0).stdout
    assert "predicted step time +0.0%" in out and "**Changed:** nothing" in out


def test_diff_json(saved_plans):
    d = json.loads(run("diff", saved_plans["best"], saved_plans["slower"], "--format", "json").stdout)
    assert d["step_time_change_pct"] > 1 and d["changed"]["recompute"]["new"] == "full"
    assert d["step_time_change_pct"] == pytest.approx(
        100 * (d["step_time_s"]["new"] / d["step_time_s"]["old"] - 1))


def test_diff_fails_on_regression(saved_plans):
    result = run("diff", saved_plans["best"], saved_plans["slower"], "--fail-above", 1, code=1)
    assert result.stderr.startswith("error: predicted step time regressed")
    run("diff", saved_plans["slower"], saved_plans["best"], "--fail-above", 1)  # an improvement passes


# --- user errors: one line, exit 2 ----------------------------------------------------------------


def test_unknown_model_preset():
    assert_user_error("estimate", "-m", "llama9-1t", "-c", "h100", "-p", "tp=8", mentions="llama9-1t")


def test_unknown_accelerator():
    assert_user_error("estimate", "-m", "llama3.1-8b", "-c", "z100", "-p", "tp=8", mentions="z100")


def test_unreadable_config_path(tmp_path):
    missing = tmp_path / "missing" / "config.json"
    assert_user_error("estimate", "-m", missing, "-c", "h100", "-p", "tp=8", mentions="does not exist")


def test_malformed_config_json(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama", "hidden_size": ')
    assert_user_error("estimate", "-m", bad, "-c", "h100", "-p", "tp=8", mentions="not valid JSON")


def test_unknown_plan_key():
    assert_user_error("estimate", "-m", "llama3.1-8b", "-c", "h100", "-p", "tq=8", mentions="unknown plan key 'tq'")


def test_degrees_not_matching_devices():
    assert_user_error("estimate", "-m", "llama3.1-8b", "-c", "h100", "-n", 8, "-p", "tp=2,dp=2",
                      mentions="but the cluster has 8 devices")


def test_tp_not_dividing_heads():
    assert_user_error("estimate", "-m", "llama3.1-8b", "-c", "h100", "-p", "tp=3", mentions="tp=3 must divide")


def test_model_that_fits_nowhere():
    assert_user_error("plan", "-m", "gpt3-175b", "-c", "h100", "-n", 1, "--global-batch", 8,
                      mentions="no plan fits")


@pytest.mark.parametrize("content", ["{broken", '{"tp": 2}', '{"model": "x", "plan": {"tp": 2}}'],
                         ids=["malformed", "bare-plan", "record-missing-keys"])
def test_bad_plan_file_for_explain_and_diff(tmp_path, saved_plans, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert_user_error("explain", bad)
    assert_user_error("diff", saved_plans["best"], bad)
    assert_user_error("diff", bad, saved_plans["best"])


def test_missing_plan_file_for_explain(tmp_path):
    assert_user_error("explain", tmp_path / "nope.json", mentions="nope.json")
