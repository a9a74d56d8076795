"""Shared CLI pieces: option types defined once, and the user-error boundary."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer

from autoplan.errors import AutoplanError

F = TypeVar("F", bound=Callable[..., Any])

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Preset name, HF config.json path, or .onnx path.")]
ClusterOpt = Annotated[
    str, typer.Option("--cluster", "-c", help="Accelerator or cluster preset name, or a cluster YAML/JSON path.")
]
DevicesOpt = Annotated[int | None, typer.Option("--devices", "-n", help="Device count (default: the preset's).")]
SeqLenOpt = Annotated[int | None, typer.Option("--seq-len", help="Sequence length in tokens.")]
GlobalBatchOpt = Annotated[int | None, typer.Option("--global-batch", help="Sequences per optimizer step.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Training compute dtype: bf16, fp16 or fp8.")]
MoeImbalanceOpt = Annotated[
    float, typer.Option("--moe-imbalance", help="Busiest expert's load over the mean (1.0 = balanced routing).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


class PlacementMode(StrEnum):
    TOPOLOGY = "topology"
    NAIVE = "naive"


PlacementOpt = Annotated[
    PlacementMode,
    typer.Option("--placement", help="topology: groups laid onto the fabric; naive: ranks in plain order, to compare."),
]


def user_errors(fn: F) -> F:
    """Turn an AutoplanError into one line on stderr and exit code 2; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AutoplanError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))
