"""The data plane of serving: `POST /predict` and `POST /feedback`.

Why these are plain ASGI routes on the service's `AsgiFastStream` app and not a BentoML service:
a measured check with BentoML 1.4.39 (`@bentoml.service` + `@bentoml.asgi_app` mounting the
FastStream app, driven in-process through `Service.to_asgi()`) answered 500 on the API (the service
instance only exists once BentoML's own lifespan and worker machinery ran) and 404 on the mounted
FastStream routes. Hosting the broker's lifecycle inside BentoML's worker processes, and mapping its
errors to the 404/422/503 answers below, could not be done and tested within the time box. One
`AsgiFastStream` process already runs the broker, /healthz, /readyz and /metrics, so the data plane
joins it there. BentoML is therefore not a dependency: declared and never imported, it put 29 more
packages (about 22 MB) into every serving image.

The doors, in the order a request meets them (each answer names the rule it broke):

1. a bearer token of the tokens file with the route's scope (`predict`, `feedback`): 401 without
   or with an unknown token (`WWW-Authenticate: Bearer`), 403 for a token without the scope;
2. the body: 413 when its Content-Length, or the bytes read so far, pass
   `FLEET_SERVING_MAX_BODY_BYTES`: nothing larger is read, let alone parsed;
3. the model: 403 when its name is outside the token's model prefix;
4. the shape: 413 beyond `FLEET_SERVING_MAX_ROWS` rows or `FLEET_SERVING_MAX_COLUMNS` columns a row,
   422 for anything not a list of objects of scalars (NaN and Infinity are not JSON); then 404 when
   serving has no route for the model;
5. the inputs against the model's input schema (schema.py): 422 naming the row, the feature and its
   expected type, or the missing or extra features, before the model runs;
6. feedback: 404 unless serving answered that request id for that model within
   `FLEET_SERVING_FEEDBACK_TTL_SECONDS` (remembered per model, at most
   `FLEET_SERVING_FEEDBACK_MAX_REQUESTS`), so nobody can label what serving did not answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cachetools import TTLCache
from pydantic import ValidationError

from modelfleet_common.telemetry import current_traceparent
from modelfleet_contracts import GroundTruthObserved, ModelArtifactRefused
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_contracts.serving import PredictionRecord, Route

from .auth import Authenticator, Denied, Grant
from .auth import Scope as AuthScope
from .model_store import ArtifactRefused, LoadedModel, ModelStore, ModelUnavailable
from .prediction import Outputs, Scalar, TooLarge, features_frame, predict, validate_rows
from .prediction_log import PredictionLog
from .request_metrics import RequestMetrics, risk_class_of
from .routing import NoServableVersion, choose_route
from .routing_table import RoutingTable
from .schema import InvalidInputs

logger = logging.getLogger("modelfleet.serving")

PublishGroundTruth = Callable[[GroundTruthObserved], Awaitable[None]]
PublishRefusal = Callable[[ModelArtifactRefused], Awaitable[None]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Requests of at most this many rows are predicted on the event loop, larger ones in a thread.
INLINE_ROWS = 16


class HttpError(Exception):
    """An answer other than success: its status, a specific message and any extra headers."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


@dataclass(frozen=True)
class Limits:
    """The size caps of a request (FLEET_SERVING_MAX_*)."""

    max_body_bytes: int = 1024 * 1024
    max_rows: int = 1000
    max_columns: int = 256


