from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="OriginateRequest")


@_attrs_define
class OriginateRequest:
    """
    Attributes:
        to (str): Phone number in E.164 form.
        from_ (str): Phone number in E.164 form.
        trunk_id (str):
        agent (str | Unset):
        ring_timeout_sec (int | Unset): Seconds to ring before giving up. The server clamps it to 5..120;
            30 when absent.
    """

    to: str
    from_: str
    trunk_id: str
    agent: str | Unset = UNSET
    ring_timeout_sec: int | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        to = self.to

        from_ = self.from_

        trunk_id = self.trunk_id

        agent = self.agent

        ring_timeout_sec = self.ring_timeout_sec

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "to": to,
                "from": from_,
                "trunkId": trunk_id,
            }
        )
        if agent is not UNSET:
            field_dict["agent"] = agent
        if ring_timeout_sec is not UNSET:
            field_dict["ringTimeoutSec"] = ring_timeout_sec

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        to = d.pop("to")

        from_ = d.pop("from")

        trunk_id = d.pop("trunkId")

        agent = d.pop("agent", UNSET)

        ring_timeout_sec = d.pop("ringTimeoutSec", UNSET)

        originate_request = cls(
            to=to,
            from_=from_,
            trunk_id=trunk_id,
            agent=agent,
            ring_timeout_sec=ring_timeout_sec,
        )

        originate_request.additional_properties = d
        return originate_request

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
