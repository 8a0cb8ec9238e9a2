from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.call_status import CallStatus
from ..models.end_reason import EndReason
from ..types import UNSET, Unset

T = TypeVar("T", bound="Call")


@_attrs_define
class Call:
    """
    Attributes:
        sid (str):
        status (CallStatus): Lifecycle of a call: `dialing` → `ringing` → `in_progress` → `completed`;
            or it ends early as `failed` or `no_answer`.
        to (str): Phone number in E.164 form.
        from_ (str): Phone number in E.164 form.
        started_at (datetime.datetime): When the call was originated (ISO 8601, UTC).
        ring_timeout_sec (int): The ring timeout in force, after clamping.
        answered_at (datetime.datetime | None | Unset):
        ended_at (datetime.datetime | None | Unset):
        end_reason (EndReason | None | Unset):
        trunk_id (None | str | Unset):
        agent (None | str | Unset):
    """

    sid: str
    status: CallStatus
    to: str
    from_: str
    started_at: datetime.datetime
    ring_timeout_sec: int
    answered_at: datetime.datetime | None | Unset = UNSET
    ended_at: datetime.datetime | None | Unset = UNSET
    end_reason: EndReason | None | Unset = UNSET
    trunk_id: None | str | Unset = UNSET
    agent: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        sid = self.sid

        status = self.status.value

        to = self.to

        from_ = self.from_

        started_at = self.started_at.isoformat()

        ring_timeout_sec = self.ring_timeout_sec

        answered_at: None | str | Unset
        if isinstance(self.answered_at, Unset):
            answered_at = UNSET
        elif isinstance(self.answered_at, datetime.datetime):
            answered_at = self.answered_at.isoformat()
        else:
            answered_at = self.answered_at

        ended_at: None | str | Unset
        if isinstance(self.ended_at, Unset):
            ended_at = UNSET
        elif isinstance(self.ended_at, datetime.datetime):
            ended_at = self.ended_at.isoformat()
        else:
            ended_at = self.ended_at

        end_reason: None | str | Unset
        if isinstance(self.end_reason, Unset):
            end_reason = UNSET
        elif isinstance(self.end_reason, EndReason):
            end_reason = self.end_reason.value
        else:
            end_reason = self.end_reason

        trunk_id: None | str | Unset
        if isinstance(self.trunk_id, Unset):
            trunk_id = UNSET
        else:
            trunk_id = self.trunk_id

        agent: None | str | Unset
        if isinstance(self.agent, Unset):
            agent = UNSET
        else:
            agent = self.agent

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "sid": sid,
                "status": status,
                "to": to,
                "from": from_,
                "startedAt": started_at,
                "ringTimeoutSec": ring_timeout_sec,
            }
        )
        if answered_at is not UNSET:
            field_dict["answeredAt"] = answered_at
        if ended_at is not UNSET:
            field_dict["endedAt"] = ended_at
        if end_reason is not UNSET:
            field_dict["endReason"] = end_reason
        if trunk_id is not UNSET:
            field_dict["trunkId"] = trunk_id
        if agent is not UNSET:
            field_dict["agent"] = agent

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        sid = d.pop("sid")

        status = CallStatus(d.pop("status"))

        to = d.pop("to")

        from_ = d.pop("from")

        started_at = datetime.datetime.fromisoformat(d.pop("startedAt"))

        ring_timeout_sec = d.pop("ringTimeoutSec")

        def _parse_answered_at(data: object) -> datetime.datetime | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                answered_at_type_0 = datetime.datetime.fromisoformat(data)

                return answered_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None | Unset, data)

        answered_at = _parse_answered_at(d.pop("answeredAt", UNSET))

        def _parse_ended_at(data: object) -> datetime.datetime | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                ended_at_type_0 = datetime.datetime.fromisoformat(data)

                return ended_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None | Unset, data)

        ended_at = _parse_ended_at(d.pop("endedAt", UNSET))

        def _parse_end_reason(data: object) -> EndReason | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                end_reason_type_0 = EndReason(data)

                return end_reason_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(EndReason | None | Unset, data)

        end_reason = _parse_end_reason(d.pop("endReason", UNSET))

        def _parse_trunk_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        trunk_id = _parse_trunk_id(d.pop("trunkId", UNSET))

        def _parse_agent(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        agent = _parse_agent(d.pop("agent", UNSET))

        call = cls(
            sid=sid,
            status=status,
            to=to,
            from_=from_,
            started_at=started_at,
            ring_timeout_sec=ring_timeout_sec,
            answered_at=answered_at,
            ended_at=ended_at,
            end_reason=end_reason,
            trunk_id=trunk_id,
            agent=agent,
        )

        call.additional_properties = d
        return call

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
