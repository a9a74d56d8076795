"""Plans as text: the `tp=8,pp=2,...` string of the CLI and the versioned JSON form.

The JSON form round-trips exactly: `plan_from_json(plan_to_json(p)) == p`.
"""

from __future__ import annotations

import json
from dataclasses import field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from autoplan.errors import ConfigError
from autoplan.types import (
    PLAN_KEYS,
    Dispatch,
    Job,
    Offload,
    Optimizer,
    Placement,
    Plan,
    Recompute,
    Strategy,
    strategy_fields,
    value,
)

PLAN_SCHEMA_VERSION = 1
_INT_KEYS = {"tp", "pp", "dp", "cp", "ep", "etp", "vpp", "mbs", "zero"}
_BOOL_KEYS = {"sp", "overlap_grad_reduce", "overlap_param_gather", "tp_comm_overlap", "ep_overlap"}
_ENUM_KEYS = {"recompute": Recompute, "offload": Offload, "dispatch": Dispatch}
_STRING_KEYS = set(PLAN_KEYS) | _BOOL_KEYS | set(_ENUM_KEYS)  # offload and dispatch too, e.g. --fix offload=none


def _parse_value(key: str, raw: str) -> object:
    raw = raw.strip()
    if key in _INT_KEYS:
        if not raw.isdigit():
            raise ConfigError(f"plan key {key}={raw!r} must be a positive integer, e.g. {key}=2")
        return int(raw)
    if key in _BOOL_KEYS:
        if raw.lower() not in ("0", "1", "true", "false", "on", "off"):
            raise ConfigError(f"plan key {key}={raw!r} must be 0 or 1")
        return raw.lower() in ("1", "true", "on")
    enum = _ENUM_KEYS[key]
    try:
        return enum(raw.lower())
    except ValueError:
        raise ConfigError(f"plan key {key}={raw!r} must be one of {[e.value for e in enum]}") from None


def parse_plan_keys(text: str) -> dict[str, object]:
    """`"tp=8,pp=2,recompute=full"` -> {"tp": 8, "pp": 2, "recompute": Recompute.FULL}."""
    out: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise ConfigError(f"plan item {item!r} is not key=value; write e.g. 'tp=8,pp=2,dp=4'")
        if key in out:
            raise ConfigError(f"plan key {key!r} is given twice in {text!r}; give each key once")
        if key not in _STRING_KEYS:
            raise ConfigError(f"unknown plan key {key!r}; known keys: {', '.join(sorted(_STRING_KEYS))}")
        out[key] = _parse_value(key, raw)
    if not out:
        raise ConfigError("empty plan; write e.g. 'tp=8,pp=2,dp=4'")
    return out


def strategy_from_keys(keys: dict[str, object]) -> Strategy:
    return Strategy(**keys)


