"""Contains all the data models used in inputs/outputs"""

from .attach_agent_request import AttachAgentRequest
from .audio_codec import AudioCodec
from .bridge_role import BridgeRole
from .bridge_token import BridgeToken
from .bridge_token_request import BridgeTokenRequest
from .call import Call
from .call_status import CallStatus
from .end_reason import EndReason
from .originate_request import OriginateRequest
from .problem import Problem
from .problem_errors_item import ProblemErrorsItem
from .transfer_to_agent import TransferToAgent
from .transfer_to_number import TransferToNumber

__all__ = (
    "AttachAgentRequest",
    "AudioCodec",
    "BridgeRole",
    "BridgeToken",
    "BridgeTokenRequest",
    "Call",
    "CallStatus",
    "EndReason",
    "OriginateRequest",
    "Problem",
    "ProblemErrorsItem",
    "TransferToAgent",
    "TransferToNumber",
)
