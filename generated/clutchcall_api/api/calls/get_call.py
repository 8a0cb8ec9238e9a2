from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.call import Call
from ...models.problem import Problem
from ...types import Response


def _get_kwargs(
    org_id: str,
    sid: str,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/orgs/{org_id}/calls/{sid}".format(
            org_id=quote(str(org_id), safe=""),
            sid=quote(str(sid), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Call | Problem | None:
    if response.status_code == 200:
        response_200 = Call.from_dict(response.json())

        return response_200

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
    sid: str,
    *,
    client: AuthenticatedClient,
) -> Response[Call | Problem]:
    """Get a call

     The current state of one call. A call of another org is reported as not found.

    Args:
        org_id (str):
        sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Call | Problem]
    """

    kwargs = _get_kwargs(
        org_id=org_id,
        sid=sid,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    org_id: str,
    sid: str,
    *,
    client: AuthenticatedClient,
) -> Call | Problem | None:
    """Get a call

     The current state of one call. A call of another org is reported as not found.

    Args:
        org_id (str):
        sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Call | Problem
    """

    return sync_detailed(
        org_id=org_id,
        sid=sid,
        client=client,
    ).parsed


async def asyncio_detailed(
    org_id: str,
    sid: str,
    *,
    client: AuthenticatedClient,
) -> Response[Call | Problem]:
    """Get a call

     The current state of one call. A call of another org is reported as not found.

    Args:
        org_id (str):
        sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Call | Problem]
    """

    kwargs = _get_kwargs(
        org_id=org_id,
        sid=sid,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    org_id: str,
    sid: str,
    *,
    client: AuthenticatedClient,
) -> Call | Problem | None:
    """Get a call

     The current state of one call. A call of another org is reported as not found.

    Args:
        org_id (str):
        sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Call | Problem
    """

    return (
        await asyncio_detailed(
            org_id=org_id,
            sid=sid,
            client=client,
        )
    ).parsed
