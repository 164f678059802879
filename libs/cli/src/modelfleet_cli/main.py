"""`modelfleet`: commands people use. Each one publishes an event; services do the rest."""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from modelfleet_common.naming import TopicNamer
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts import ModelSpecRetired, RetrainRequested
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.specs import MODEL_NAME_PATTERN
from modelfleet_contracts.topics import ALL_TOPICS

from .publishing import publish_events

app = typer.Typer(help="modelfleet: run thousands of ML models without adding people.", no_args_is_help=True)
console = Console()

ModelArg = Annotated[str, typer.Argument(help="Model name, as in its spec's metadata.name.")]


def _producer() -> str:
    return f"cli:{getpass.getuser()}"


def _publish(event: Event) -> None:
    settings = ServiceSettings()
    try:
        asyncio.run(publish_events(settings, [event]))
    except Exception as error:
        console.print(f"[red]could not publish to Kafka at {settings.kafka.bootstrap}:[/] {error}")
        console.print("Is the broker running (`make kafka`)? Is FLEET_KAFKA_BOOTSTRAP right?")
        raise typer.Exit(1) from error
    console.print(f"published [bold]{event.event_type}[/] for [bold]{event.key}[/] (event {event.event_id})")


def _validate_model(name: str) -> str:
    import re

    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise typer.BadParameter(
            f"{name!r} is not a model name: use lower-case letters, digits, '.', '_' or '-' (max 120)"
        )
    return name


@app.command()
def topics() -> None:
    """List every topic of the fleet: physical name, contract(s), key and retention."""
    namer = TopicNamer(ServiceSettings().topic_prefix)
    table = Table("topic", "carries", "key", "retention", "what")
    for topic in ALL_TOPICS:
        table.add_row(
            namer.topic(topic),
            ", ".join(c.__name__ for c in topic.contracts),
            topic.key_field,
            "compacted" if topic.compacted else "delete",
            topic.description,
        )
    table.add_row(
        namer.dead_letter(), "original bytes + x-dlq-* headers", "source key", "delete", "Dead letters"
    )
    console.print(table)


@app.command()
def retrain(
    model: Annotated[str, typer.Argument(help="Model to retrain.", callback=_validate_model)],
    note: Annotated[str, typer.Option(help="Why, for the audit trail.")] = "",
) -> None:
    """Ask the trainer to retrain MODEL on its newest data."""
    _publish(RetrainRequested(producer=_producer(), model=model, reason="manual", detail=note))


@app.command()
def retire(
    model: Annotated[str, typer.Argument(help="Model to retire.", callback=_validate_model)],
    reason: Annotated[str, typer.Option(help="Why it leaves the fleet (required).")],
) -> None:
    """Retire MODEL: stop training, serving and monitoring it."""
    if not reason.strip():
        raise typer.BadParameter("say why the model is retired", param_hint="--reason")
    _publish(ModelSpecRetired(producer=_producer(), model=model, reason=reason))


if __name__ == "__main__":
    app()
