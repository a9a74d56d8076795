"""Entry point: builds the Typer app from one module per command and turns user errors into
one line on stderr with exit code 2 (DESIGN.md contract)."""

from __future__ import annotations

import sys

import typer

from autoplan.errors import AutoplanError

COMMAND_MODULES = (
    "estimate_cmd",
    "plan_cmd",
    "explain_cmd",
    "diff_cmd",
    "export_cmd",
    "verify_cmd",
    "catalog_cmd",
)


def build_app() -> typer.Typer:
    import importlib

    app = typer.Typer(
        name="autoplan",
        help="Auto-parallelism planning for large-model training: plan, estimate, explain, diff, export, verify.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"autoplan.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"autoplan.cli.{name}":
                raise
            continue
        module.register(app)
    return app


def main() -> None:
    app = build_app()
    try:
        app(standalone_mode=True)
    except AutoplanError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
