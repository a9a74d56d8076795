"""Plans as values: the key=value string, the versioned JSON form, plan records, and the
validation every Strategy does on itself."""

from __future__ import annotations

import json

import pytest

from autoplan.errors import ConfigError
from autoplan.plan_io import (
    PlanRecord,
    parse_plan,
    parse_plan_keys,
    plan_from_json,
    plan_to_json,
    read_plan_file,
    read_record,
    write_record,
)
from autoplan.types import Dispatch, Job, Offload, Optimizer, Placement, Plan, Recompute, Strategy

# --- the plan string --------------------------------------------------------------------------


def test_plan_string_defaults():
    s = parse_plan("tp=8").main
    assert (s.tp, s.pp, s.dp, s.cp, s.ep, s.etp, s.vpp, s.mbs) == (8, 1, 1, 1, 1, 1, 1, 1)
    assert s.sp is False and s.zero == 0 and s.recompute is Recompute.NONE


def test_plan_string_every_key():
    keys = parse_plan_keys("tp=8, pp=4 ,dp=16,cp=2,ep=1,etp=1,vpp=5,mbs=2,sp=1,zero=1,RECOMPUTE=Selective")
    assert keys == {"tp": 8, "pp": 4, "dp": 16, "cp": 2, "ep": 1, "etp": 1, "vpp": 5, "mbs": 2, "sp": True,
                    "zero": 1, "recompute": Recompute.SELECTIVE}
    s = parse_plan("tp=8,pp=4,dp=16,cp=2,vpp=5,mbs=2,sp=1,zero=1,recompute=selective").main
    assert s.devices == 8 * 4 * 16 * 2 and s.sp and s.recompute is Recompute.SELECTIVE


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("on", True), ("0", False),
                                           ("false", False), ("off", False)], ids=lambda x: str(x))
def test_plan_string_bool_spellings(raw, expected):
    assert parse_plan_keys(f"sp={raw}")["sp"] is expected


def test_plan_string_extra_keys():
    keys = parse_plan_keys("offload=optimizer,dispatch=allgather,tp_comm_overlap=1")
    assert keys == {"offload": Offload.OPTIMIZER, "dispatch": Dispatch.ALL_GATHER, "tp_comm_overlap": True}


@pytest.mark.parametrize(
    "text, named",
    [
        ("tq=8", "'tq'"),
        ("tp=eight", "'eight'"),
        ("tp=-2", "'-2'"),
        ("tp=2.5", "'2.5'"),
        ("sp=maybe", "'maybe'"),
        ("recompute=partial", "'partial'"),
        ("offload=disk", "'disk'"),
        ("tp8", "'tp8'"),
        ("", "empty plan"),
        (" , ", "empty plan"),
    ],
    ids=["unknown-key", "word", "negative", "fraction", "bad-bool", "bad-recompute", "bad-offload", "no-equals",
         "empty", "only-commas"],
)
def test_plan_string_errors_name_the_value(text, named):
    with pytest.raises(ConfigError, match=named):
        parse_plan(text)


@pytest.mark.parametrize(
    "text, named",
    [("tp=0", "tp=0"), ("zero=4", "zero=4"), ("pp=1,vpp=2", "vpp=2"), ("tp=2,ep=4", "ep\\*etp=4")],
    ids=["tp-zero", "zero-4", "vpp-without-pp", "ep-not-folding"],
)
def test_strategy_rejects_bad_values(text, named):
    with pytest.raises(ConfigError, match=named):
        parse_plan(text)


def test_missing_plan_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_plan(str(tmp_path / "nope.json"))


# --- Strategy validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"dp": 0}, "dp=0"),
        ({"mbs": -1}, "mbs=-1"),
        ({"tp": 2.0}, "tp=2.0"),
        ({"zero": 5}, "zero=5"),
        ({"vpp": 2}, "vpp=2 needs pp > 1"),
        ({"pp": 2, "stage_layers": (4, 4, 4)}, "stage_layers has 3 entries; it needs pp\\*vpp=2"),
        ({"pp": 2, "stage_recompute": (Recompute.FULL,)}, "stage_recompute has 1 entries; it needs pp=2"),
        ({"dp": 2, "ep": 4}, "ep\\*etp=4 must divide tp\\*dp\\*cp=2"),
    ],
    ids=["dp-0", "mbs-negative", "tp-float", "zero-5", "vpp-no-pp", "stage-layers-length",
         "stage-recompute-length", "ep-too-wide"],
)
def test_strategy_validation_errors(kwargs, named):
    with pytest.raises(ConfigError, match=named):
        Strategy(**kwargs)


def test_strategy_is_a_hashable_value():
    a, b = Strategy(tp=2, dp=4), Strategy(dp=4, tp=2)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.devices == 8 and a.with_(pp=2).devices == 16 and a.devices == 8


