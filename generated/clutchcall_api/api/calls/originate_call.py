from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.call import Call
from ...models.originate_request import OriginateRequest
from ...models.problem import Problem
from ...types import UNSET, Response, Unset


def _get_kwargs(
    org_id: str,
    *,
    body: OriginateRequest,
    idempotency_key: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(idempotency_key, Unset):
        headers["Idempotency-Key"] = idempotency_key

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/orgs/{org_id}/calls".format(
            org_id=quote(str(org_id), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Call | Problem | None:
    if response.status_code == 201:
        response_201 = Call.from_dict(response.json())

        return response_201

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())

        return response_403

    if response.status_code == 404:
        response_404 = Problem.from_dict(response.json())

        return response_404

    if response.status_code == 409:
        response_409 = Problem.from_dict(response.json())

        return response_409

    if response.status_code == 413:
        response_413 = Problem.from_dict(response.json())

        return response_413

    if response.status_code == 415:
        response_415 = Problem.from_dict(response.json())

        return response_415

    if response.status_code == 422:
        response_422 = Problem.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = Problem.from_dict(response.json())

        return response_429

    if response.status_code == 500:
        response_500 = Problem.from_dict(response.json())

        return response_500

    if response.status_code == 503:
        response_503 = Problem.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Call | Problem]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    org_id: str,
    *,
    client: AuthenticatedClient,
    body: OriginateRequest,
    idempotency_key: str | Unset = UNSET,
) -> Response[Call | Problem]:
    """Originate a call

     Place an outbound call over a SIP trunk. The call is returned as soon as
    it is dialing; poll `getCall` to see it ring and be answered.

    Send an `Idempotency-Key` to make retries safe: a repeated request with the
    same key and body returns the call created the first time (with the header
    `Idempotent-Replayed: true`) instead of placing a second one. Reusing a key
    with a different body is a conflict (409, `idempotency_key_reused`).

    Args:
        org_id (str):
        idempotency_key (str | Unset):
        body (OriginateRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Call | Problem]
    """

    kwargs = _get_kwargs(
        org_id=org_id,
        body=body,
        idempotency_key=idempotency_key,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    org_id: str,
    *,
    client: AuthenticatedClient,
    body: OriginateRequest,
    idempotency_key: str | Unset = UNSET,
) -> Call | Problem | None:
    """Originate a call

     Place an outbound call over a SIP trunk. The call is returned as soon as
    it is dialing; poll `getCall` to see it ring and be answered.

    Send an `Idempotency-Key` to make retries safe: a repeated request with the
    same key and body returns the call created the first time (with the header
    `Idempotent-Replayed: true`) instead of placing a second one. Reusing a key
    with a different body is a conflict (409, `idempotency_key_reused`).

    Args:
        org_id (str):
        idempotency_key (str | Unset):
        body (OriginateRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Call | Problem
    """

    return sync_detailed(
        org_id=org_id,
        client=client,
        body=body,
        idempotency_key=idempotency_key,
    ).parsed


async def asyncio_detailed(
    org_id: str,
    *,
    client: AuthenticatedClient,
    body: OriginateRequest,
    idempotency_key: str | Unset = UNSET,
) -> Response[Call | Problem]:
    """Originate a call

     Place an outbound call over a SIP trunk. The call is returned as soon as
    it is dialing; poll `getCall` to see it ring and be answered.

    Send an `Idempotency-Key` to make retries safe: a repeated request with the
    same key and body returns the call created the first time (with the header
    `Idempotent-Replayed: true`) instead of placing a second one. Reusing a key
    with a different body is a conflict (409, `idempotency_key_reused`).

    Args:
        org_id (str):
        idempotency_key (str | Unset):
        body (OriginateRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Call | Problem]
    """

    kwargs = _get_kwargs(
        org_id=org_id,
        body=body,
        idempotency_key=idempotency_key,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    org_id: str,
    *,
    client: AuthenticatedClient,
    body: OriginateRequest,
    idempotency_key: str | Unset = UNSET,
) -> Call | Problem | None:
    """Originate a call

     Place an outbound call over a SIP trunk. The call is returned as soon as
    it is dialing; poll `getCall` to see it ring and be answered.

    Send an `Idempotency-Key` to make retries safe: a repeated request with the
    same key and body returns the call created the first time (with the header
    `Idempotent-Replayed: true`) instead of placing a second one. Reusing a key
    with a different body is a conflict (409, `idempotency_key_reused`).

    Args:
        org_id (str):
        idempotency_key (str | Unset):
        body (OriginateRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Call | Problem
    """

    return (
        await asyncio_detailed(
            org_id=org_id,
            client=client,
            body=body,
            idempotency_key=idempotency_key,
        )
    ).parsed
