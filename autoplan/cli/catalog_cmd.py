"""`autoplan catalog`: what models, accelerators and clusters autoplan knows."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from autoplan.cli.common import JsonOpt, echo_json, user_errors


class What(StrEnum):
    MODELS = "models"
    ACCELERATORS = "accelerators"
    CLUSTERS = "clusters"


def register(app: typer.Typer) -> None:
    app.command("catalog")(catalog_command)


@user_errors
def catalog_command(
    what: Annotated[What, typer.Argument(help="models | accelerators | clusters")],
    json_out: JsonOpt = False,
) -> None:
    """List the built-in model presets, accelerators or cluster presets."""
    rows = {What.MODELS: _models, What.ACCELERATORS: _accelerators, What.CLUSTERS: _clusters}[what]()
    if json_out:
        echo_json(rows)
        return
    for row in rows:
        typer.echo("  ".join(f"{v}" for v in row.values()))


def _models() -> list[dict[str, object]]:
    from autoplan.frontends import load_model, preset_names

    rows = []
    for name in preset_names():
        m = load_model(name)
        lang = m.modules[0]
        rows.append({"name": f"{name:16}", "params_b": f"{m.params / 1e9:8.1f}B",
                     "active_b": f"{m.active_params / 1e9:7.1f}B active", "layers": f"{lang.num_layers:4d} layers",
                     "hidden": f"hidden {lang.hidden}", "moe": "MoE" if m.is_moe else "dense"})
    return rows


def _accelerators() -> list[dict[str, object]]:
    from autoplan.cost_models.catalog import accelerator, accelerator_names

    rows = []
    for name in accelerator_names():
        a = accelerator(name)
        rows.append({"name": f"{name:15}", "bf16": f"{a.peak('bf16') / 1e12:7.0f} TFLOP/s",
                     "hbm": f"{a.hbm_bytes / 1e9:5.0f} GB", "scale_up": f"domain {a.scale_up_domain:5d}",
                     "nic": f"NIC {a.nic_bytes_per_s * 8 / 1e9:4.0f} Gb/s",
                     "estimated": ("estimated: " + ",".join(a.estimated)) if a.estimated else ""})
    return rows


def _clusters() -> list[dict[str, object]]:
    from autoplan.cost_models.catalog import cluster_names, load_cluster

    rows = []
    for name in cluster_names():
        c = load_cluster(name)
        rows.append({"name": f"{name:20}", "devices": f"{c.devices:6d} x {c.accelerator.name}",
                     "tiers": " > ".join(f"{t.name}({t.span})" for t in c.tiers)})
    return rows