def test_expert_data_parallel_degree():
    # Megatron-Core: expert-dp = dp·cp·tp / (ep·etp)
    assert Strategy(tp=2, dp=8, cp=2, ep=4, etp=2).expert_dp == 2 * 8 * 2 // 8


# --- JSON round trips ---------------------------------------------------------------------------

FULL = Strategy(tp=4, pp=2, dp=8, cp=2, ep=4, etp=2, vpp=2, mbs=2, sp=True, zero=1, recompute=Recompute.SELECTIVE,
                offload=Offload.OPTIMIZER, dispatch=Dispatch.ALL_GATHER, overlap_grad_reduce=False,
                overlap_param_gather=False, overlap_p2p=False, tp_comm_overlap=True, ep_overlap=True,
                stage_layers=(3, 5, 5, 3), stage_recompute=(Recompute.FULL, Recompute.NONE))

ROUND_TRIP = {
    "default": Plan.single(Strategy()),
    "every-field": Plan.single(FULL),
    "stage-split": Plan.single(Strategy(pp=4, dp=2, stage_layers=(7, 9, 9, 7),
                                        stage_recompute=(Recompute.FULL, Recompute.SELECTIVE, Recompute.NONE,
                                                         Recompute.NONE))),
    "placement": Plan.single(Strategy(tp=2, dp=4), placement=Placement(order=("cp", "tp", "dp", "pp"))),
    "naive-placement": Plan.single(Strategy(tp=2, dp=4), placement=Placement(naive=True)),
    "other-module-name": Plan.single(Strategy(tp=2), module="text"),
    "multi-module": Plan(strategies=(("vision", Strategy(dp=8)), ("language", FULL)),
                         placement=Placement(order=("tp", "dp", "cp", "pp"))),
}


@pytest.mark.parametrize("plan", ROUND_TRIP.values(), ids=ROUND_TRIP.keys())
def test_plan_json_round_trip_is_exact(plan):
    text = plan_to_json(plan)
    back = plan_from_json(text)
    assert back == plan and hash(back) == hash(plan)
    assert plan_to_json(back) == text


def test_plan_json_is_versioned_and_readable():
    d = json.loads(plan_to_json(Plan.single(Strategy(tp=2, dp=4, recompute=Recompute.FULL))))
    assert d["schema_version"] == 1 and d["tp"] == 2 and d["recompute"] == "full"
    assert d["placement"] == {"order": ["tp", "cp", "dp", "pp"], "naive": False}


@pytest.mark.parametrize(
    "patch, named",
    [({"schema_version": 99}, "schema_version=99"), ({"tpp": 2}, "tpp"), ({"recompute": "some"}, "'some'")],
    ids=["future-version", "unknown-key", "bad-enum"],
)
def test_plan_json_errors(patch, named):
    d = {**json.loads(plan_to_json(Plan.single(Strategy(tp=2)))), **patch}
    with pytest.raises(ConfigError, match=named):
        plan_from_json(json.dumps(d))


def test_plan_file_reads_bare_plan_and_record(tmp_path):
    plan = ROUND_TRIP["stage-split"]
    bare = tmp_path / "bare.json"
    bare.write_text(plan_to_json(plan))
    assert read_plan_file(bare) == (plan, {}) and parse_plan(str(bare)) == plan


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"], ids=["malformed", "not-an-object"])
def test_bad_plan_file(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=str(path)):
        read_plan_file(path)


# --- plan records -------------------------------------------------------------------------------


def test_plan_record_round_trip(tmp_path):
    job = Job(global_batch=64, seq_len=2048, dtype="fp16", optimizer=Optimizer.SGD, flash_attention=False,
              dropout=True, fp32_grads=True, moe_imbalance=1.25)
    record = PlanRecord(model="llama3.1-8b", cluster="h100", devices=64, job=job, plan=ROUND_TRIP["every-field"],
                        estimate={"step_time_s": 1.5})
    path = tmp_path / "record.json"
    write_record(record, path)
    back = read_record(path)
    assert back == record and back.job == job and back.plan == record.plan
    assert back.estimate == {"step_time_s": 1.5}
    assert PlanRecord.from_dict(record.to_dict()) == record


def test_record_needs_its_inputs(tmp_path):
    bare = tmp_path / "bare.json"
    bare.write_text(plan_to_json(Plan.single(Strategy())))
    with pytest.raises(ConfigError, match="bare plan"):
        read_record(bare)
    with pytest.raises(ConfigError, match="lacks \\['cluster', 'devices', 'job'\\]"):
        PlanRecord.from_dict({"model": "x", "plan": {}})


def test_record_rejects_unknown_job_keys():
    record = PlanRecord(model="m", cluster="c", devices=1, job=Job(global_batch=1, seq_len=1),
                        plan=Plan.single(Strategy())).to_dict()
    record["job"]["batch"] = 3
    with pytest.raises(ConfigError, match="unknown job keys \\['batch'\\]"):
        PlanRecord.from_dict(record)
