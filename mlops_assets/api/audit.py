"""The API's door for writes: every mutating request (POST, PUT, PATCH, DELETE) gets exactly one
row in the audit log, whatever its answer: done, refused (401, 403, 404, 413, 422, 429) or
failed. The row is committed before the answer is sent, so a caller who got an answer can read
its row. Bodies over the configured size are refused (413) before they are read into memory.

A plain ASGI middleware (no per-request task), so reads pay nothing for it."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import anyio

from mlops_assets.api.errors import error_response
from mlops_assets.lakehouse.audit import AuditEntry, AuditLog

log = logging.getLogger(__name__)
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(Exception):
    pass


async def _read_body(receive: Callable, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _declared_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _parsed(body: bytes | None) -> Any:
    if body is None:
        return "<not read: too large>"
    try:
        return json.loads(body) if body else None
    except ValueError:
        return f"<{len(body)} bytes, not JSON>"


def _target(params: dict, parsed: Any) -> str:
    """The model (or run) acted on: from the path, else the body's `model`."""
    named = params.get("model") or params.get("run_id")
    if not named and isinstance(parsed, dict):
        named = parsed.get("model")
    return str(named)[:200] if named else ""


def _entry(scope: dict, body: bytes | None, status: int, answer: bytes, request_id: str):
    principal = scope.get("state", {}).get("principal")
    route = scope.get("route")
    path = getattr(route, "path", None) or scope.get("path", "")[:200]
    params = scope.get("path_params", {})
    parsed = _parsed(body)
    query = scope.get("query_string", b"").decode("latin-1")
    arguments = {"path": params, "query": query, "body": parsed}
    return AuditEntry(
        source="api",
        actor=principal.subject if principal else "anonymous",
        tenant=principal.tenant if principal else "",
        role=principal.role if principal else "",
        action=f"{scope['method']} {path}",
        target=_target(params, parsed),
        arguments=json.dumps(arguments, sort_keys=True, default=str),
        status=status,
        outcome="ok" if status < 400 else ("refused" if status < 500 else "error"),
        result=answer.decode("utf-8", "replace"),
        request_id=request_id,
    )


class AuditMiddleware:
    def __init__(
        self, app: Any, audit: AuditLog, max_body_bytes: int, on_change: Callable[[], None]
    ) -> None:
        self.app, self.audit, self.limit, self.on_change = app, audit, max_body_bytes, on_change

    async def _record(self, entry: AuditEntry) -> None:
        try:
            await anyio.to_thread.run_sync(self.audit.append, entry)
        except Exception:
            log.exception("could not append to the audit log: %s", entry)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})
        try:
            if (_declared_length(scope) or 0) > self.limit:
                raise BodyTooLarge
            body = await _read_body(receive, self.limit)
        except BodyTooLarge:
            await self._refuse_large(scope, receive, send, request_id)
            return
        await self._forward(scope, receive, send, body, request_id)

    async def _refuse_large(self, scope, receive, send, request_id: str) -> None:
        message = f"the body is over {self.limit} bytes"
        response = error_response(413, "payload_too_large", message, {"x-request-id": request_id})
        await self._record(_entry(scope, None, 413, response.body, request_id))
        await response(scope, receive, send)

    async def _forward(self, scope, receive, send, body: bytes, request_id: str) -> None:
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: dict = {}
        chunks: list[bytes] = []
        recorded = False

        async def capture(message: dict) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                start.update({**message, "headers": headers})
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            status = start.get("status", 500)
            recorded = True
            await self._record(_entry(scope, body, status, b"".join(chunks), request_id))
            if status < 400:
                self.on_change()
            await send(start)
            await send({"type": "http.response.body", "body": b"".join(chunks)})

        try:
            await self.app(scope, replay, capture)
        except Exception:
            if not recorded:
                await self._record(_entry(scope, body, 500, b"internal error", request_id))
            raise
