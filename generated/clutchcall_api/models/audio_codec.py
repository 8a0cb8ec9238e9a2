from enum import StrEnum


class AudioCodec(StrEnum):
    G711_ALAW = "g711_alaw"
    G711_ULAW = "g711_ulaw"
    OPUS = "opus"
    PCM16 = "pcm16"

    def __str__(self) -> str:
        return str(self.value)
