"""Reading and validating request bodies. Every refusal is an ``InputRejected`` with a fixed
reason, answered as a JSON 4xx before anything reaches the model."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import pydantic_core
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

Body = TypeVar("Body", bound=BaseModel)

MAX_ERROR_DETAILS = 20
MAX_LOCATION_CHARS = 64

# The first pydantic error decides the reason; types not listed are "wrong_type".
_REASON_BY_ERROR_TYPE = {
    "model_type": "not_an_object",
    "model_attributes_type": "not_an_object",
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "finite_number": "non_finite",
    "too_short": "batch_size",
    "too_long": "batch_size",
}


class InputRejected(Exception):
    def __init__(self, status: int, reason: str, message: str, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or []


def _check_content_headers(request: Request) -> None:
    """JSON in UTF-8 (RFC 8259), unencoded: anything else would be parsed as something it is not."""
    media_type, _, parameters = request.headers.get("content-type", "").partition(";")
    media_type = media_type.strip().lower()
    if not (media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))):
        raise InputRejected(415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json")
    charset = next((value.strip().strip('"').lower() for key, _, value in
                    (p.partition("=") for p in parameters.split(";")) if key.strip().lower() == "charset"), "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise InputRejected(415, "unsupported_media_type", "JSON bodies must be UTF-8")
    if request.headers.get("content-encoding", "identity").strip().lower() != "identity":
        raise InputRejected(415, "unsupported_media_type", "compressed bodies are not accepted")


async def read_json_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The raw body of a JSON request, refused early when it is not JSON, too large or too slow.

    A declared Content-Length over the limit is refused without reading the body; a chunked
    body is read only up to the limit, and for at most ``timeout`` seconds.
    """
    _check_content_headers(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise InputRejected(413, "body_too_large", f"the body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise InputRejected(413, "body_too_large", f"the body is larger than {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise InputRejected(408, "body_timeout", f"the body did not arrive within {timeout:g} s") from None
    except ClientDisconnect:
        raise InputRejected(499, "client_disconnected", "the client closed the connection mid-body") from None
    body = b"".join(chunks)
    if not body.strip():
        raise InputRejected(400, "empty_body", "the request body is empty")
    return body


def parse_body(schema: type[Body], raw: bytes, *, max_items: int | None = None) -> Body:
    """Validate ``raw`` JSON against ``schema``; the error details never echo input values.

    With ``max_items``, a top-level ``instances`` list is counted before anything in it is
    validated, so an oversized batch costs one parse, not one validation per row.
    """
    try:
        document = pydantic_core.from_json(raw)
    except ValueError as exc:
        raise InputRejected(400, "invalid_json", f"invalid JSON: {exc}") from None
    if max_items is not None and isinstance(document, dict) and isinstance(document.get("instances"), list) \
            and len(document["instances"]) > max_items:
        raise InputRejected(422, "batch_size", f"a batch holds at most {max_items} instances, "
                                               f"this one has {len(document['instances'])}")
    try:
        return schema.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        reason = _REASON_BY_ERROR_TYPE.get(errors[0]["type"], "wrong_type")
        details = [{"loc": [str(part)[:MAX_LOCATION_CHARS] for part in e["loc"]], "type": e["type"], "msg": e["msg"]}
                   for e in errors[:MAX_ERROR_DETAILS]]
        raise InputRejected(422, reason, f"invalid request body: {errors[0]['msg']}", details) from None
