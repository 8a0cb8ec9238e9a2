"""From a response (already read, within its size limit) to a model or a typed error.

The server is not trusted: a success body must be a JSON object that the
generated model accepts *and* whose every field has the type ``openapi.yaml``
gives it (the generated ``from_dict`` converts what it can but lets wrong types
through). Error bodies are read leniently: whatever of a problem document is
there and well-typed is used, the rest is replaced by the status and an excerpt
of the body. Every message quotes at most :data:`EXCERPT_CHARS` characters of the
body and never the API key, even when a server echoes it back.
"""

from __future__ import annotations

import datetime
import enum
import json
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import clutchcall_api.models
import httpx
from clutchcall_api.types import Unset

from ..errors import (
    APIError,
    APIResponseValidationError,
    APIStatusError,
    FieldError,
    ResponseTooLargeError,
    status_error_class,
)

M = TypeVar("M")

#: How much of a body an error message quotes.
EXCERPT_CHARS = 200
#: How much of a server-supplied ``detail`` an error message keeps.
DETAIL_CHARS = 500


def parse_response(response: httpx.Response, model: type[M]) -> M:
    """The body of a 2xx response as ``model``, or the typed error the response means."""
    status = response.status_code
    if status >= 400:
        raise status_error(response)
    if not 200 <= status <= 299:
        raise validation_error(response, f"status {status} is not a success")
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise validation_error(response, f"the body is not JSON ({reason})") from None
    name = model.__name__
    if not isinstance(data, dict):
        kind = _json_kind(data)
        raise validation_error(response, f"the body is JSON {kind}, not an object", name)
    from_dict = typing.cast(Any, model).from_dict
    try:
        parsed = from_dict(data)
    except KeyError as exc:
        raise validation_error(response, f"the field {exc} is missing", name) from None
    except Exception as exc:  # generated parsing of untrusted data: any failure is the body's
        raise validation_error(response, f"{type(exc).__name__}: {exc}", name) from None
    problem = model_mismatch(parsed)
    if problem is not None:
        raise validation_error(response, problem, name)
    return typing.cast(M, parsed)


def validation_error(
    response: httpx.Response, reason: str, model: str | None = None
) -> APIResponseValidationError:
    what = f"is not a valid {model}" if model else "the SDK cannot use"
    reason = _shorten(reason, DETAIL_CHARS)
    message, request_id = _answered(response, f"that {what}: {reason}; body: {excerpt(response)}")
    return APIResponseValidationError(
        message,
        status_code=response.status_code,
        body=response.content,
        request_id=request_id,
        response=response,
    )


def status_error(response: httpx.Response, *, note: str | None = None) -> APIStatusError:
    """The :class:`APIStatusError` subclass for an error response, problem document or not."""
    status = response.status_code
    content = response.content
    body: Any = None
    if note is None:
        try:
            body = json.loads(content) if content else None
        except (ValueError, RecursionError):
            body = None
    problem: dict[str, Any] = body if isinstance(body, dict) else {}
    body = problem or None
    code = _shorten(_string(problem, "code") or f"http_{status}", 100)
    message = _string(problem, "detail") or _string(problem, "title")
    if message:
        message = _shorten(message, DETAIL_CHARS)
    else:
        reason = _shorten(response.reason_phrase or "HTTP error", 100)
        message = f"{reason}; body: {excerpt(response)}"
    if note:
        message = f"{message} ({note})"
    errors = _field_errors(problem.get("errors"))
    # Field errors the detail does not already spell out (a server's detail often
    # joins them into one sentence already; they are not repeated).
    unsaid = [e for e in errors if e.message and e.message not in message]
    if unsaid:
        message += ": " + "; ".join(f"{e.field}: {e.message}" for e in unsaid)
    return status_error_class(status)(
        redact(message, response),
        status_code=status,
        code=redact(code, response),
        request_id=_request_id(response, problem),
        response=response,
        errors=errors,
        body=body,
    )


def too_large_error(response: httpx.Response, head: bytes, limit: int) -> APIError:
    """A response whose body went past ``limit`` bytes (``head``: what was read)."""
    cut = _with_body(response, head)
    if response.status_code >= 400:
        return status_error(cut, note=f"its body is longer than {limit} bytes and was not read")
    message, request_id = _answered(
        response, f"longer than max_response_bytes={limit}; body: {excerpt(cut)}"
    )
    return ResponseTooLargeError(
        message,
        status_code=response.status_code,
        body=head,
        limit=limit,
        request_id=request_id,
    )


def encoded_body_error(response: httpx.Response, encoding: str) -> APIError:
    """A response compressed although ``Accept-Encoding: identity`` was sent."""
    note = f"its body is {encoding!r}-encoded, which was not asked for, and was not read"
    empty = _with_body(response, b"")
    if response.status_code >= 400:
        return status_error(empty, note=note)
    return validation_error(empty, note)


# -- schema conformance of a parsed model ------------------------------------------------


def model_mismatch(instance: object) -> str | None:
    """Why an attrs model instance breaks its declared field types, or None if it does not."""
    for name, hint, check in _field_checks(type(instance)):
        value = getattr(instance, name)
        if not check(value):
            shown = _shorten(repr(value), 60)
            return f"{name} must be {_describe(hint)}, got {type(value).__name__} {shown}"
    return None


#: A check that one value has one declared type (see :func:`_compile`).
Check = Callable[[object], bool]

_field_checks_of: dict[type[Any], list[tuple[str, Any, Check]]] = {}


