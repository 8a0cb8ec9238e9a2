"""What the speech examples share: an energy voice-activity detector and the audio
they speak. A real bot would use a speech recogniser and a synthesiser instead."""

from __future__ import annotations

import math

import numpy as np

from clutchcall.audio import Pcm, synth_prompt, synth_silence, synth_tone

SAMPLE_RATE = 16000  # what speech recognisers usually take
LOUD_DBFS = -35.0


def level_dbfs(samples: Pcm) -> float:
    """The frame's RMS level in dB relative to full scale (-inf dB is digital silence)."""
    rms = math.sqrt(float(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0
    return 20 * math.log10(max(rms, 1e-9) / 32768)


class Utterances:
    """Finds the end of each utterance: speech is a run of loud frames (at least
    ``min_speech_ms`` of them), ended by ``hangover_ms`` of quiet ones."""

    def __init__(self, *, min_speech_ms: int = 100, hangover_ms: int = 300) -> None:
        self.min_speech_us = min_speech_ms * 1000
        self.hangover_us = hangover_ms * 1000
        self._speech_us = 0
        self._quiet_us = 0

    def push(self, samples: Pcm, duration_us: int) -> float | None:
        """Feed one frame; returns the utterance's length in seconds when one ends."""
        if level_dbfs(samples) > LOUD_DBFS:
            self._speech_us += self._quiet_us + duration_us if self._speech_us else duration_us
            self._quiet_us = 0
            return None
        if not self._speech_us:
            return None
        self._quiet_us += duration_us
        if self._quiet_us < self.hangover_us:
            return None
        speech_us, self._speech_us, self._quiet_us = self._speech_us, 0, 0
        return speech_us / 1e6 if speech_us >= self.min_speech_us else None


def caller_says() -> Pcm:
    """About 1.2 s of "speech" followed by half a second of silence."""
    return np.concatenate([synth_prompt(SAMPLE_RATE), synth_silence(0.5, SAMPLE_RATE)])


def bot_says() -> Pcm:
    """The bot's answer: two notes, 0.6 s."""
    notes = [synth_tone(hz, 0.3, SAMPLE_RATE, fade_ms=10.0) for hz in (440.0, 660.0)]
    return np.concatenate(notes)