def strategy_to_dict(s: Strategy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in strategy_fields():
        v = getattr(s, name)
        if isinstance(v, tuple):
            v = [str(x) if isinstance(x, Recompute) else x for x in v]
        elif isinstance(v, Recompute | Offload | Dispatch):
            v = v.value
        out[name] = v
    return out


def strategy_from_dict(d: dict[str, Any]) -> Strategy:
    known = set(strategy_fields())
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown strategy keys {sorted(unknown)} in plan JSON; known: {sorted(known)}")
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k in _ENUM_KEYS:
            v = _parse_value(k, str(v))
        elif k == "stage_layers":
            v = tuple(int(x) for x in v)
        elif k == "stage_recompute":
            v = tuple(Recompute(x) for x in v)
        kw[k] = v
    return Strategy(**kw)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    main = strategy_to_dict(plan.main)
    out: dict[str, Any] = {"schema_version": PLAN_SCHEMA_VERSION, **main}
    out["placement"] = {"order": list(plan.placement.order), "naive": plan.placement.naive}
    if len(plan.strategies) > 1 or plan.strategies[0][0] != "language":
        # a list keeps model order through sort_keys; the first module is the plan's main one
        out["modules"] = [{"name": name, **strategy_to_dict(s)} for name, s in plan.strategies]
    return out


def plan_from_dict(d: dict[str, Any]) -> Plan:
    """A plan from its JSON form; any malformed field is one ConfigError naming it."""
    try:
        return _plan_from_dict(d)
    except ConfigError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise ConfigError(f"malformed plan JSON ({type(e).__name__}: {e}); write it with 'autoplan plan -o'") from None


def _plan_from_dict(d: dict[str, Any]) -> Plan:
    d = dict(d)
    version = d.pop("schema_version", PLAN_SCHEMA_VERSION)
    if version != PLAN_SCHEMA_VERSION:
        raise ConfigError(f"plan schema_version={version} is not supported; this autoplan reads {PLAN_SCHEMA_VERSION}")
    placement_d = d.pop("placement", None) or {}
    placement = Placement(order=tuple(placement_d.get("order", Placement().order)),
                          naive=bool(placement_d.get("naive", False)))
    modules = d.pop("modules", None)
    if isinstance(modules, dict):
        modules = [{"name": name, **sd} for name, sd in modules.items()]
    if modules:
        strategies = tuple((sd["name"], strategy_from_dict({k: v for k, v in sd.items() if k != "name"}))
                           for sd in modules)
    else:
        strategies = (("language", strategy_from_dict(d)),)
    return Plan(strategies=strategies, placement=placement)


def plan_to_json(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2, sort_keys=True)


def plan_from_json(text: str) -> Plan:
    return plan_from_dict(json.loads(text))


def read_plan_file(path: Path) -> tuple[Plan, dict[str, Any]]:
    """A plan file is either a bare plan or a record {"plan": ..., "model": ..., ...}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read plan file {path}: {e}; pass a JSON written by 'autoplan plan -o'") from None
    if not isinstance(data, dict):
        raise ConfigError(f"plan file {path} must hold a JSON object")
    if "plan" in data and isinstance(data["plan"], dict):
        return plan_from_dict(data["plan"]), data
    return plan_from_dict(data), {}


def parse_plan(text: str, module: str = "language") -> Plan:
    """A PLAN argument: a path to a plan JSON file, or a key=value string."""
    path = Path(text)
    if text.endswith(".json") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"plan file {text} does not exist; pass a path or a string like 'tp=8,pp=2'")
        return read_plan_file(path)[0]
    return Plan.single(strategy_from_keys(parse_plan_keys(text)), module=module)


def job_to_dict(job: Job) -> dict[str, Any]:
    return {f.name: (getattr(job, f.name).value if isinstance(getattr(job, f.name), Optimizer)
                     else getattr(job, f.name)) for f in dataclass_fields(job)}


def job_from_dict(d: dict[str, Any]) -> Job:
    known = {f.name for f in dataclass_fields(Job)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown job keys {sorted(unknown)}; known: {sorted(known)}")
    kw = dict(d)
    if "optimizer" in kw:
        kw["optimizer"] = Optimizer(kw["optimizer"])
    return Job(**kw)


@value
class PlanRecord:
    """What `autoplan plan -o` writes: the plan with the inputs it was made for, so `explain`,
    `diff`, `export` and `verify` can re-derive every number from the one estimator."""

    model: str  # the MODEL argument: preset name or path
    cluster: str  # the CLUSTER argument: preset name or path
    devices: int
    job: Job
    plan: Plan
    estimate: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = {"schema_version": PLAN_SCHEMA_VERSION, "model": self.model, "cluster": self.cluster,
               "devices": self.devices, "job": job_to_dict(self.job), "plan": plan_to_dict(self.plan)}
        if self.estimate is not None:
            out["estimate"] = self.estimate
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlanRecord:
        missing = {"model", "cluster", "devices", "job", "plan"} - set(d)
        if missing:
            raise ConfigError(f"plan record lacks {sorted(missing)}; write it with 'autoplan plan -o FILE'")
        version = d.get("schema_version", PLAN_SCHEMA_VERSION)
        if version != PLAN_SCHEMA_VERSION:
            raise ConfigError(f"plan record schema_version={version} is not supported; this autoplan reads "
                              f"{PLAN_SCHEMA_VERSION}")
        try:
            estimate = d.get("estimate")
            return cls(model=str(d["model"]), cluster=str(d["cluster"]), devices=int(d["devices"]),
                       job=job_from_dict(d["job"]), plan=plan_from_dict(d["plan"]),
                       estimate=estimate if isinstance(estimate, dict) else None)
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"malformed plan record ({type(e).__name__}: {e}); "
                              "write it with 'autoplan plan -o'") from None


def read_record(path: Path) -> PlanRecord:
    plan, data = read_plan_file(path)
    if not data:
        raise ConfigError(f"{path} holds a bare plan without model/cluster/job; write it with 'autoplan plan -o FILE'")
    return PlanRecord.from_dict(data)


def write_record(record: PlanRecord, path: Path) -> None:
    try:
        path.write_text(json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e}") from None
