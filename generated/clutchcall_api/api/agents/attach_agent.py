from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.attach_agent_request import AttachAgentRequest
from ...models.call import Call
from ...models.problem import Problem
from ...types import Response


def _get_kwargs(
    org_id: str,
    sid: str,
    *,
    body: AttachAgentRequest,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "put",
        "url": "/v1/orgs/{org_id}/calls/{sid}/agent".format(
            org_id=quote(str(org_id), safe=""),
            sid=quote(str(sid), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
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
    sid: str,
    *,
    client: AuthenticatedClient,
    body: AttachAgentRequest,
) -> Response[Call | Problem]:
    """Attach an AI agent to a call

     Bind a server-side speech-to-speech agent to a live call: the engine wires
    the call's audio tracks to the agent. Attaching replaces any agent already
    on the call. Allowed on a call that has not ended; an agent attached
    before answer starts when the callee picks up. Unknown agents are 404
    (`agent_not_found`). The dev engine knows `echo`, `healthcare-assistant`
    and `billing-bot`.

    Args:
        org_id (str):
        sid (str):
        body (AttachAgentRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Call | Problem]
    """

    kwargs = _get_kwargs(
        org_id=org_id,
        sid=sid,
        body=body,
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
    body: AttachAgentRequest,
) -> Call | Problem | None:
    """Attach an AI agent to a call

     Bind a server-side speech-to-speech agent to a live call: the engine wires
    the call's audio tracks to the agent. Attaching replaces any agent already
    on the call. Allowed on a call that has not ended; an agent attached
    before answer starts when the callee picks up. Unknown agents are 404
    (`agent_not_found`). The dev engine knows `echo`, `healthcare-assistant`
    and `billing-bot`.

    Args:
        org_id (str):
        sid (str):
        body (AttachAgentRequest):

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
        body=body,
    ).parsed


async def asyncio_detailed(
    org_id: str,
    sid: str,
    *,
    client: AuthenticatedClient,
    body: AttachAgentRequest,
) -> Response[Call | Problem]:
    """Attach an AI agent to a call

     Bind a server-side speech-to-speech agent to a live call: the engine wires
    the call's audio tracks to the agent. Attaching replaces any agent already
    on the call. Allowed on a call that has not ended; an agent attached
    before answer starts when the callee picks up. Unknown agents are 404
    (`agent_not_found`). The dev engine knows `echo`, `healthcare-assistant`
    and `billing-bot`.

    Args:
        org_id (str):
        sid (str):
        body (AttachAgentRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Call | Problem]
    """

    kwargs = _get_kwargs(
        org_id=org_id,
        sid=sid,
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    org_id: str,
    sid: str,
    *,
    client: AuthenticatedClient,
    body: AttachAgentRequest,
) -> Call | Problem | None:
    """Attach an AI agent to a call

     Bind a server-side speech-to-speech agent to a live call: the engine wires
    the call's audio tracks to the agent. Attaching replaces any agent already
    on the call. Allowed on a call that has not ended; an agent attached
    before answer starts when the callee picks up. Unknown agents are 404
    (`agent_not_found`). The dev engine knows `echo`, `healthcare-assistant`
    and `billing-bot`.

    Args:
        org_id (str):
        sid (str):
        body (AttachAgentRequest):

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
            body=body,
        )
    ).parsed
