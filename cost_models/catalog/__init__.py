"""Hardware catalog: accelerators and cluster presets as data, each number with its source.

`accelerators.json` holds one entry per chip (dense peaks, HBM, links, node shape) plus the
default fabric constants; `cluster-*.yaml` are documented cluster files (docs/cluster-format.md).
Nothing is read at import time; each file is read once, when first asked for.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from autoplan.errors import ConfigError
from autoplan.types import Accelerator, Cluster, FabricTier

from . import parse

__all__ = ["accelerator", "accelerator_names", "cluster_names", "load_cluster"]

_CLUSTER_PREFIX = "cluster-"
_FILE_SUFFIXES = (".yaml", ".yml", ".json")
_CATALOG_ONLY_KEYS = ("aliases", "notes")  # kept in the data for people; not on `Accelerator`
_CLUSTER_FIELDS = (
    "name", "description", "accelerator", "devices", "fabric",
    "devices_per_node", "scale_up_domain", "scale_up_bytes_per_s", "nic_bytes_per_s",
)


# ---------------------------------------------------------------------------------------------
# Accelerators
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _catalog() -> dict[str, Any]:
    text = resources.files(__name__).joinpath("accelerators.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def _accelerators() -> tuple[dict[str, Accelerator], dict[str, str]]:
    """Chips by canonical name, in catalog order, and every lower-case alias to its canonical name."""
    chips: dict[str, Accelerator] = {}
    aliases: dict[str, str] = {}
    for entry in _catalog()["accelerators"]:
        chip = parse.accelerator_from(entry, f"catalog entry {entry.get('name')!r}", _CATALOG_ONLY_KEYS)
        chips[chip.name] = chip
        for alias in (chip.name, *entry.get("aliases", ())):
            aliases[alias.lower()] = chip.name
    return chips, aliases


def accelerator_names() -> list[str]:
    return list(_accelerators()[0])


def _lookup_accelerator(name: str) -> Accelerator | None:
    chips, aliases = _accelerators()
    canonical = aliases.get(name.strip().lower())
    return chips[canonical] if canonical else None


def accelerator(name: str) -> Accelerator:
    """A catalog accelerator by name or alias (`h100`, `a100`, `h100-80gb`), case-insensitive."""
    chip = _lookup_accelerator(name)
    if chip is None:
        raise ConfigError(
            f"unknown accelerator {name!r}; use one of {', '.join(accelerator_names())} "
            "(`autoplan catalog accelerators` lists them)"
        )
    return chip


# ---------------------------------------------------------------------------------------------
# Clusters
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _preset_names() -> tuple[str, ...]:
    names = (p.name for p in resources.files(__name__).iterdir())
    return tuple(sorted(n[len(_CLUSTER_PREFIX) : -len(".yaml")] for n in names
                        if n.startswith(_CLUSTER_PREFIX) and n.endswith(".yaml")))


def cluster_names() -> list[str]:
    return list(_preset_names())


@functools.lru_cache(maxsize=8)
def _preset_text(name: str) -> str:
    return resources.files(__name__).joinpath(f"{_CLUSTER_PREFIX}{name}.yaml").read_text(encoding="utf-8")


def load_cluster(spec: str, devices: int | None = None) -> Cluster:
    """A cluster from an accelerator name (its usual node and a default fabric), a cluster preset
    name, or a path to a .yaml/.yml/.json cluster file. `devices` overrides the file's count; a
    bare accelerator defaults to one node."""
    if devices is not None:
        devices = parse.count(devices, "devices")
    key = spec.strip().lower()
    if key in _preset_names():
        raw = _parse_text(_preset_text(key), f"cluster preset {key!r}", json_syntax=False)
        return _cluster_from(raw, f"cluster preset {key!r}", devices, default_name=key)
    chip = _lookup_accelerator(key)
    if chip is not None:
        n = chip.devices_per_node if devices is None else devices
        _check_devices(n, chip)
        return Cluster(name=chip.name, accelerator=chip, devices=n, tiers=default_tiers(chip, n))
    path = Path(spec).expanduser()
    if path.suffix.lower() in _FILE_SUFFIXES or path.exists():
        return _cluster_from_file(path, devices)
    raise ConfigError(
        f"unknown cluster {spec!r}: not an accelerator ({', '.join(accelerator_names())}), "
        f"a cluster preset ({', '.join(cluster_names())}) or a .yaml/.yml/.json file; "
        "see `autoplan catalog accelerators` and `autoplan catalog clusters`"
    )


def _cluster_from_file(path: Path, devices: int | None) -> Cluster:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(f"cannot read cluster file {str(path)!r}: {reason}; check the path") from None
    where = f"cluster file {str(path)!r}"
    raw = _parse_text(text, where, json_syntax=path.suffix.lower() == ".json")
    return _cluster_from(raw, where, devices, default_name=path.stem)


def _parse_text(text: str, where: str, json_syntax: bool) -> Any:
    if json_syntax:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            at = f"line {e.lineno} column {e.colno}"
            raise ConfigError(f"{where} is not valid JSON: {e.msg} at {at}; fix the syntax") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ConfigError(f"{where} is not valid YAML: {problem}{at}; fix the syntax") from None


def _cluster_from(raw: Any, where: str, devices: int | None, default_name: str) -> Cluster:
    raw = parse.check_keys(raw, _CLUSTER_FIELDS, where)
    chip = _accelerator_in(parse.require(raw, "accelerator", where), where)
    overrides = parse.overrides_from(raw, where)
    chip = replace(chip, **overrides) if overrides else chip
    n = devices if devices is not None else parse.count(parse.require(raw, "devices", where), "devices")
    _check_devices(n, chip)
    tiers = parse.tiers_from(raw["fabric"], where) if "fabric" in raw else default_tiers(chip, n)
    if tiers[-1].span < n:  # the outermost tier grows with the device count
        tiers = (*tiers[:-1], replace(tiers[-1], span=n))
    return Cluster(name=str(raw.get("name", default_name)), accelerator=chip, devices=n, tiers=tiers)


def _accelerator_in(value: Any, where: str) -> Accelerator:
    if isinstance(value, str):
        return accelerator(value)
    if isinstance(value, dict):
        return parse.accelerator_from(value, f"{where}: accelerator", ("notes",))
    raise ConfigError(f"{where}: accelerator must be a catalog name or a mapping of accelerator fields")


def _check_devices(n: int, chip: Accelerator) -> None:
    if n < 1:
        raise ConfigError(f"devices={n} must be >= 1")
    per_node = chip.devices_per_node
    if n > per_node and n % per_node:
        low = n // per_node * per_node
        raise ConfigError(
            f"devices={n} is not a whole number of {chip.name} nodes ({per_node} devices per node); "
            f"use {low} or {low + per_node}"
        )


def default_tiers(chip: Accelerator, devices: int) -> tuple[FabricTier, ...]:
    """The usual fabric of `chip`: the scale-up domain, then a rail-optimised leaf (one scalable
    unit) and a non-blocking spine; for TPUs, ICI across the slice, then DCN."""
    fabric = _catalog()["default_fabric"]
    up = chip.scale_up_domain
    if chip.generation.startswith("tpu"):
        return (
            FabricTier(name="ici", span=up, bytes_per_s=chip.scale_up_bytes_per_s,
                       latency_s=fabric["ici_latency_s"]),
            FabricTier(name="dcn", span=max(devices, up), bytes_per_s=chip.nic_bytes_per_s,
                       latency_s=fabric["dcn_latency_s"]),
        )
    unit = fabric["leaf_span_overrides"].get(chip.name, fabric["leaf_nodes"] * chip.devices_per_node)
    leaf = max(up, unit)
    return (
        FabricTier(name="scale-up", span=up, bytes_per_s=chip.scale_up_bytes_per_s,
                   latency_s=fabric["scale_up_latency_s"]),
        FabricTier(name="leaf", span=leaf, bytes_per_s=chip.nic_bytes_per_s,
                   latency_s=fabric["leaf_latency_s"]),
        FabricTier(name="spine", span=max(devices, leaf), bytes_per_s=chip.nic_bytes_per_s,
                   latency_s=fabric["spine_latency_s"], oversubscription=1.0),
    )
