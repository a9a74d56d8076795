"""Error paths an adversarial review found: each is one `error:` line, exit 2, no traceback.
The entry point is run as a subprocess where its own usage-error handling is under test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_cli import assert_user_error

from autoplan.plan_io import PlanRecord, parse_plan
from autoplan.types import Job


@pytest.mark.parametrize("args, mentions", [
    (("estimate", "-m", "llama3-8b", "-c", "h100", "-p", "tp=8,tp=4"), "given twice"),
    (("estimate", "-m", "llama3-8b", "-c", "h100", "-p", "tp=8", "--seq-len", "0"), "seq_len=0"),
    (("estimate", "-m", "", "-c", "h100", "-p", "tp=8"), "--model is empty"),
    (("estimate", "-m", "llama3-8b", "-c", "", "-p", "tp=8"), "--cluster is empty"),
    (("estimate", "-m", "mixtral-8x7b", "-c", "h100", "-n", "64", "-p", "tp=2,dp=32,ep=8,sp=1",
      "--moe-imbalance", "inf"), "finite"),
    (("plan", "-m", "llama3-8b", "-c", "h100", "--fix", "tp=3"), "tp=3 must divide"),
    (("plan", "-m", "llama3-8b", "-c", "h100", "-n", "64", "--fix", "ep=2"), "MoE"),
], ids=["duplicate-key", "seq-len-0", "empty-model", "empty-cluster", "inf-imbalance",
        "fix-bad-tp", "fix-ep-dense"])
def test_bad_input_is_one_line(args, mentions):
    assert_user_error(*args, mentions=mentions)


def test_undecodable_plan_file(tmp_path):
    bad = tmp_path / "garbage.json"
    bad.write_bytes(bytes(range(256)) * 2)
    assert_user_error("estimate", "-m", "llama3-8b", "-c", "h100", "-p", str(bad), mentions="cannot read plan file")


def test_malformed_placement_in_record(tmp_path):
    record = PlanRecord(model="llama3-8b", cluster="h100-sxm-80gb", devices=8, job=Job(global_batch=8, seq_len=2048),
                        plan=parse_plan("tp=8")).to_dict()
    record["plan"]["placement"] = "tp-first"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(record))
    assert_user_error("explain", str(path), mentions="malformed")


def test_fixed_switches_are_held():
    from autoplan.api import plan

    result = plan("llama3-8b", "h100-sxm-80gb", devices=16, seq_len=2048, global_batch=64,
                  fix="tp=2,tp_comm_overlap=0,overlap_grad_reduce=0")
    s = result.best.plan.main
    assert (s.tp, s.tp_comm_overlap, s.overlap_grad_reduce) == (2, False, False)


@pytest.mark.parametrize("argv", [["catalog", "foo"], ["estimate"], ["plan", "-m", "x", "-c", "y", "--top", "0"]],
                         ids=["bad-choice", "missing-options", "bad-range"])
def test_usage_errors_from_the_entry_point_are_one_line(argv):
    proc = subprocess.run([sys.executable, "-c", "from autoplan.cli.main import main; main()", *argv],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--help" in lines[0], proc.stderr


def test_bare_command_prints_help():
    proc = subprocess.run([sys.executable, "-c", "from autoplan.cli.main import main; main()"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "plan" in proc.stdout and "estimate" in proc.stdout


def test_interleaving_with_fewer_micro_batches_than_stages_earns_no_bubble_cut():
    from autoplan.api import estimate

    def bubble(vpp: int) -> float:
        return estimate("llama3-8b", "h100-sxm-80gb", f"pp=4,dp=2,vpp={vpp}", seq_len=2048,
                        global_batch=2).time_breakdown["pp_bubble"]
    # one micro-batch per replica: its chunks run back to back, so vpp cannot shrink the bubble
    assert bubble(2) == pytest.approx(bubble(1), rel=0.05)


def test_estimate_placement_naive_moves_tp_off_nvlink():
    from test_cli import run

    args = ("estimate", "-m", "llama3.1-8b", "-c", "h100", "-n", "64", "-p", "tp=8,dp=8,sp=1", "--json")
    aware = json.loads(run(*args).stdout)
    naive = json.loads(run(*args, "--placement", "naive").stdout)
    assert naive["breakdown"]["time_s"]["tp_comm"] > 5 * aware["breakdown"]["time_s"]["tp_comm"]


def test_plan_placement_naive_reports_the_blind_plan():
    from test_cli import run

    out = json.loads(run("plan", "-m", "llama3-8b", "-c", "h100", "-n", "16", "--seq-len", "2048",
                         "--global-batch", "32", "--placement", "naive", "--json").stdout)
    assert out["plan"]["placement"]["naive"] is True


def test_dtype_and_moe_imbalance_reach_the_job():
    from test_cli import run

    base = ("estimate", "-m", "mixtral-8x7b", "-c", "h100", "-n", "64", "-p", "tp=2,dp=32,ep=8,sp=1,zero=1", "--json")
    bf16 = json.loads(run(*base).stdout)
    fp8 = json.loads(run(*base, "--dtype", "fp8").stdout)
    skewed = json.loads(run(*base, "--moe-imbalance", "1.5").stdout)
    assert fp8["step_time_s"] < bf16["step_time_s"] < skewed["step_time_s"]
    assert_user_error(*base, "--dtype", "int4", mentions="dtype")
