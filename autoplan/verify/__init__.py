"""Numerical verification of a plan at small scale: the plan's sharded training step on virtual
devices against a single-device reference, and the operator shapes it implies at full scale.

Importing this package does not import JAX: `host_devices(n)` must run first, because XLA reads
its device count once, when JAX starts.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from autoplan.errors import ConfigError
from autoplan.types import ModelGraph, Plan

__all__ = ["host_devices", "run_verify", "BUGS"]

BUGS = ("wrong-spec", "drop-allreduce")
_COUNT_FLAG = "--xla_force_host_platform_device_count"


def host_devices(n: int) -> None:
    """Ask XLA for `n` virtual CPU devices; must run before JAX is first imported."""
    if "jax" not in sys.modules:
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_COUNT_FLAG)]
        os.environ["XLA_FLAGS"] = " ".join([*flags, f"{_COUNT_FLAG}={n}"])
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    if len(jax.devices()) < n:
        raise ConfigError(f"verify needs {n} devices but JAX started with {len(jax.devices())}; run it in a "
                          f"fresh process or set XLA_FLAGS={_COUNT_FLAG}={n} before importing jax")


def run_verify(model: ModelGraph, plan: Plan, devices: int, bug: str = "") -> dict[str, Any]:
    """Run the plan's step on `devices` virtual devices and compare it with the reference.

    Returns the JSON-able report: passed, max_abs_err, max_rel_err, first_diverging, the reduced
    config, XLA's cost cross-check and wall time.
    """
    s = plan.strategy("language")
    if s.devices != devices:
        raise ConfigError(f"plan degrees tp*pp*dp*cp={s.tp}*{s.pp}*{s.dp}*{s.cp}={s.devices} "
                          f"must equal --devices {devices}")
    if bug and bug not in BUGS:
        raise ConfigError(f"unknown injected bug {bug!r}; use one of {', '.join(BUGS)}")
    from autoplan.verify.reduced import reduce_model

    cfg = reduce_model(model, s)
    host_devices(devices)
    import jax

    from autoplan.verify.compare import compare, crosscheck
    from autoplan.verify.reduced import init_params, make_batch, reference_step
    from autoplan.verify.sharded import LR, StepSetup, sharded_step

    start = time.perf_counter()
    params = jax.jit(init_params, static_argnums=0)(cfg)
    tokens, targets = make_batch(cfg)
    reference = jax.jit(reference_step, static_argnums=(3, 4))(params, tokens, targets, cfg, LR)
    *sharded, compiled = sharded_step(params, tokens, targets, StepSetup(cfg=cfg, strategy=s, bug=bug))
    result = compare(reference, tuple(sharded), cfg)
    return {**result.to_dict(), "model": model.name, "devices": devices,
            "reduced": {k: getattr(cfg, k) for k in cfg.__slots__}, "bug": bug or None,
            "xla_crosscheck": crosscheck(compiled, cfg, s), "wall_s": time.perf_counter() - start}
