"""`modelfleet-dev`: the local fleet and its demo (development only; `modelfleet` is the operator's CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelfleet_cli.local_home import default_home
from modelfleet_cli.output import out

from . import fleet

app = typer.Typer(
    help="modelfleet-dev: run the whole fleet on this machine (`make demo`) and watch its closed loop.",
    no_args_is_help=True,
)


@app.command()
def up() -> None:
    """Start every service of the local fleet that is not running, then show the fleet's health
    (Kafka and MLflow are started before, by `make kafka mlflow`)."""
    fleet.up(default_home())


@app.command()
def status() -> None:
    """Show the local fleet's health: each service's endpoint, readiness and log file."""
    fleet.show(default_home())


@app.command()
def down() -> None:
    """Stop every service of the local fleet (SIGTERM, then SIGKILL); `make down` also stops Kafka,
    MLflow and PostgreSQL."""
    fleet.down(default_home())


@app.command()
def demo(
    drift: Annotated[
        int, typer.Option(min=1, help="Models to drift, spread over at least 3 use cases (never clinical).")
    ] = 5,
    timeout: Annotated[float, typer.Option(min=60, help="Seconds before the demo gives up.")] = 1500.0,
    rate: Annotated[
        float, typer.Option(min=1, help="Target requests per second to serving, all models.")
    ] = 20.0,
    fleet_dir: Annotated[Path, typer.Option("--fleet", help="The fleet to apply.")] = Path("examples/fleet"),
) -> None:
    """The closed loop, live: apply the example fleet, serve it, drift some models, watch them
    retrain and get promoted (run by `make demo`, on the fleet `make demo` starts)."""
    from .demo import DemoOptions
    from .demo import run as run_demo

    # The CLI's console: as wide as the terminal, or unclipped in a log file or a pipe.
    code = run_demo(DemoOptions(fleet_dir=fleet_dir, drift=drift, timeout=timeout, rate=rate), out)
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
