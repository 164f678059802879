"""Traces of the CLI: each command is a span, and the events it publishes carry its context.

So `modelfleet apply`, `retrain` or `rollback` start the trace the fleet continues (training,
evaluation, registration, rollout). `FLEET_OTEL_EXPORTER=otlp` (with `OTEL_EXPORTER_OTLP_ENDPOINT`)
sends the command's spans to a collector, as the services do; they are flushed when the process exits.
"""

from __future__ import annotations

import typer

from modelfleet_common.settings import ServiceSettings
from modelfleet_common.telemetry import configure_tracing, tracer


def trace_command(ctx: typer.Context) -> None:
    """Open the span of the command `ctx` is about to run; it ends when the command does."""
    if ctx.resilient_parsing or ctx.invoked_subcommand is None:
        return
    configure_tracing("cli", ServiceSettings().otel_exporter)
    name = f"modelfleet {ctx.invoked_subcommand}"
    scope = tracer().start_as_current_span(name, attributes={"modelfleet.command": ctx.invoked_subcommand})
    scope.__enter__()
    ctx.call_on_close(lambda: scope.__exit__(None, None, None))
