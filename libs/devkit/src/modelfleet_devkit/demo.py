"""`modelfleet-dev demo`: the whole fleet's closed loop, live in the terminal.

Against the local fleet `make demo` starts (demo-speed policies from `examples/demo/policies/`):

1. apply `examples/fleet/` and wait until every model is champion (or stuck: failed, rejected);
   versions whose risk class needs a signed approval are approved with the demo's own key for
   `risk-officer`, and the demo says so;
2. send every champion steady traffic with true labels (rows of its own slice of its dataset),
   then drift a subset (rows of the slice biased to high values of a few features, still with true
   labels) and keep traffic flowing until each drifted model has a new champion, or time is up;
3. print a summary (drift → retrain → promotion per drifted model, the fleet's counts) and the URLs.

One `rich.live.Live` view shows phase progress above a table with one row per model. Kafka is
read every few seconds in a background task: the lifecycle topics plus drift, retrain requests,
approval requests and grants, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from modelfleet_cli.applying import plan
from modelfleet_cli.approving import signed_approval
from modelfleet_cli.connecting import fleet_settings
from modelfleet_cli.fleet_state import (
    LIFECYCLE_TOPICS,
    ModelStatus,
    fold_status,
    read_desired_state,
    read_events,
)
from modelfleet_cli.local_home import REPO, default_home
from modelfleet_cli.manifests import DeclaredModel, check_columns, load_path
from modelfleet_cli.publishing import publish_events
from modelfleet_cli.tokens import LOCAL_TOKEN_NAME, local_serving_token, local_tokens_file
from modelfleet_cli.uploading import Uploader, UploadFailed, UploadSettings, upload_batches
from modelfleet_common.policies import load_policies
from modelfleet_common.signing import ArtifactSigner
from modelfleet_contracts import (
    ApprovalGranted,
    ApprovalRequested,
    DriftDetected,
    ModelPromoted,
    RetrainRequested,
    RiskPolicy,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.specs import RiskClass
from modelfleet_contracts.topics import (
    APPROVALS_GRANTED,
    DRIFT,
    PERFORMANCE_DEGRADATIONS,
    RETRAIN_REQUESTS,
)

from . import fleet as local
from .loop_driver import (
    DriftCandidate,
    LoopTimeline,
    ModelTraffic,
    TrafficDriver,
    choose_drift_models,
    drift_features,
    drifted_rows,
    effective_monitoring,
    effective_rollout,
    loop_timelines,
    model_slice,
    request_counts,
    rollout_requests,
    traffic_for,
)

#: What the demo reads from Kafka on every poll.
DEMO_TOPICS = (*LIFECYCLE_TOPICS, DRIFT, PERFORMANCE_DEGRADATIONS, RETRAIN_REQUESTS, APPROVALS_GRANTED)
DEMO_APPROVER = "risk-officer"
SERVING_URL = f"http://127.0.0.1:{local.PORTS['serving']}"
MLFLOW_URL = "http://127.0.0.1:5000"
POLL_SECONDS = 3.0
#: Drifted models get this many times the requests of a steady one: their canaries need them.
DRIFT_WEIGHT = 6.0
#: Concurrent requests: more only queue in serving, and queueing breaches the latency SLOs.
WORKERS = 4
#: Steady requests a model to be drifted gets past its monitoring window before the drift starts:
#: its first window (the reference of its predictions) is then steady traffic.
WARMUP_MARGIN = 40
#: How often the demo logs its progress when no terminal shows the live view.
LOG_SECONDS = 30.0
STUCK_PREFIXES = ("failed", "rejected", "rolled back", "retired")


@dataclass
class DemoOptions:
    """What `modelfleet-dev demo` was asked to do."""

    fleet_dir: Path
    drift: int = 5
    timeout: float = 1500.0
    rate: float = 20.0


@dataclass
class DemoModel:
    """A model of the applied fleet with the traffic the demo sends it."""

    declared: DeclaredModel
    use_case: str
    risk_class: str
    window_size: int
    rollout_requests: float
    steady: ModelTraffic
    drift_features: list[str]
    drifted: ModelTraffic | None

    @property
    def name(self) -> str:
        return self.declared.spec.metadata.name

    @property
    def drift_eligible(self) -> bool:
        """Drift only models the fleet retrains on drift by itself (not the critical one)."""
        return (
            self.drifted is not None
            and self.declared.spec.spec.retrain.on_drift
            and self.risk_class != "critical"
        )


@dataclass
class DemoState:
    """Everything the live view shows, refreshed by the poller and the phases."""

    models: dict[str, DemoModel]
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    events: list[Event] = field(default_factory=list)
    status: dict[str, ModelStatus] = field(default_factory=dict)
    timelines: dict[str, LoopTimeline] = field(default_factory=dict)
    drift_counts: Counter[str] = field(default_factory=Counter)
    last_drift: dict[str, DriftDetected] = field(default_factory=dict)
    retrains: dict[str, list[RetrainRequested]] = field(default_factory=dict)
    approved: set[tuple[str, str]] = field(default_factory=set)
    planned: list[str] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    drift_started_at: datetime | None = None
    champions_at: float | None = None
    phase: str = "phase 1: train → evaluate → (approval) → champion"
    messages: list[str] = field(default_factory=list)
    poll_error: str = ""

    def note(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        self.messages.append(f"{stamp} {message}")

    def fold(self, events: list[Event]) -> None:
        """Refresh the view from every event read (oldest first)."""
        self.events = events
        self.status = {row.model: row for row in fold_status(events) if row.model in self.models}
        self.drift_counts = Counter()
        self.retrains = {}
        for event in events:
            if event.occurred_at < self.started_at:
                continue
            if isinstance(event, DriftDetected):
                self.drift_counts[event.model] += 1
                self.last_drift[event.model] = event
            elif isinstance(event, RetrainRequested):
                self.retrains.setdefault(event.model, []).append(event)
        self.timelines = loop_timelines(events, self.models, self.started_at)

    def champion(self, model: str) -> str | None:
        row = self.status.get(model)
        return row.champion if row else None

    def stuck(self, model: str) -> bool:
        row = self.status.get(model)
        return bool(row and row.champion is None and row.stage.startswith(STUCK_PREFIXES))

    def promoted(self, model: str) -> bool:
        line = self.timelines.get(model)
        return bool(line and line.promoted_at)

    def settled(self, model: str) -> bool:
        """The model went round the loop: a new champion, or its candidate rolled back by policy."""
        line = self.timelines.get(model)
        return bool(line and line.settled)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def prepare_models(
    declared: list[DeclaredModel], frames: dict[str, pd.DataFrame], policies: Mapping[RiskClass, RiskPolicy]
) -> dict[str, DemoModel]:
    """Each model's steady and drifted traffic and what its monitoring and rollout need."""
    models = {}
    for model in declared:
        spec = model.spec
        policy = policies[spec.metadata.risk_class]
        rows = model_slice(frames[spec.spec.dataset.name], spec)
        monitoring = effective_monitoring(policy, spec)
        try:
            features = drift_features(rows, spec, monitoring)
            drifted: ModelTraffic | None = traffic_for(spec, drifted_rows(rows, features), kind="drifted")
        except ValueError:
            features, drifted = [], None
        models[spec.metadata.name] = DemoModel(
            declared=model,
            use_case=spec.metadata.labels.get("use_case", spec.spec.dataset.name),
            risk_class=spec.metadata.risk_class,
            window_size=monitoring.window_size or 200,
            rollout_requests=rollout_requests(effective_rollout(policy, spec)),
            steady=traffic_for(spec, rows),
            drift_features=features,
            drifted=drifted,
        )
    return models