def _field_checks(model: type[Any]) -> list[tuple[str, Any, Check]]:
    """(name, resolved type, check) of each field of a generated model, from its
    annotations; worked out once per model, as every response is checked."""
    found = _field_checks_of.get(model)
    if found is None:
        hints = typing.get_type_hints(model, localns=vars(clutchcall_api.models))
        found = [
            (f.name, hints[f.name], _compile(hints[f.name])) for f in attrs.fields(model) if f.init
        ]
        _field_checks_of[model] = found
    return found


def _compile(hint: Any) -> Check:
    """A check that a value has the type ``hint`` as ``openapi.yaml`` means it: no bool
    for an integer or number, an offset on every date-time, nested models checked too."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(hint)
        nullable = type(None) in args
        # Plain classes (str, an enum, Unset...) make one isinstance call together.
        plain = tuple(a for a in args if _is_plain(a))
        others = [_compile(a) for a in args if a is not type(None) and not _is_plain(a)]
        rest = others[0] if len(others) == 1 else _any_of(others)

        def union(value: object) -> bool:
            return (value is None and nullable) or isinstance(value, plain) or rest(value)

        return union
    if origin is list:
        (item,) = typing.get_args(hint)
        each = _compile(item)
        return lambda value: isinstance(value, list) and all(each(v) for v in value)
    if origin is dict:
        return lambda value: isinstance(value, dict)
    if hint is Any:
        return lambda value: True
    if hint is type(None):
        return lambda value: value is None
    if hint is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return lambda value: isinstance(value, int | float) and not isinstance(value, bool)
    if hint is datetime.datetime:
        # RFC 3339 date-times carry an offset; a naive one would be read as local time.
        return lambda value: isinstance(value, datetime.datetime) and value.tzinfo is not None
    if isinstance(hint, type):
        if attrs.has(hint):
            return lambda value: isinstance(value, hint) and model_mismatch(value) is None
        return lambda value: isinstance(value, hint)
    return lambda value: False


def _any_of(checks: list[Check]) -> Check:
    return lambda value: any(check(value) for check in checks)


def _is_plain(hint: Any) -> bool:
    """Whether ``isinstance(value, hint)`` alone is the check for ``hint``."""
    return (
        isinstance(hint, type)
        and typing.get_origin(hint) is None
        and hint is not Any
        and hint not in (int, float, datetime.datetime, type(None))
        and not attrs.has(hint)
    )


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not Unset]
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if hint is type(None):
        return "null"
    if hint is datetime.datetime:
        return "an ISO 8601 date-time with a UTC offset"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in hint)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if hint in names:
        return names[hint]
    return getattr(hint, "__name__", str(hint))


# -- small helpers ------------------------------------------------------------------------


def excerpt(response: httpx.Response) -> str:
    """The start of the body, quoted, at most :data:`EXCERPT_CHARS` characters, key redacted."""
    content = response.content
    if not content:
        return "(empty)"
    secret = _secret(response) or ""
    # Redact before cutting, so that no prefix of the key survives at the cut.
    text = redact(content[: 4 * EXCERPT_CHARS + len(secret)].decode("utf-8", "replace"), response)
    cut = len(text) > EXCERPT_CHARS or len(content) > 4 * EXCERPT_CHARS + len(secret)
    return repr(text[:EXCERPT_CHARS]) + ("..." if cut else "")


def redact(text: str, response: httpx.Response) -> str:
    """``text`` without the API key the request was sent with."""
    secret = _secret(response)
    return text.replace(secret, "<redacted>") if secret else text


def _secret(response: httpx.Response) -> str | None:
    try:
        header = response.request.headers.get("authorization", "")
    except RuntimeError:  # a response built without its request
        return None
    token = header.partition(" ")[2].strip()
    return token or None


def _what(response: httpx.Response) -> str:
    try:
        request = response.request
    except RuntimeError:
        return "the server"
    return f"{request.method} {request.url.copy_with(query=None)}"


def _with_body(response: httpx.Response, content: bytes) -> httpx.Response:
    """A copy of ``response`` (status, headers, request) holding ``content`` as its body."""
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")
    ]
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:
        request = None
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=content,
        request=request,
        extensions=response.extensions,
    )


def _request_id(response: httpx.Response, problem: dict[str, Any] | None) -> str | None:
    found: str | None = response.headers.get("x-request-id")
    if not found and problem:
        found = _string(problem, "requestId")
    return redact(_shorten(found, 100), response) if found else None


def _answered(response: httpx.Response, body: str) -> tuple[str, str | None]:
    """The message "<request> answered <status> with a body <``body``>", ending with
    the response's request id (if it has one) and redacted; and that request id."""
    text = f"{_what(response)} answered {response.status_code} with a body {body}"
    request_id = _request_id(response, None)
    if request_id:
        text += f" (request id {request_id})"
    return redact(text, response), request_id


def _string(problem: dict[str, Any], key: str) -> str | None:
    value = problem.get(key)
    return value if isinstance(value, str) and value else None


def _field_errors(raw: object) -> list[FieldError]:
    if not isinstance(raw, list):
        return []
    errors = []
    for item in raw[:20]:
        if isinstance(item, dict):
            field, message = item.get("field"), item.get("message")
            errors.append(
                FieldError(
                    _shorten(field if isinstance(field, str) else "", 100),
                    _shorten(message if isinstance(message, str) else "", 200),
                )
            )
    return errors


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