class AnsweredRequests:
    """The request keys serving answered, per model, for a while: what /feedback may label.

    One bounded TTL cache per model (`cachetools.TTLCache`): a model's entries expire after `ttl`
    seconds and the oldest are evicted beyond `max_per_model`, so a flood of requests to one model
    never costs memory beyond its bound nor evicts another model's answers. A request key is kept
    with its row count, so the ids of a batch's rows (`key#0` … `key#n-1`) need no entry each.
    """

    def __init__(
        self, *, ttl_seconds: float, max_per_model: int, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_per_model = max_per_model
        self.timer = timer
        self._by_model: dict[str, TTLCache[str, tuple[bool, int]]] = {}

    def remember(self, model: str, request_key: str, rows: int) -> None:
        cache = self._by_model.get(model)
        if cache is None:
            cache = self._by_model[model] = TTLCache(self.max_per_model, self.ttl_seconds, timer=self.timer)
        single, most = cache.get(request_key, (False, 0))
        cache[request_key] = (single or rows == 1, max(most, rows))

    def answered(self, model: str, request_id: str) -> bool:
        """Whether `request_id` (a request key, or `key#i` of a batch) was answered for `model`."""
        cache = self._by_model.get(model)
        if cache is None:
            return False
        single, _ = cache.get(request_id, (False, 0))
        if single:
            return True
        key, sep, index = request_id.rpartition("#")
        if not sep or not index.isdigit():
            return False
        _, rows = cache.get(key, (False, 0))
        return rows > 1 and int(index) < rows

    def __len__(self) -> int:
        return sum(len(cache) for cache in self._by_model.values())


@dataclass
class DataPlane:
    """Answers predictions from the routing table and the model store, and logs every one."""

    table: RoutingTable
    store: ModelStore | None
    log: PredictionLog
    publish_ground_truth: PublishGroundTruth
    publish_refusal: PublishRefusal
    producer: str = "serving"
    #: Who may call; None until startup (requests are then answered 503, never let through).
    auth: Authenticator | None = None
    limits: Limits = field(default_factory=Limits)
    answered: AnsweredRequests = field(
        default_factory=lambda: AnsweredRequests(ttl_seconds=24 * 3600.0, max_per_model=20_000)
    )
    #: Requests by route, risk class and status, and their latency; None counts nothing (tests).
    metrics: RequestMetrics | None = None
    _mirrors: set[asyncio.Task[None]] = field(default_factory=set)

    async def predict(self, body: Any, grant: Grant) -> dict[str, Any]:
        """Check, route, load, validate, predict, log; mirror to shadows without waiting for them."""
        if not isinstance(body, dict):
            raise HttpError(422, "the body must be a JSON object with 'model' and 'inputs'")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise HttpError(422, "'model' must be the name of a model")
        _check_model(grant, model)
        request_id = body.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            raise HttpError(422, "'request_id' must be a string when given")
        try:
            rows = validate_rows(
                body.get("inputs"), max_rows=self.limits.max_rows, max_columns=self.limits.max_columns
            )
            context = self._context(body.get("context"), len(rows))
        except TooLarge as error:
            raise HttpError(413, str(error)) from error
        except InvalidInputs as error:
            raise HttpError(422, str(error)) from error
        table = self.table.get(model)
        if table is None:
            raise HttpError(404, f"unknown model {model!r}: serving has no routing table for it")
        try:
            route = choose_route(table, request_id)
        except NoServableVersion as error:
            raise HttpError(404, str(error)) from error
        loaded = await self._load(model, route.target)
        outputs = await self._predict_and_log(
            model, loaded, route.target, route.route, route.request_key, rows, context
        )
        self.answered.remember(model, route.request_key, len(rows))
        for shadow in route.shadows:
            task = asyncio.create_task(self._mirror(model, shadow, route.request_key, rows, context))
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)
        answer: dict[str, Any] = {
            "model": model,
            "version": loaded.version,
            "route": route.route,
            "request_id": route.request_key,
            "predictions": outputs.predictions,
        }
        if outputs.probabilities is not None:
            answer["probabilities"] = outputs.probabilities
        return answer

    def _context(self, context: object, rows: int) -> list[dict[str, Scalar]] | None:
        """Columns logged with each row but never given to the model (ids, cohorts); optional."""
        if context is None:
            return None
        checked = validate_rows(
            context, max_rows=self.limits.max_rows, max_columns=self.limits.max_columns, field="context"
        )
        if len(checked) != rows:
            raise InvalidInputs(
                f"'context' has {len(checked)} rows; it needs one per row of 'inputs' ({rows})"
            )
        return checked

    async def feedback(self, body: Any, grant: Grant) -> dict[str, Any]:
        """Publish the true label of a prediction serving answered as `GroundTruthObserved`."""
        if not isinstance(body, dict) or not {"model", "request_id", "label"} <= body.keys():
            raise HttpError(422, "the body must be a JSON object with 'model', 'request_id' and 'label'")
        if isinstance(body["model"], str):
            _check_model(grant, body["model"])
        try:
            event = GroundTruthObserved(
                producer=self.producer,
                model=body["model"],
                request_id=body["request_id"],
                label=body["label"],
            )
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise HttpError(422, f"invalid feedback: {problems}") from error
        if not self.answered.answered(event.model, event.request_id):
            raise HttpError(
                404,
                f"serving answered no request {event.request_id!r} for model {event.model!r} in the "
                f"last {self.answered.ttl_seconds:g} s: feedback is accepted only for answered requests",
            )
        try:
            await self.publish_ground_truth(event)
        except Exception as error:
            logger.exception("ground truth publish failed", extra={"model": event.model})
            raise HttpError(503, f"feedback could not be recorded, retry later: {error}") from error
        return {"event_id": str(event.event_id)}

    async def wait_for_mirrors(self) -> None:
        """Let the shadow calls under way finish (on shutdown, and in tests)."""
        if self._mirrors:
            await asyncio.gather(*self._mirrors, return_exceptions=True)

    async def _load(self, model: str, target: RouteTarget) -> LoadedModel:
        if self.store is None:
            raise HttpError(503, "serving is starting: the model store is not ready yet")
        try:
            return await self.store.get(model, target)
        except ArtifactRefused as error:
            if error.newly:
                await self._report_refusal(model, target, error.reason)
            raise HttpError(
                503,
                f"model {model!r} version {target.version!r} is refused and will not be served: "
                f"{error.reason}",
            ) from error
        except ModelUnavailable as error:
            raise HttpError(503, str(error)) from error

    async def _report_refusal(self, model: str, target: RouteTarget, reason: str) -> None:
        """Publish the refusal as an incident; a broker outage must not turn the 503 into a 500."""
        event = ModelArtifactRefused(
            producer=self.producer,
            model=model,
            version=target.version,
            model_uri=target.model_uri,
            digest=target.digest,
            reason=reason,
        )
        try:
            await self.publish_refusal(event)
        except Exception:
            logger.exception("artifact refusal could not be published", extra={"model": model})

    async def _predict_and_log(
        self,
        model: str,
        loaded: LoadedModel,
        target: RouteTarget,
        route: Route,
        request_key: str,
        rows: list[dict[str, Scalar]],
        context: list[dict[str, Scalar]] | None = None,
    ) -> Outputs:
        started = time.perf_counter()
        try:
            frame = features_frame(loaded.estimator, rows, loaded.schema)
            if len(rows) <= INLINE_ROWS:
                # A few rows take a millisecond or two: a thread hop would cost more than it frees.
                outputs = predict(loaded.estimator, frame)
            else:
                # A large batch must not stall the event loop (and the broker with it).
                outputs = await asyncio.to_thread(predict, loaded.estimator, frame)
        except InvalidInputs as error:
            self._log(model, target, route, request_key, rows, context, started, error=str(error))
            raise HttpError(422, f"model {model!r}: {error}") from error
        self._log(model, target, route, request_key, rows, context, started, predictions=outputs.predictions)
        return outputs

    async def _mirror(
        self,
        model: str,
        target: RouteTarget,
        request_key: str,
        rows: list[dict[str, Scalar]],
        context: list[dict[str, Scalar]] | None,
    ) -> None:
        """A shadow's prediction: logged with route `shadow`, never returned; its failures stay its own."""
        try:
            loaded = await self._load(model, target)
            await self._predict_and_log(model, loaded, target, "shadow", request_key, rows, context)
        except HttpError as error:
            logger.warning(
                "shadow prediction failed",
                extra={"model": model, "version": target.version, "reason": error.message},
            )
        except Exception:
            logger.exception("shadow prediction failed", extra={"model": model, "version": target.version})

    def _log(
        self,
        model: str,
        target: RouteTarget,
        route: Route,
        request_key: str,
        rows: list[dict[str, Scalar]],
        context: list[dict[str, Scalar]] | None,
        started: float,
        *,
        predictions: list[Any] | None = None,
        error: str | None = None,
    ) -> None:
        latency_ms = (time.perf_counter() - started) * 1000 / len(rows)
        now = datetime.now(UTC)
        # The request's span (a shadow's task runs in a copy of the request's context).
        traceparent = current_traceparent()
        for index, row in enumerate(rows):
            self.log.append(
                model,
                PredictionRecord(
                    request_id=row_request_id(request_key, index, len(rows)),
                    version=target.version,
                    route=route,
                    features=dict(row) if context is None else {**context[index], **row},
                    prediction=None if predictions is None else predictions[index],
                    latency_ms=latency_ms,
                    error=error,
                    dataset_version=target.dataset_version,
                    predicted_at=now,
                    traceparent=traceparent,
                ),
            )