class Demo:
    """The demo's phases, its Kafka poller and its live view."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.settings = fleet_settings()
        self.home = default_home()
        self.producer = f"cli:{getpass.getuser()}:demo"
        self.signer: ArtifactSigner | None = None
        self.state: DemoState | None = None
        self.driver = TrafficDriver(
            SERVING_URL,
            rate=options.rate,
            workers=WORKERS,
            run_id=f"demo-{uuid.uuid4().hex[:8]}",
            token=local_serving_token(self.home)[1],
        )
        self.stop = asyncio.Event()
        self.policy_dir = local.DEMO_POLICY_DIR
        self.logged_at = 0.0

    # -- before the live view -------------------------------------------------------------------

    def check_fleet(self) -> Path:
        """The policy directory the running fleet uses; refuses a fleet the demo cannot drive."""
        running = local.running_environment(self.home)
        if running is None:
            raise DemoError("the local fleet is not running: `make demo` starts it, then runs this command")
        policy_dir = Path(running.get(local.POLICY_DIR_ENV) or REPO / "policies")
        if policy_dir.resolve() != local.DEMO_POLICY_DIR.resolve():
            raise DemoError(
                f"the running fleet uses the policies in {policy_dir}, not the demo's "
                f"{local.DEMO_POLICY_DIR}: run `make down`, then `make demo`"
            )
        try:
            ready = httpx.get(f"{SERVING_URL}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            ready = False
        if not ready:
            raise DemoError(f"serving does not answer at {SERVING_URL}: see `modelfleet-dev status`")
        return policy_dir

    def prepare_approver(self) -> None:
        """The demo's key for `risk-officer`; restart the deployer if it started before the key."""
        self.signer, added = local.demo_approver(self.home, DEMO_APPROVER)
        if added:
            self.console.print(
                f"added the demo's {DEMO_APPROVER} key to {local.approvers_file(self.home)}; "
                "restarting the deployer so it reads it"
            )
            local.restart(self.home, "deployer")

    async def apply(self) -> None:
        """Publish what changed in the fleet directory, exactly as `modelfleet apply` does."""
        manifest = load_path(self.options.fleet_dir)
        state = await read_desired_state(self.settings)
        check_columns(manifest, state.dataset_specs())
        if manifest.problems:
            raise DemoError(
                f"{len(manifest.problems)} problem(s) in {self.options.fleet_dir}: "
                "run `modelfleet apply` to see them"
            )
        changes = plan(manifest, state, self.producer)
        events = [event for change in changes for event in change.events]
        if events:
            # The datasets' sources go where ingest may read them: the running fleet's store.
            store = (local.running_environment(self.home) or {}).get("FLEET_DATA_DIR")
            uploader = Uploader.from_settings(UploadSettings(data_dir=store) if store else None)
            try:
                events = await asyncio.to_thread(upload_batches, events, uploader)
            except UploadFailed as error:
                raise DemoError(str(error)) from error
            await publish_events(self.settings, events)
        counts = Counter(change.change for change in changes)
        self.console.print(
            f"applied {self.options.fleet_dir}: {len(manifest.models)} models, "
            f"{len(manifest.datasets)} datasets ({counts['created']} created, "
            f"{counts['configured']} configured, {counts['unchanged']} unchanged)"
        )
        frames = {
            d.spec.metadata.name: pd.read_csv(d.source_uri)
            for d in manifest.datasets
            if d.source_uri is not None
        }
        policies = load_policies(self.policy_dir)
        self.state = DemoState(prepare_models(manifest.models, frames, policies))

    # -- while the view is live -----------------------------------------------------------------

    async def poll(self) -> None:
        """Read the fleet's events every few seconds; approve what waits for the demo's approver."""
        state = self._state()
        while not self.stop.is_set():
            try:
                events = await read_events(self.settings, DEMO_TOPICS)
                state.fold(events)
                await self.approve(events)
                state.poll_error = ""
            except Exception as error:  # a slow or restarting broker must not end the demo
                state.poll_error = f"{type(error).__name__}: {error}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), POLL_SECONDS)

    async def approve(self, events: list[Event]) -> None:
        """Sign and publish `ApprovalGranted` for each version waiting for `risk-officer`."""
        state = self._state()
        granted = {(e.model, e.version) for e in events if isinstance(e, ApprovalGranted)}
        waiting = [
            e
            for e in events
            if isinstance(e, ApprovalRequested)
            and e.model in state.models
            and DEMO_APPROVER in e.approvers
            and (e.model, e.version) not in granted | state.approved
        ]
        if not waiting or self.signer is None:
            return
        approvals = [
            signed_approval(
                e.model,
                e.version,
                e.digest,
                self.signer,
                approver=DEMO_APPROVER,
                producer=self.producer,
                topic_prefix=self.settings.topic_prefix,
                comment="approved by `modelfleet-dev demo` with its demo key",
                **e.caused(),
            )
            for e in waiting
            if e.digest is not None  # what an approval signs; requests from older deployers lack it
        ]
        await publish_events(self.settings, list(approvals))
        for approval in approvals:
            state.approved.add((approval.model, approval.version))
            state.note(
                f"the demo approved {approval.model} v{approval.version} as {DEMO_APPROVER} (demo key)"
            )

    async def phases(self, live: Live) -> int:
        """Run the phases; the exit code: 0 when every drifted model went round the loop (a new
        champion, or a retrained version its canary rolled back, as its policy says)."""
        state = self._state()
        deadline = time.monotonic() + self.options.timeout
        while time.monotonic() < deadline:
            self.route_champions()
            settled = all(state.champion(m) or state.stuck(m) for m in state.models)
            if settled and state.champions_at is None:
                state.champions_at = state.elapsed()
                state.note(f"phase 1 done: {self.champion_count()}/{len(state.models)} champions")
            if state.champions_at is not None and not state.chosen:
                state.phase = "steady traffic: filling each model's first monitoring window"
                self.maybe_inject_drift()
            if state.chosen:
                done = [m for m in state.chosen if state.settled(m)]
                state.phase = "drift injected: waiting for drift → retrain → canary → promotion"
                if len(done) == len(state.chosen):
                    promoted = sum(state.promoted(m) for m in state.chosen)
                    state.phase = (
                        f"every drifted model went round the loop: {promoted} promoted, "
                        f"{len(done) - promoted} rolled back by their canary"
                    )
                    live.update(self.render())
                    return 0
            live.update(self.render())
            self.log_progress()
            await asyncio.sleep(1.0)
        state.phase = f"timed out after {self.options.timeout:.0f}s"
        if state.champions_at is None:
            stuck = [m for m in state.models if not state.champion(m)]
            state.note(f"timed out in phase 1: no champion yet for {', '.join(stuck)}")
        live.update(self.render())
        return 1

    def log_progress(self) -> None:
        """Without a terminal (CI, a log file) the live view shows only at the end: say how far
        the demo got every `LOG_SECONDS`."""
        state = self._state()
        if self.console.is_terminal or state.elapsed() - self.logged_at < LOG_SECONDS:
            return
        self.logged_at = state.elapsed()
        lines = [state.timelines.get(m) for m in state.chosen]
        _, answered, errors = request_counts(self.driver.counts)
        self.console.print(
            f"{state.elapsed():4.0f}s {state.phase} · "
            f"champions {self.champion_count()}/{len(state.models)} · "
            f"{answered} requests answered ({errors} errors) · drifted {len(state.chosen)}: "
            f"detected {sum(1 for x in lines if x and x.detected_at)}, "
            f"retrain {sum(1 for x in lines if x and x.retrain_at)}, "
            f"promoted {sum(1 for x in lines if x and x.promoted_at)}"
        )

    def route_champions(self) -> None:
        """Steady traffic to every model from the moment it has a champion."""
        state = self._state()
        for name, model in state.models.items():
            if state.champion(name) and self.driver.kind(name) is None:
                self.driver.route(model.steady)

    def champion_count(self) -> int:
        state = self._state()
        return sum(1 for m in state.models if state.champion(m))

    def warmed_up(self, name: str) -> bool:
        model = self._state().models[name]
        counts = self.driver.counts.get(name)
        return bool(counts and counts.answered >= model.window_size + WARMUP_MARGIN)

    def maybe_inject_drift(self) -> None:
        """Choose the models to drift and start their drift once their first window is steady."""
        state = self._state()
        if not state.planned:
            eligible = [m for m in state.models.values() if m.drift_eligible and state.champion(m.name)]
            candidates = [DriftCandidate(m.name, m.use_case, m.rollout_requests) for m in eligible]
            try:
                state.planned = choose_drift_models(candidates, self.options.drift)
            except ValueError as error:
                raise DemoError(f"cannot choose {self.options.drift} models to drift: {error}") from error
            # More steady requests for them now: their first window fills sooner.
            for name in state.planned:
                self.driver.route(state.models[name].steady, weight=DRIFT_WEIGHT)
            state.note(f"will drift {', '.join(state.planned)} once their first monitoring window is full")
        chosen = state.planned
        if not all(self.warmed_up(name) for name in chosen):
            return
        state.chosen = chosen
        state.drift_started_at = datetime.now(UTC)
        for name in chosen:
            drifted = state.models[name].drifted
            assert drifted is not None
            self.driver.route(drifted, weight=DRIFT_WEIGHT)
            features = ", ".join(state.models[name].drift_features)
            state.note(f"drift injected into {name}: only rows with high {features} (true labels)")

    # -- the view -------------------------------------------------------------------------------

    def progress_lines(self) -> Table:
        state = self._state()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(justify="right", style="bold")
        grid.add_column()
        total = len(state.models)
        champions = self.champion_count()
        stuck = [m for m in state.models if state.stuck(m)]
        grid.add_row("elapsed", f"{state.elapsed():.0f}s of {self.options.timeout:.0f}s · {state.phase}")
        grid.add_row("champions", _bar(champions, total) + (f"  [red]{len(stuck)} stuck[/]" if stuck else ""))
        _, answered, errors = request_counts(self.driver.counts)
        rate = answered / max(1.0, state.elapsed() - (state.champions_at or 0)) if answered else 0.0
        grid.add_row(
            "traffic",
            f"{answered} answered ({errors} errors) · ~{rate:.0f}/s · target {self.options.rate:g}/s",
        )
        if state.planned and not state.chosen:
            warm = sum(1 for name in state.planned if self.warmed_up(name))
            grid.add_row("first windows full", _bar(warm, len(state.planned)))
        if state.chosen:
            lines = [state.timelines.get(m) for m in state.chosen]
            n = len(state.chosen)
            grid.add_row("drift detected", _bar(sum(1 for x in lines if x and x.detected_at), n))
            grid.add_row("retrain requested", _bar(sum(1 for x in lines if x and x.retrain_at), n))
            grid.add_row(
                "new version registered", _bar(sum(1 for x in lines if x and x.registered_version), n)
            )
            grid.add_row("drifted models promoted", _bar(sum(1 for x in lines if x and x.promoted_at), n))
        if state.poll_error:
            grid.add_row("kafka", f"[yellow]{state.poll_error[:120]}[/]")
        return grid

    def model_table(self) -> Table:
        state = self._state()
        table = Table(expand=True, pad_edge=False, show_edge=False)
        table.add_column("model", no_wrap=True)
        table.add_column("use case", no_wrap=True, max_width=20)
        table.add_column("risk", no_wrap=True)
        table.add_column("stage", no_wrap=True)
        table.add_column("champ", no_wrap=True, justify="right")
        table.add_column("chall", no_wrap=True, justify="right")
        table.add_column("traffic", no_wrap=True)
        table.add_column("drift", no_wrap=True)
        table.add_column("retrain", no_wrap=True)
        table.add_column("detail", no_wrap=True, overflow="ellipsis", ratio=1)
        for name, model in state.models.items():
            row = state.status.get(name)
            counts = self.driver.counts.get(name)
            kind = self.driver.kind(name)
            traffic = (
                "-"
                if counts is None
                else f"{counts.answered}" + (" [magenta]drifted[/]" if kind == "drifted" else "")
            )
            drifts = state.drift_counts.get(name, 0)
            last = state.last_drift.get(name)
            drift = f"[red]{drifts}x[/] {last.drift_share:.2f}" if drifts and last else "-"
            retrains = state.retrains.get(name, [])
            retrain = f"{retrains[-1].reason} {retrains[-1].occurred_at:%H:%M:%S}" if retrains else "-"
            stage = row.stage if row else "?"
            style = (
                "green" if stage == "champion" else "red" if stage.startswith(STUCK_PREFIXES) else "yellow"
            )
            table.add_row(
                f"[bold]{name}[/]" if name in state.chosen else name,
                model.use_case,
                model.risk_class,
                f"[{style}]{stage}[/]",
                row.champion or "-" if row else "-",
                row.challenger or "-" if row else "-",
                traffic,
                drift,
                retrain,
                row.detail if row else "",
            )
        return table

    def render(self) -> Group:
        state = self._state()
        parts: list[Table | Text] = [self.progress_lines(), self.model_table()]
        for message in state.messages[-4:]:
            parts.append(Text(message, style="dim"))
        return Group(*parts)

    def _state(self) -> DemoState:
        if self.state is None:
            raise RuntimeError("apply() first")
        return self.state

    # -- the whole run --------------------------------------------------------------------------

    async def run(self) -> int:
        self.policy_dir = self.check_fleet()
        self.prepare_approver()
        await self.apply()
        self.console.print(f"the demo approves versions that wait for {DEMO_APPROVER} with its demo key")
        state = self._state()
        poller = asyncio.create_task(self.poll())
        traffic = asyncio.create_task(self.driver.run(self.stop))
        try:
            with Live(self.render(), console=self.console, refresh_per_second=2, transient=False) as live:
                try:
                    code = await self.phases(live)
                except asyncio.CancelledError:  # Ctrl-C: stop, but still say how far it got
                    state.note("interrupted")
                    code = 130
        finally:
            self.stop.set()
            await asyncio.gather(poller, traffic, return_exceptions=True)
        try:
            state.fold(await read_events(self.settings, DEMO_TOPICS))
        except Exception as error:  # the summary then uses the last poll's events
            state.note(f"could not read the final events: {type(error).__name__}: {error}")
        self.summary(code)
        return code

    def summary(self, code: int) -> None:
        state = self._state()
        for message in state.messages:
            self.console.print(f"[dim]{message}[/]")
        table = Table(
            title="the loop per model: first drift (or decay) → retrain → promotion",
            caption="drift injected: the demo sent that model drifted rows; traffic: what it was "
            "sent when the monitor found the drift",
        )
        for column in (
            "model",
            "drift injected",
            "found",
            "traffic",
            "retrain requested",
            "new version",
            "promoted",
            "found → promoted",
        ):
            table.add_column(column, no_wrap=column not in ("model", "found"))
        others = [m for m, line in state.timelines.items() if line.detected_at and m not in state.chosen]
        for name in [*state.chosen, *others]:
            line = state.timelines.get(name) or LoopTimeline(name)
            during = "-"
            if line.detected_at:
                drifted = state.drift_started_at and line.detected_at >= state.drift_started_at
                during = "drifted" if drifted and name in state.chosen else "steady"
            seconds = line.detection_to_promotion_seconds
            table.add_row(
                name,
                "[bold]yes[/]" if name in state.chosen else "no",
                f"{_at(line.detected_at)} {line.finding}",
                during,
                f"{_at(line.retrain_at)} {line.retrain_reason}",
                f"v{line.registered_version}" if line.registered_version else "-",
                f"v{line.promoted_version} {_at(line.promoted_at)}"
                if line.promoted_at
                else "[red]not yet[/]",
                f"{seconds:.0f}s" if seconds is not None else "-",
            )
        self.console.print(table)
        promotions = [
            e
            for e in state.events
            if isinstance(e, ModelPromoted) and e.occurred_at >= state.started_at and e.model in state.models
        ]
        retrains = Counter(e.reason for rs in state.retrains.values() for e in rs)
        sent, answered, errors = request_counts(self.driver.counts)
        self.console.print(
            f"fleet: {self.champion_count()}/{len(state.models)} models champion · "
            f"{len(promotions)} promotions, "
            f"{sum(state.drift_counts.values())} drifted windows on {len(state.drift_counts)} models, "
            f"retrain requests {dict(retrains) or 0}, {len(state.approved)} approvals signed by the demo · "
            f"{answered}/{sent} requests answered ({errors} errors) in {state.elapsed():.0f}s"
        )
        example = state.chosen[0] if state.chosen else next(iter(state.models))
        row = state.models[example].steady.rows[0]
        metrics = " ".join(f"{service}:{port}" for service, port in local.PORTS.items())
        token_file = local_tokens_file(self.home).with_name(f"{LOCAL_TOKEN_NAME}.token")
        curl = (
            f"curl -s {SERVING_URL}/predict -H 'content-type: application/json' "
            f'-H "authorization: Bearer $(cat {token_file})" -d '
            f"'{_json({'model': example, 'request_id': 'try-1', 'inputs': [row]})}'"
        )
        self.console.print("\n[bold]open[/]")
        admin = self.home.resolve() / "mlflow" / "credentials" / "admin.password"
        self.console.print(f"  MLflow UI    {MLFLOW_URL} (user admin, password in {admin})", soft_wrap=True)
        self.console.print(f"  serving API  {SERVING_URL}/predict, e.g.", soft_wrap=True)
        self.console.print(f"    {curl}", soft_wrap=True, markup=False)
        self.console.print(f"  metrics      http://127.0.0.1:<port>/metrics ({metrics})")
        self.console.print(f"  audit trail  .venv/bin/modelfleet audit {example}")
        self.console.print("  stop         make down")
        if code == 0:
            self.console.print(f"[green]every drifted model ({len(state.chosen)}) has a new champion[/]")
        else:
            missing = [m for m in state.chosen if not state.promoted(m)]
            self.console.print(f"[red]not promoted in time:[/] {', '.join(missing) or 'drift never started'}")
            for name in missing:
                status = state.status.get(name)
                if status is not None:
                    self.console.print(f"  {name}: {status.stage}: {status.detail}", markup=False)


class DemoError(Exception):
    """The demo cannot start or go on; the message says what to do."""


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = round(width * done / total) if total else 0
    return f"[green]{'━' * filled}[/][dim]{'━' * (width - filled)}[/] {done}/{total}"


def _at(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S") if moment else "-"


def _json(value: object) -> str:
    return json.dumps(value)


def run(options: DemoOptions, console: Console) -> int:
    """Run the demo; the process's exit code."""
    demo = Demo(options, console)
    try:
        return asyncio.run(demo.run())
    except DemoError as error:
        console.print(f"[red]demo:[/] {error}")
        return 2
    except KeyboardInterrupt:
        return 130
