"""`modelfleet`: commands people use. Each one publishes an event; services do the rest."""

from __future__ import annotations

import asyncio
import getpass
import re
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from modelfleet_common import humanize
from modelfleet_common.naming import TopicNamer
from modelfleet_common.policies import PolicyError, load_policies
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts import (
    DataBatchSubmitted,
    DatasetVersionCreated,
    DatasetVersionRejected,
    ModelSpecRetired,
    RetrainRequested,
    RollbackRequested,
)
from modelfleet_contracts.data import DATASET_NAME_PATTERN
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.specs import MODEL_NAME_PATTERN
from modelfleet_contracts.topics import ALL_TOPICS, APPROVAL_REQUESTS, DATASET_REJECTIONS, DATASET_VERSIONS

from . import kafka_access
from .applying import PlannedChange, plan
from .approving import parse_duration, requested_digest, signed_approval
from .audit import audit_trail, concerns_model, read_audit_events
from .connecting import fleet_settings
from .exit_codes import ExitCode
from .fleet_state import read_desired_state, read_events, read_status
from .lineage import model_lineage
from .local_home import REPO, default_home
from .manifests import Manifest, check_columns, check_policies, load_path
from .mlflow_access import sign_in
from .output import Activity, JsonFlag, emit_json, err, fail, out
from .publishing import publish_events
from .tokens import app as tokens_app
from .tracing import trace_command
from .uploading import Uploader, UploadFailed, upload_batches

T = TypeVar("T")
#: Stages a model passes through on its own; `status --wait` waits for them to end.
IN_FLIGHT = frozenset({"submitted", "training", "trained", "evaluated"})

app = typer.Typer(
    help=(
        "modelfleet: run thousands of ML models without adding people.\n\n"
        "Results go to stdout (whole table rows in a pipe; JSON with --json), errors and progress to "
        "stderr; the exit status says what happened (docs/cli.md)."
    ),
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"modelfleet {metadata.version('modelfleet-cli')}")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the installed version and exit."
        ),
    ] = False,
) -> None:
    """Options of `modelfleet` itself, before the command."""
    # The command is a span: the events it publishes start (or continue) its trace.
    trace_command(ctx)


def _producer() -> str:
    return f"cli:{getpass.getuser()}"


def _kafka(settings: ServiceSettings, work: Coroutine[Any, Any, T], doing: str = "publish to") -> T:
    """Run one Kafka conversation; any failure is one clear error and `ExitCode.UNREACHABLE`."""
    try:
        return asyncio.run(work)
    except Exception as error:
        fail(
            f"could not {doing} Kafka at {settings.kafka.bootstrap}",
            error,
            hint="Is the broker running (`make kafka`)? Is FLEET_KAFKA_BOOTSTRAP right?",
            code=ExitCode.UNREACHABLE,
        )


def _send(event: Event) -> None:
    settings = fleet_settings()
    _kafka(settings, publish_events(settings, [event]))


def _published(event: Event) -> dict[str, str]:
    return {"event_type": event.event_type, "key": event.key, "event_id": str(event.event_id)}


def _publish(event: Event, as_json: bool = False) -> None:
    """Publish one request and say so: a line, or its `_published` JSON."""
    _send(event)
    if as_json:
        emit_json(_published(event))
    else:
        out.print(f"published [bold]{event.event_type}[/] for [bold]{event.key}[/] (event {event.event_id})")


def _validate_model(name: str) -> str:
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise typer.BadParameter(
            f"{name!r} is not a model name: use lower-case letters, digits, '.', '_' or '-' (max 120)"
        )
    return name


