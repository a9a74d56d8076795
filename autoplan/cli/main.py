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
    """Run the CLI. Usage errors (a missing option, a bad choice) become one line on stderr, as
    bad input does everywhere in autoplan (DESIGN.md contract); bare `autoplan` prints the help."""
    app = build_app()
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    try:
        code = app(standalone_mode=False)
    except AutoplanError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except Exception as e:  # the CLI parser's own errors (click's ClickException API), duck-typed
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            if type(e).__name__ == "Abort":
                typer.echo("error: aborted", err=True)
                sys.exit(130)
            raise
        ctx = getattr(e, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        typer.echo(f"error: {e.format_message()}{where}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
