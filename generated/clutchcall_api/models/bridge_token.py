from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.bridge_role import BridgeRole

T = TypeVar("T", bound="BridgeToken")


@_attrs_define
class BridgeToken:
    """
    Attributes:
        token (str): Opaque; send it as the MoQT AUTHORIZATION_TOKEN setup parameter.
        role (BridgeRole): `server`: subscribe uplink, publish downlink. `caller`: the reverse.
        call_sid (str):
        expires_at (datetime.datetime):
        relay_url (None | str): Relay to use (`moqt://host:port` or `https://host:port/path`), or null
            when the client should use its configured relay.
    """

    token: str
    role: BridgeRole
    call_sid: str
    expires_at: datetime.datetime
    relay_url: None | str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        token = self.token

        role = self.role.value

        call_sid = self.call_sid

        expires_at = self.expires_at.isoformat()

        relay_url: None | str
        relay_url = self.relay_url

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "token": token,
                "role": role,
                "callSid": call_sid,
                "expiresAt": expires_at,
                "relayUrl": relay_url,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        token = d.pop("token")

        role = BridgeRole(d.pop("role"))

        call_sid = d.pop("callSid")

        expires_at = datetime.datetime.fromisoformat(d.pop("expiresAt"))

        def _parse_relay_url(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        relay_url = _parse_relay_url(d.pop("relayUrl"))

        bridge_token = cls(
            token=token,
            role=role,
            call_sid=call_sid,
            expires_at=expires_at,
            relay_url=relay_url,
        )

        bridge_token.additional_properties = d
        return bridge_token

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
