"""ASGI middleware that gives every HTTP request an id, a JSON log line and its RED metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import ServiceMetrics

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger("service.access")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(value):
            return value.decode()
    return uuid.uuid4().hex


class RequestObserver:
    """``handler`` is the route path when the path is one of ours, else ``none``, so scanners
    cannot create label values; paths in ``unmeasured`` (metrics, health) are not counted."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: frozenset[str], unmeasured: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.unmeasured = unmeasured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        handler = path if path in self.routes else "none"
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        measured = path not in self.unmeasured
        if measured:
            self.metrics.in_progress.labels(handler).inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration = time.perf_counter() - started
            if measured:
                self.metrics.in_progress.labels(handler).dec()
                self.metrics.requests.labels(handler, method, str(status)).inc()
                self.metrics.request_duration.labels(handler, method).observe(duration)
            access_log.log(logging.INFO if measured else logging.DEBUG, "request", extra={
                "request_id": request_id, "method": method, "route": handler, "status": status,
                "duration_ms": round(duration * 1000, 3), "model_version": state.get("model_version"),
            })
