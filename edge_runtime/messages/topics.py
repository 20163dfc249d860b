"""The MQTT topic layout: every topic is {prefix}/{device}/..."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str
    device: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    def result(self, pipeline: str) -> str:
        return f"{self.base}/{pipeline}/result"

    def events(self, pipeline: str) -> str:
        return f"{self.base}/{pipeline}/events"

    # Latest values (publishing/latest.py), retained: Home Assistant entities read them.
    def state(self, pipeline: str) -> str:
        return f"{self.base}/{pipeline}/state"

    def snapshot(self, pipeline: str) -> str:
        return f"{self.base}/{pipeline}/snapshot"

    def control(self, pipeline: str) -> str:
        return f"{self.base}/{pipeline}/control"

    def control_set(self, pipeline: str) -> str:
        """The only topic the daemon takes commands from ([homeassistant] control = true)."""
        return f"{self.base}/{pipeline}/control/set"
