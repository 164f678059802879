"""The data plane of serving: `POST /predict` and `POST /feedback`.

Why these are plain ASGI routes on the service's `AsgiFastStream` app and not a BentoML service:
a measured check with BentoML 1.4.39 (`@bentoml.service` + `@bentoml.asgi_app` mounting the
FastStream app, driven in-process through `Service.to_asgi()`) answered 500 on the API (the service
instance only exists once BentoML's own lifespan and worker machinery ran) and 404 on the mounted
FastStream routes. Hosting the broker's lifecycle inside BentoML's worker processes, and mapping its
errors to the 404/422/503 answers below, could not be done and tested within the time box. One
`AsgiFastStream` process already runs the broker, /healthz, /readyz and /metrics, so the data plane
joins it there; BentoML remains a dependency for a later move.
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

from pydantic import ValidationError

from modelfleet_contracts import GroundTruthObserved, ModelArtifactRefused
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_contracts.serving import PredictionRecord, Route

from .model_store import ArtifactRefused, LoadedModel, ModelStore, ModelUnavailable
from .prediction import InvalidInputs, Outputs, Scalar, features_frame, predict, validate_rows
from .prediction_log import PredictionLog
from .routing import NoServableVersion, choose_route
from .routing_table import RoutingTable

logger = logging.getLogger("modelfleet.serving")

PublishGroundTruth = Callable[[GroundTruthObserved], Awaitable[None]]
PublishRefusal = Callable[[ModelArtifactRefused], Awaitable[None]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Bodies larger than this are refused before parsing (a request is a handful of rows).
MAX_BODY_BYTES = 8 * 1024 * 1024

#: Requests of at most this many rows are predicted on the event loop, larger ones in a thread.
INLINE_ROWS = 16


class HttpError(Exception):
    """An answer other than success: its status and a specific message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class DataPlane:
    """Answers predictions from the routing table and the model store, and logs every one."""

    table: RoutingTable
    store: ModelStore | None
    log: PredictionLog
    publish_ground_truth: PublishGroundTruth
    publish_refusal: PublishRefusal
    producer: str = "serving"
    _mirrors: set[asyncio.Task[None]] = field(default_factory=set)

    async def predict(self, body: Any) -> dict[str, Any]:
        """Route, load, predict, log; mirror to shadows without waiting for them."""
        if not isinstance(body, dict):
            raise HttpError(422, "the body must be a JSON object with 'model' and 'inputs'")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise HttpError(422, "'model' must be the name of a model")
        request_id = body.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            raise HttpError(422, "'request_id' must be a string when given")
        try:
            rows = validate_rows(body.get("inputs"))
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
            model, loaded, route.target, route.route, route.request_key, rows
        )
        for shadow in route.shadows:
            task = asyncio.create_task(self._mirror(model, shadow, route.request_key, rows))
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

    async def feedback(self, body: Any) -> dict[str, Any]:
        """Publish the true label of an earlier prediction as `GroundTruthObserved`."""
        if not isinstance(body, dict) or not {"model", "request_id", "label"} <= body.keys():
            raise HttpError(422, "the body must be a JSON object with 'model', 'request_id' and 'label'")
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
    ) -> Outputs:
        started = time.perf_counter()
        try:
            frame = features_frame(loaded.estimator, rows)
            if len(rows) <= INLINE_ROWS:
                # A few rows take a millisecond or two: a thread hop would cost more than it frees.
                outputs = predict(loaded.estimator, frame)
            else:
                # A large batch must not stall the event loop (and the broker with it).
                outputs = await asyncio.to_thread(predict, loaded.estimator, frame)
        except InvalidInputs as error:
            self._log(model, target, route, request_key, rows, started, error=str(error))
            raise HttpError(422, str(error)) from error
        self._log(model, target, route, request_key, rows, started, predictions=outputs.predictions)
        return outputs

    async def _mirror(
        self, model: str, target: RouteTarget, request_key: str, rows: list[dict[str, Scalar]]
    ) -> None:
        """A shadow's prediction: logged with route `shadow`, never returned; its failures stay its own."""
        try:
            loaded = await self._load(model, target)
            await self._predict_and_log(model, loaded, target, "shadow", request_key, rows)
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
        started: float,
        *,
        predictions: list[Any] | None = None,
        error: str | None = None,
    ) -> None:
        latency_ms = (time.perf_counter() - started) * 1000 / len(rows)
        now = datetime.now(UTC)
        for index, row in enumerate(rows):
            self.log.append(
                model,
                PredictionRecord(
                    request_id=row_request_id(request_key, index, len(rows)),
                    version=target.version,
                    route=route,
                    features=dict(row),
                    prediction=None if predictions is None else predictions[index],
                    latency_ms=latency_ms,
                    error=error,
                    dataset_version=target.dataset_version,
                    predicted_at=now,
                ),
            )


def row_request_id(request_key: str, index: int, rows: int) -> str:
    """The id a row's prediction is logged (and its label joined) under: `key`, or `key#i` in a batch."""
    return request_key if rows == 1 else f"{request_key}#{index}"


JsonHandler = Callable[[Any], Awaitable[dict[str, Any]]]


def json_endpoint(
    handler: JsonHandler, *, success_status: int = 200
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app answering POST with `handler(parsed JSON body)`; `HttpError`s become their status."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":
            await _respond(send, 405, {"error": "use POST"}, extra_headers=[(b"allow", b"POST")])
            return
        status, payload = success_status, None
        try:
            payload = await handler(await _read_json(receive))
        except HttpError as error:
            status, payload = error.status, {"error": error.message}
        except Exception:
            logger.exception("request failed", extra={"path": scope.get("path")})
            status, payload = 500, {"error": "internal error; see the serving logs"}
        await _respond(send, status, payload)

    return endpoint


async def _read_json(receive: Receive) -> Any:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "the client disconnected before sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HttpError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        return json.loads(b"".join(chunks) or b"null")
    except ValueError as error:
        raise HttpError(422, f"the body is not valid JSON: {error}") from error


async def _respond(
    send: Send, status: int, payload: Any, *, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})