def row_request_id(request_key: str, index: int, rows: int) -> str:
    """The id a row's prediction is logged (and its label joined) under: `key`, or `key#i` in a batch."""
    return request_key if rows == 1 else f"{request_key}#{index}"


JsonHandler = Callable[[Any, Grant], Awaitable[dict[str, Any]]]


def json_endpoint(
    handler: JsonHandler, plane: DataPlane, *, scope: AuthScope, route: str, success_status: int = 200
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app answering POST with `handler(parsed JSON body, grant)` behind the doors of the
    module docstring (token and scope, body cap); `HttpError`s become their status. Every answer
    is counted under the route template `route` (`request_metrics`)."""

    async def endpoint(asgi_scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        model: str | None = None
        status, payload, headers = success_status, None, []
        try:
            if asgi_scope.get("method") != "POST":
                raise HttpError(405, "use POST", [(b"allow", b"POST")])
            grant = _authorize(plane, asgi_scope, scope)
            body = await _read_json(asgi_scope, receive, plane.limits.max_body_bytes)
            model = _model_named(body)
            payload = await handler(body, grant)
        except HttpError as error:
            status, payload, headers = error.status, {"error": error.message}, error.headers
        except Exception:
            logger.exception("request failed", extra={"path": asgi_scope.get("path")})
            status, payload = 500, {"error": "internal error; see the serving logs"}
        await _respond(send, status, payload, extra_headers=headers)
        if plane.metrics is not None:
            risk_class = risk_class_of(plane.table, model)
            plane.metrics.observe(route, risk_class, status, time.perf_counter() - started)

    return endpoint


def _model_named(body: Any) -> str | None:
    """The model a request body names, if it names one."""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def _authorize(plane: DataPlane, asgi_scope: Scope, scope: AuthScope) -> Grant:
    if plane.auth is None:
        raise HttpError(503, "serving is starting: its tokens are not loaded yet")
    try:
        return plane.auth.grant(_header(asgi_scope, b"authorization"), scope)
    except Denied as denied:
        raise HttpError(
            denied.status, denied.message, [(b"www-authenticate", denied.challenge.encode())]
        ) from denied


def _check_model(grant: Grant, model: str) -> None:
    if not grant.allows_model(model):
        raise HttpError(
            403,
            f"the token {grant.name!r} may not call model {model!r}: it is limited to models "
            f"starting with {grant.model_prefix!r}",
            [(b"www-authenticate", b'Bearer realm="modelfleet-serving", error="insufficient_scope"')],
        )


def _header(asgi_scope: Scope, name: bytes) -> str | None:
    for key, value in asgi_scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def _read_json(asgi_scope: Scope, receive: Receive, max_bytes: int) -> Any:
    """The parsed body, read only while it stays within `max_bytes` (413 as soon as it does not)."""
    declared = _header(asgi_scope, b"content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise HttpError(400, "the Content-Length header is not a number")
        if int(declared) > max_bytes:
            raise HttpError(
                413, f"the body of {int(declared)} bytes is larger than the limit of {max_bytes} bytes"
            )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "the client disconnected before sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise HttpError(413, f"the body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        return json.loads(b"".join(chunks) or b"null", parse_constant=_reject_constant)
    except ValueError as error:
        raise HttpError(422, f"the body is not valid JSON: {error}") from error


async def _respond(
    send: Send, status: int, payload: Any, *, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})