@app.command()
def topics(
    strimzi: Annotated[
        bool,
        typer.Option("--strimzi", help="Print Strimzi KafkaTopic resources (YAML)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List every topic of the fleet: physical name, contract(s), key and retention."""
    if strimzi and as_json:
        raise typer.BadParameter("choose one output: --strimzi or --json", param_hint="--json")
    namer = TopicNamer(fleet_settings().topic_prefix)
    if strimzi:
        typer.echo(kafka_access.render_strimzi_topics(namer), nl=False)
        return
    rows: list[dict[str, Any]] = [
        {
            "topic": namer.topic(topic),
            "carries": [c.__name__ for c in topic.contracts],
            "key": topic.key_field,
            "retention": "compacted" if topic.compacted else "delete",
            "what": topic.description,
        }
        for topic in ALL_TOPICS
    ]
    rows.append(
        {
            "topic": namer.dead_letter(),
            "carries": ["original bytes + x-dlq-* headers"],
            "key": "source key",
            "retention": "delete",
            "what": "Dead letters",
        }
    )
    if as_json:
        emit_json(rows)
        return
    table = Table("topic", "carries", "key", "retention", "what")
    for row in rows:
        table.add_row(row["topic"], ", ".join(row["carries"]), row["key"], row["retention"], row["what"])
    out.print(table)


app.command()(kafka_access.acls)
app.command()(kafka_access.provision)


@app.command()
def retrain(
    model: Annotated[str, typer.Argument(help="Model to retrain.", callback=_validate_model)],
    note: Annotated[str, typer.Option(help="Why, for the audit trail.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Ask the trainer to retrain MODEL on its newest data."""
    _publish(RetrainRequested(producer=_producer(), model=model, reason="manual", detail=note), as_json)


@app.command()
def retire(
    model: Annotated[str, typer.Argument(help="Model to retire.", callback=_validate_model)],
    reason: Annotated[str, typer.Option(help="Why it leaves the fleet (required).")],
    as_json: JsonFlag = False,
) -> None:
    """Retire MODEL: stop training, serving and monitoring it."""
    if not reason.strip():
        raise typer.BadParameter("say why the model is retired", param_hint="--reason")
    _publish(ModelSpecRetired(producer=_producer(), model=model, reason=reason), as_json)


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Model to roll back.", callback=_validate_model)],
    reason: Annotated[str, typer.Option(help="Why (required; goes into the audit trail).")],
    to: Annotated[
        str | None, typer.Option("--to", help="Registry version to go back to; default: the last known good.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask the deployer to route MODEL back to a version (default: its last known good one)."""
    if not reason.strip():
        raise typer.BadParameter("say why the model is rolled back", param_hint="--reason")
    if to is not None and not to.isdigit():
        raise typer.BadParameter(f"{to!r} is not a registry version (a number such as 3)", param_hint="--to")
    _publish(RollbackRequested(producer=_producer(), model=model, to_version=to, reason=reason), as_json)


@app.command()
def keygen(
    key_file: Annotated[Path, typer.Argument(help="Where to write the private key (PEM); kept mode 0600.")],
    approver: Annotated[str, typer.Option(help="Approver name as listed in the policy.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create an Ed25519 key pair for approvals (or signing) and print its public line (stdout; the
    rest on stderr, so `>> FILE` appends just that line)."""
    from modelfleet_common.signing import ArtifactSigner

    if key_file.exists():
        raise typer.BadParameter(f"{key_file} exists; refusing to overwrite a key", param_hint="KEY_FILE")
    signer = ArtifactSigner.load_or_create(key_file)
    name = approver or getpass.getuser()
    if as_json:
        emit_json(
            {
                "approver": name,
                "public_key": signer.public_key_b64,
                "private_key_file": str(key_file),
                "public_key_file": f"{key_file}.pub",
            }
        )
        return
    err.print(f"private key: {key_file} (keep it secret); public key: {key_file}.pub")
    err.print("add this line to the deployer's approver keys file (FLEET_APPROVER_KEYS_FILE):")
    typer.echo(f"{name} {signer.public_key_b64}")


@app.command()
def approve(
    model: Annotated[str, typer.Argument(help="Model awaiting approval.", callback=_validate_model)],
    version: Annotated[str, typer.Argument(help="Registry version to approve.")],
    key_file: Annotated[
        Path, typer.Option(envvar="FLEET_APPROVER_KEY_FILE", help="Your private approval key (PEM).")
    ],
    approver: Annotated[
        str, typer.Option(envvar="FLEET_APPROVER_NAME", help="Your name as listed in the policy.")
    ] = "",
    comment: Annotated[str, typer.Option(help="Note for the audit trail.")] = "",
    digest: Annotated[
        str | None,
        typer.Option(
            help="sha256 digest of the artifact you approve; default: the one the approval request names."
        ),
    ] = None,
    expires_in: Annotated[
        str, typer.Option("--expires-in", help="How long the approval stays valid (e.g. 30m, 24h, 7d).")
    ] = "24h",
    as_json: JsonFlag = False,
) -> None:
    """Sign off MODEL VERSION for live traffic: that artifact, in this fleet, until the approval
    expires, once; the deployer checks you are a listed approver."""
    from modelfleet_common.signing import ArtifactSigner

    try:
        lifetime = parse_duration(expires_in)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--expires-in") from error
    if not version.isdigit():
        raise typer.BadParameter(
            f"{version!r} is not a registry version (a number such as 3)", param_hint="VERSION"
        )
    if not key_file.is_file():
        raise typer.BadParameter(
            f"{key_file} does not exist; create one with `modelfleet keygen`", param_hint="--key-file"
        )
    signer = ArtifactSigner.load_or_create(key_file)
    name = approver or getpass.getuser()
    settings = fleet_settings()
    if digest is None:
        requests = _kafka(
            settings, read_events(settings, (APPROVAL_REQUESTS,)), doing="read the approval requests from"
        )
        digest = requested_digest(requests, model, version)
        if digest is None:
            fail(
                f"no approval request for {model} v{version} names its artifact digest",
                hint="Check `modelfleet status`, or pass --digest.",
                code=ExitCode.NOT_FOUND,
            )
    approval = signed_approval(
        model,
        version,
        digest,
        signer,
        approver=name,
        producer=_producer(),
        topic_prefix=settings.topic_prefix,
        expires_in=lifetime,
        comment=comment,
    )
    _publish(approval, as_json)


@app.command()
def apply(
    path: Annotated[
        Path, typer.Argument(help="A YAML file, or a directory searched for `*.yaml` / `*.yml`.")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; publish nothing.")] = False,
    policy_dir: Annotated[
        Path,
        typer.Option(
            "--policies",
            envvar="FLEET_POLICY_DIR",
            help="Risk policies the fleet runs with; a spec that loosens one of their floors is refused.",
            show_default="the checkout's policies/",
        ),
    ] = REPO / "policies",
    as_json: JsonFlag = False,
) -> None:
    """Validate Dataset, ModelSpec and ModelFleet documents and publish what changed.

    A file with any problem is refused whole (every problem listed by file and field), including
    a spec that loosens a floor of its risk policy; valid files still apply. Unchanged documents
    publish nothing: a spec's revision is its content hash.
    """
    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist", param_hint="PATH")
    manifest = load_path(path)
    try:
        check_policies(manifest, load_policies(policy_dir))
    except PolicyError as error:
        raise typer.BadParameter(str(error), param_hint="--policies") from error
    if manifest.problems and not (manifest.models or manifest.datasets):
        _print_refused(manifest)
        if as_json:
            emit_json(_applied(manifest, [], dry_run, published=0))
        fail(f"{len(manifest.refused_files)} file(s) refused", "nothing to apply")
    settings = fleet_settings()
    state = _kafka(settings, read_desired_state(settings), doing="read the fleet's specs from")
    check_columns(manifest, state.dataset_specs())
    if manifest.problems:
        _print_refused(manifest)
    changes = plan(manifest, state, _producer())
    if changes and not as_json:
        table = Table("kind", "change", "revision")
        table.add_column("name", overflow="fold")
        table.add_column("from", overflow="fold")
        style = {"created": "green", "configured": "yellow", "unchanged": "dim"}
        for change in changes:
            table.add_row(
                change.kind,
                f"[{style[change.change]}]{change.change}[/]",
                change.revision[:12],
                change.name,
                change.origin,
            )
        out.print(table)
    events = [event for change in changes for event in change.events]
    summary = ", ".join(f"{n} {c}" for c, n in _counts(changes).items())
    if not dry_run and events:
        try:  # a dataset's `source` goes where ingest may read it: the store's upload area
            events = upload_batches(events, Uploader.from_settings())
        except UploadFailed as error:
            fail("could not upload a dataset's first batch", error)
        _kafka(settings, publish_events(settings, events))
    if as_json:
        emit_json(_applied(manifest, changes, dry_run, published=0 if dry_run else len(events)))
    elif dry_run:
        out.print(f"dry run: {summary}; nothing published")
    elif events:
        out.print(f"applied: {summary} ({len(events)} events published)")
    else:
        out.print(f"nothing to apply: {summary}")
    if manifest.problems:
        fail(f"{len(manifest.refused_files)} file(s) refused", "fix them and apply again")


def _counts(changes: list[PlannedChange]) -> dict[str, int]:
    return {c: sum(1 for x in changes if x.change == c) for c in ("created", "configured", "unchanged")}


def _applied(
    manifest: Manifest, changes: list[PlannedChange], dry_run: bool, *, published: int
) -> dict[str, Any]:
    """`apply --json`: every change, the counts, what was published and every refused file's problems."""
    return {
        "dry_run": dry_run,
        "changes": [
            {
                "kind": c.kind,
                "name": c.name,
                "change": c.change,
                "revision": c.revision,
                "from": c.origin,
            }
            for c in changes
        ],
        "counts": _counts(changes),
        "published": published,
        "refused": _refusals(manifest),
    }


def _refusals(manifest: Manifest) -> list[dict[str, Any]]:
    return [
        {"file": str(p.file), "document": p.document, "field": p.field, "problem": p.message}
        for p in manifest.problems
    ]


def _print_refused(manifest: Manifest) -> None:
    """The refused files' problems, on stderr (errors, not the result)."""
    table = Table("file", "doc", "field", "problem", title="refused", title_style="bold red")
    for problem in _refusals(manifest):
        table.add_row(problem["file"], str(problem["document"] or ""), problem["field"], problem["problem"])
    err.print(table)


@app.command()
def status(
    as_json: JsonFlag = False,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for models still in training or evaluation to settle.")
    ] = 0,
) -> None:
    """Every model with its risk class, stage and champion/challenger versions."""
    settings = fleet_settings()
    rows = _kafka(settings, read_status(settings), doing="read the fleet's events from")
    if wait > 0:
        deadline = time.monotonic() + wait
        with Activity(f"waiting up to {humanize.duration(wait)} for the fleet to settle") as activity:
            while (busy := [r for r in rows if r.stage in IN_FLIGHT]) and time.monotonic() < deadline:
                settled = len(rows) - len(busy)
                activity.update(f"{settled}/{len(rows)} models settled; {len(busy)} in flight")
                time.sleep(2)
                rows = _kafka(settings, read_status(settings), doing="read the fleet's events from")
    if as_json:
        payload = [
            {
                "model": r.model,
                "risk_class": r.risk_class,
                "owner": r.owner,
                "revision": r.revision,
                "stage": r.stage,
                "champion": r.champion,
                "challenger": r.challenger,
                "versions": r.versions,
                "detail": r.detail,
                "updated_at": r.updated_at.isoformat() if r.updated_at else None,
            }
            for r in rows
        ]
        emit_json(payload)
        return
    table = Table(title=f"{len(rows)} models")
    table.add_column("model", overflow="fold", min_width=12)
    for column in ("risk", "stage", "champion", "challenger", "detail"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r.model, r.risk_class, r.stage, r.champion or "-", r.challenger or "-", r.detail)
    out.print(table)


@app.command()
def lineage(
    model: Annotated[str, typer.Argument(help="Model name.", callback=_validate_model)],
    as_json: JsonFlag = False,
) -> None:
    """The chain dataset version -> run -> model version -> evaluation -> deployment, per version."""
    from mlflow import MlflowClient

    settings = fleet_settings()
    sign_in(settings)
    chain = _registry(
        settings, lambda: model_lineage(MlflowClient(tracking_uri=settings.mlflow_tracking_uri), model)
    )
    if as_json:
        emit_json([link.as_dict() for link in chain])
    if not chain:
        fail(
            f"{model} has no registered version yet", hint="See `modelfleet status`.", code=ExitCode.NOT_FOUND
        )
    if as_json:
        return
    table = Table(
        "version", "dataset@version", "run", "template", "spec", "evaluation", "deployment", title=model
    )
    for link in chain:
        table.add_row(
            link.version,
            f"{link.dataset}@{link.dataset_version[:12]}",
            link.run_id[:12],
            link.template,
            link.spec_revision[:12],
            link.verdict or "?",
            ", ".join(link.aliases) or "-",
        )
    out.print(table)


def _registry(settings: ServiceSettings, call: Callable[[], T]) -> T:
    """One conversation with MLflow; a failure is one clear error and `ExitCode.UNREACHABLE`."""
    from mlflow.exceptions import MlflowException

    try:
        return call()
    except MlflowException as error:
        fail(
            f"could not read the registry at {settings.mlflow_tracking_uri}",
            error.message,
            hint="Is MLflow running (`make mlflow`)? Are FLEET_MLFLOW_TRACKING_URI and its credentials set?",
            code=ExitCode.UNREACHABLE,
        )


def _iso_datetime(text: str, hint: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time; write e.g. 2025-06-01 or 2025-06-01T08:00:00+02:00",
            param_hint=hint,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def audit(
    model: Annotated[str, typer.Argument(help="Model name.", callback=_validate_model)],
    as_json: JsonFlag = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only entries at or after this ISO 8601 time, e.g. 2025-06-01T08:00 (UTC unless it says)."
        ),
    ] = None,
) -> None:
    """Every decision about MODEL, automatic or human: what, why (with the numbers), who, when."""
    start = _iso_datetime(since, "--since") if since else None
    settings = fleet_settings()
    events = _kafka(settings, read_audit_events(settings), doing="read the fleet's events from")
    if not concerns_model(model, events):
        fail(
            f"no events for model {model} on {settings.kafka.bootstrap}",
            hint="Is the name right? `modelfleet status` lists models.",
            code=ExitCode.NOT_FOUND,
        )
    entries = audit_trail(model, events)
    if start is not None:
        entries = [entry for entry in entries if entry.at >= start]
    if as_json:
        emit_json([entry.as_dict() for entry in entries])
        return
    table = Table(title=f"{model}: {len(entries)} decisions and triggers")
    table.add_column("when (UTC)", no_wrap=True)
    table.add_column("what", overflow="fold")
    table.add_column("why", overflow="fold", ratio=3)
    table.add_column("who", overflow="fold")
    table.add_column("caused by", overflow="fold")
    for entry in entries:
        table.add_row(
            entry.at.strftime("%Y-%m-%d %H:%M:%S"), entry.what, entry.why, entry.who, entry.caused_by or "-"
        )
    out.print(table)


@app.command()
def verify(
    model: Annotated[str, typer.Argument(help="Model name.", callback=_validate_model)],
    version: Annotated[str | None, typer.Argument(help="Registry version; default: every version.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check each version's files against the registry's signature of (model, version, digest, this
    fleet's FLEET_TOPIC_PREFIX), made by a key of FLEET_TRUSTED_KEYS_FILE. Versions that failed their
    evaluation carry no signature: shown as never servable, not as failures."""
    import tempfile

    import mlflow.artifacts
    from mlflow import MlflowClient

    from modelfleet_common.signing import IntegrityError, TrustedKeys, VersionBinding, verify_artifact

    settings = fleet_settings()
    # The local fleet's registry key (see `make demo`) is trusted unless a file is named.
    local_key = default_home() / "signing" / "registry.pem.pub"
    keys_file = settings.trusted_keys_file or (local_key if local_key.exists() else None)
    if keys_file is None:
        raise typer.BadParameter("set FLEET_TRUSTED_KEYS_FILE to the file of trusted public keys")
    trusted = TrustedKeys.from_file(keys_file)
    sign_in(settings)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    chain = _registry(settings, lambda: model_lineage(client, model))
    links = [link for link in chain if version in (None, link.version)]
    if not links:
        fail(f"{model} has no version {version or ''}".rstrip(), code=ExitCode.NOT_FOUND)
    results: list[dict[str, Any]] = []
    with Activity(f"verifying {len(links)} version(s) of {model}") as activity:
        for number, link in enumerate(links, 1):
            activity.step(f"{model} v{link.version} ({number} of {len(links)}): downloading its files")
            registered = _registry(settings, partial(client.get_model_version, model, link.version))
            tags = dict(registered.tags or {})
            result: dict[str, Any] = {
                "model": model,
                "version": link.version,
                "result": "verified",
                "signing_key_id": tags.get("modelfleet.signing_key_id"),
                "problem": None,
            }
            results.append(result)
            if tags.get("modelfleet.verdict") == "failed" and not tags.get("modelfleet.signature"):
                result.update(result="unsigned", problem="failed its evaluation: unsigned, never servable")
                continue
            binding = VersionBinding(
                model, link.version, tags.get("modelfleet.digest", ""), settings.topic_prefix
            )
            with tempfile.TemporaryDirectory() as folder:
                local = _registry(
                    settings,
                    partial(
                        mlflow.artifacts.download_artifacts,
                        artifact_uri=registered.source,
                        dst_path=folder,
                        tracking_uri=settings.mlflow_tracking_uri,
                    ),
                )
                try:
                    verify_artifact(
                        Path(local),
                        binding=binding,
                        signature=tags.get("modelfleet.signature", ""),
                        signing_key_id=tags.get("modelfleet.signing_key_id", ""),
                        trusted=trusted,
                    )
                except IntegrityError as error:
                    result.update(result="not_verified", problem=str(error))
    failures = [r for r in results if r["result"] == "not_verified"]
    if as_json:
        emit_json(results)
    else:
        for r in results:
            where = f"{model} v{r['version']}"
            if r["result"] == "verified":
                out.print(
                    f"[green]{where}: verified[/] (signed by key {r['signing_key_id']} for this model, "
                    f"version, digest and fleet {settings.topic_prefix!r})"
                )
            elif r["result"] == "unsigned":
                out.print(f"[yellow]{where}: failed its evaluation[/]: unsigned, never servable")
            else:
                out.print(f"[red]{where}: NOT VERIFIED[/]: {escape(r['problem'])}")
    if failures:
        fail(f"{len(failures)} of {len(results)} version(s) of {model} NOT VERIFIED")


@app.command()
def ingest(
    dataset: Annotated[str, typer.Argument(help="Dataset name, as declared by a `kind: Dataset` document.")],
    file: Annotated[
        str,
        typer.Argument(help="A .csv or .parquet file, or any fsspec URI; uploaded to the dataset store."),
    ],
    mode: Annotated[str, typer.Option(help="`append` to the latest version or `replace` it.")] = "replace",
    wait: Annotated[bool, typer.Option(help="Wait for ingest's verdict and print it.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the verdict.")] = 120.0,
    as_json: JsonFlag = False,
) -> None:
    """Upload a batch of rows to the dataset store (FLEET_DATA_DIR) and submit it; ingest validates
    it, versions it, or rejects and quarantines it."""
    if not re.fullmatch(DATASET_NAME_PATTERN, dataset):
        raise typer.BadParameter(f"{dataset!r} is not a dataset name", param_hint="DATASET")
    if mode not in ("append", "replace"):
        raise typer.BadParameter(f"{mode!r}: use append or replace", param_hint="--mode")
    uri = file
    if "://" not in file:
        local = Path(file)
        if not local.is_file():
            raise typer.BadParameter(f"{file} does not exist", param_hint="FILE")
        if local.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise typer.BadParameter(f"{file}: name it .csv or .parquet", param_hint="FILE")
        uri = str(local.resolve())
    try:
        uri = Uploader.from_settings()(dataset, uri)
    except UploadFailed as error:
        raise typer.BadParameter(str(error), param_hint="FILE") from error
    err.print(escape(f"uploaded {file} to {uri}"))
    event = DataBatchSubmitted(producer=_producer(), dataset=dataset, uri=uri, mode=mode)  # type: ignore[arg-type,call-arg]
    _send(event)
    result: dict[str, Any] = {
        "dataset": dataset,
        "uploaded_uri": uri,
        "event_id": str(event.event_id),
        "verdict": None,
    }
    if not wait:
        if as_json:
            emit_json(result)
        else:
            out.print(
                escape(f"submitted {file} as a batch of {dataset} (event {event.event_id}); ingest decides")
            )
        return
    settings = fleet_settings()
    with Activity(f"waiting up to {humanize.duration(timeout)} for ingest's verdict") as activity:
        verdict = _kafka(
            settings,
            _verdict_of(settings, event, timeout, activity.update),
            doing="read ingest's verdict from",
        )
    if isinstance(verdict, DatasetVersionCreated):
        result.update(
            verdict="created",
            version=verdict.version,
            rows=verdict.row_count,
            columns=[column.model_dump(mode="json") for column in verdict.columns],
            uri=verdict.uri,
        )
    elif isinstance(verdict, DatasetVersionRejected):
        result.update(
            verdict="rejected",
            quarantine_uri=verdict.quarantine_uri,
            problems=[problem.model_dump(mode="json") for problem in verdict.problems],
        )
    if as_json:
        emit_json(result)
    elif isinstance(verdict, DatasetVersionCreated):
        out.print(
            f"[green]version {verdict.version[:12]}[/] of {dataset}: {verdict.row_count} rows, "
            f"{len(verdict.columns)} columns ({verdict.uri})"
        )
    elif isinstance(verdict, DatasetVersionRejected):
        table = Table(
            "column", "problem", "message", title=f"batch rejected; kept in {verdict.quarantine_uri}"
        )
        for problem in verdict.problems:
            table.add_row(problem.column or "(file)", problem.code, problem.message)
        out.print(table)
    if isinstance(verdict, DatasetVersionRejected):
        fail(
            f"ingest rejected the batch ({len(verdict.problems)} problem(s))",
            f"kept in {verdict.quarantine_uri}",
        )
    if verdict is None:
        fail(
            f"no verdict within {humanize.duration(timeout)}",
            hint="Is ingest running? (`modelfleet status`; `--timeout` waits longer.)",
            code=ExitCode.TIMED_OUT,
        )


async def _verdict_of(
    settings: ServiceSettings, event: Event, wait_seconds: float, tick: Callable[[str], None]
) -> Event | None:
    """Ingest's answer to `event`, or None after `wait_seconds`; `tick` hears the time waited."""
    started = time.monotonic()
    while (waited := time.monotonic() - started) < wait_seconds:
        tick(f"{humanize.duration(waited)} so far")
        for outcome in await read_events(settings, (DATASET_VERSIONS, DATASET_REJECTIONS)):
            if outcome.causation_id == event.event_id:
                return outcome
        await asyncio.sleep(1.0)
    return None


if __name__ == "__main__":
    app()
