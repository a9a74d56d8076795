"""Raw JSON/YAML mappings to typed hardware values, with one-line errors that name the fix.

Numbers may be written `450e9`: YAML 1.1 reads that as text (its floats need a dot), so a
numeric string is accepted wherever a number is expected.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, fields
from typing import Any

from autoplan.errors import ConfigError
from autoplan.types import Accelerator, FabricTier

TIER_FIELDS = ("name", "span", "bytes_per_s", "latency_s", "oversubscription")
_ACCELERATOR_INTS = ("scale_up_domain", "devices_per_node")
_ACCELERATOR_FLOATS = ("hbm_bytes", "hbm_bytes_per_s", "scale_up_bytes_per_s", "nic_bytes_per_s")


def number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{what}={value!r} is not a number; write e.g. 450e9")
    try:
        x = float(value.replace("_", "")) if isinstance(value, str) else float(value)
    except ValueError:
        raise ConfigError(f"{what}={value!r} is not a number; write e.g. 450e9") from None
    if not math.isfinite(x):
        raise ConfigError(f"{what}={value!r} must be finite")
    return x


def positive(value: Any, what: str) -> float:
    x = number(value, what)
    if x <= 0:
        raise ConfigError(f"{what}={value!r} must be > 0")
    return x


def count(value: Any, what: str) -> int:
    """A whole number >= 1 (devices, spans, node sizes)."""
    x = number(value, what)
    if x != int(x) or x < 1:
        raise ConfigError(f"{what}={value!r} must be a whole number >= 1")
    return int(x)


def check_keys(raw: Any, allowed: set[str] | tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        got = "nothing (is it empty?)" if raw is None else type(raw).__name__
        raise ConfigError(f"{where} must be a mapping of field: value, got {got}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; allowed fields are {sorted(allowed)}")
    return raw


def require(raw: dict[str, Any], key: str, where: str) -> Any:
    if key not in raw:
        raise ConfigError(f"{where}: missing field {key!r}; add it (see docs/cluster-format.md)")
    return raw[key]


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{what} must be a list of strings, got {value!r}")
    return tuple(str(v) for v in value)


def _peaks(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}: peak_flops_per_s must map dtype to dense FLOP/s, e.g. {{bf16: 1e15}}")
    return {str(k): positive(v, f"{where}: peak_flops_per_s.{k}") for k, v in value.items()}


def accelerator_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Accelerator))


def required_accelerator_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Accelerator) if f.default is MISSING and f.default_factory is MISSING)


def accelerator_from(raw: Any, where: str, extra: tuple[str, ...] = ()) -> Accelerator:
    """An `Accelerator` from a catalog entry or an inline cluster-file mapping.

    `extra` names catalog-only keys (aliases, notes) that are read elsewhere or kept for people.
    """
    raw = check_keys(raw, (*accelerator_fields(), *extra), where)
    for key in required_accelerator_fields():
        require(raw, key, where)
    estimated = _strings(raw.get("estimated", ()), f"{where}: estimated")
    stray = sorted(set(estimated) - set(accelerator_fields()))
    if stray:
        raise ConfigError(f"{where}: estimated names {stray[0]!r}, which is not an accelerator field")
    return Accelerator(
        name=str(raw["name"]),
        vendor=str(raw["vendor"]),
        generation=str(raw["generation"]),
        peak_flops_per_s=_peaks(raw["peak_flops_per_s"], where),
        **{k: positive(raw[k], f"{where}: {k}") for k in _ACCELERATOR_FLOATS},
        **{k: count(raw[k], f"{where}: {k}") for k in _ACCELERATOR_INTS},
        estimated=estimated,
        sources=_strings(raw.get("sources", ()), f"{where}: sources"),
    )


def overrides_from(raw: dict[str, Any], where: str) -> dict[str, int | float]:
    """The node and link fields a cluster file may set over its accelerator's defaults."""
    out: dict[str, int | float] = {}
    for key in _ACCELERATOR_INTS:
        if key in raw:
            out[key] = count(raw[key], f"{where}: {key}")
    for key in ("scale_up_bytes_per_s", "nic_bytes_per_s"):
        if key in raw:
            out[key] = positive(raw[key], f"{where}: {key}")
    return out


def tier_from(raw: Any, where: str) -> FabricTier:
    raw = check_keys(raw, TIER_FIELDS, where)
    latency = number(require(raw, "latency_s", where), f"{where}: latency_s")
    if latency < 0:
        raise ConfigError(f"{where}: latency_s={latency} must be >= 0")
    oversubscription = number(raw.get("oversubscription", 1.0), f"{where}: oversubscription")
    if oversubscription < 1.0:
        raise ConfigError(
            f"{where}: oversubscription={oversubscription} must be >= 1 (1:2 is 2.0, non-blocking 1.0)"
        )
    return FabricTier(
        name=str(require(raw, "name", where)),
        span=count(require(raw, "span", where), f"{where}: span"),
        bytes_per_s=positive(require(raw, "bytes_per_s", where), f"{where}: bytes_per_s"),
        latency_s=latency,
        oversubscription=oversubscription,
    )


def tiers_from(raw: Any, where: str) -> tuple[FabricTier, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: fabric must be a non-empty list of tiers, innermost first")
    tiers = tuple(tier_from(t, f"{where}: fabric[{i}]") for i, t in enumerate(raw))
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: fabric tier names repeat in {names}; give each tier its own name")
    spans = [t.span for t in tiers]
    if spans != sorted(spans):
        raise ConfigError(
            f"{where}: fabric tiers must widen outward (innermost first), got spans {spans}; "
            "reorder the tiers or fix their spans"
        )
    return tiers
