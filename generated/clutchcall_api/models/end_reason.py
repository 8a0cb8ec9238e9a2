from enum import StrEnum


class EndReason(StrEnum):
    BUSY = "busy"
    CALLEE_HANGUP = "callee_hangup"
    CANCELED = "canceled"
    HANGUP = "hangup"
    INVALID_NUMBER = "invalid_number"
    NO_ANSWER = "no_answer"

    def __str__(self) -> str:
        return str(self.value)
