from enum import StrEnum


class BridgeRole(StrEnum):
    CALLER = "caller"
    SERVER = "server"

    def __str__(self) -> str:
        return str(self.value)
