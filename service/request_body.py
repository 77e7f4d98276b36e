"""Reading and validating request bodies. Every refusal is an ``InputRejected`` with a fixed
reason, answered as a JSON 4xx before anything reaches the model."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

Body = TypeVar("Body", bound=BaseModel)

JSON_MEDIA_TYPES = ("application/json",)

# The first pydantic error decides the reason; types not listed are "wrong_type".
_REASON_BY_ERROR_TYPE = {
    "json_invalid": "invalid_json",
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


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in JSON_MEDIA_TYPES or (media_type.startswith("application/") and media_type.endswith("+json"))


async def read_json_body(request: Request, max_bytes: int) -> bytes:
    """The raw body of a JSON request, refused early when it is not JSON or too large.

    A declared Content-Length over the limit is refused without reading the body; a chunked
    body is read only up to the limit.
    """
    if not _is_json(request.headers.get("content-type", "")):
        raise InputRejected(415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise InputRejected(413, "body_too_large", f"the body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise InputRejected(413, "body_too_large", f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise InputRejected(400, "empty_body", "the request body is empty")
    return body


def parse_body(schema: type[Body], raw: bytes) -> Body:
    """Validate ``raw`` JSON against ``schema``; the error details never echo the input."""
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        reason = _REASON_BY_ERROR_TYPE.get(errors[0]["type"], "wrong_type")
        status = 400 if reason == "invalid_json" else 422
        details = [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in errors[:20]]
        raise InputRejected(status, reason, f"invalid request body: {errors[0]['msg']}", details) from None
