from enum import StrEnum


class CallStatus(StrEnum):
    COMPLETED = "completed"
    DIALING = "dialing"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    NO_ANSWER = "no_answer"
    RINGING = "ringing"

    def __str__(self) -> str:
        return str(self.value)
