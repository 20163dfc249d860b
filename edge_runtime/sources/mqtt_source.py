"""Sensor values arriving on an MQTT topic (JSON or plain numbers) fill a sliding window.

Nothing a publisher sends may end the input: `parse_sensor_payload` turns every malformed payload
into SensorDataError (counted as a bad input), `_on_message` counts anything else it raises too,
and the client runs its network loop on a thread this source owns, so a loop that ends anyway is
seen by `read` (SourceError: the pipeline reopens the source with backoff) instead of the pipeline
waiting forever on a dead connection while it looks `running`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from edge_runtime.config.typed import at_least
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.sources.base import Frame, Kind, Source, SourceContext, SourceError, SourceTraits
from edge_runtime.sources.windowing import FLOAT32_MAX, SensorDataError, SlidingWindow
from edge_runtime.supervision.threads import NamedThread
from edge_runtime.transport import mqtt
from edge_runtime.transport.mqtt import connect_async, make_client

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0  # seconds close() waits for the network loop (paho sleeps up to 1 s per step)


@dataclass(frozen=True)
class MqttSourceOptions:
    type: str
    topic: str
    columns: tuple[str, ...] = ()  # JSON keys of one reading; default: the model's sensor columns
    window: int = field(default=0, metadata=at_least(0))  # 0 = from the model
    stride: int = field(default=1, metadata=at_least(1))
    qos: Literal[0, 1] = 1
    max_payload_bytes: int = field(default=65536, metadata=at_least(1))
    fps: float = field(default=0.0, metadata=at_least(0))

    def traits(self) -> SourceTraits:
        return SourceTraits(Kind.SENSOR, live=True, max_fps=self.fps, columns=self.columns,
                            window=self.window)


def parse_sensor_payload(payload: bytes, columns: Sequence[str]) -> list[np.ndarray]:
    """Rows in a payload: `1.5`, `[1, 2, 3]`, `{"ax": 1, ...}`, or a JSON list of those rows."""
    try:
        doc: Any = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise SensorDataError("payload is neither JSON nor a number") from None
    except ValueError as exc:  # JSONDecodeError, or an integer over Python's digit limit
        raise SensorDataError(f"payload is neither JSON nor a number ({exc})") from None
    except RecursionError:  # e.g. "[[[[...": an exception here would end paho's network thread
        raise SensorDataError("payload is nested too deeply") from None
    if isinstance(doc, list) and doc and isinstance(doc[0], (list, dict)):
        return [_row(item, columns) for item in doc]
    return [_row(doc, columns)]


def _row(item: Any, columns: Sequence[str]) -> np.ndarray:
    if isinstance(item, dict):
        missing = [c for c in columns if c not in item]
        if missing:
            raise SensorDataError(f"reading has no key {', '.join(map(repr, missing))}")
        values = [item[c] for c in columns]
    elif isinstance(item, list):
        values = item
    else:
        values = [item]
    if len(values) != len(columns):
        raise SensorDataError(f"reading has {len(values)} values, expected {len(columns)}")
    floats = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SensorDataError(f"value {_short(value)} is not a number")
        try:
            number = float(value)  # a huge JSON integer: OverflowError
        except OverflowError:
            raise SensorDataError(f"value {_short(value)} is beyond float32") from None
        if not math.isfinite(number):
            raise SensorDataError(f"value {_short(value)} is not finite")
        if not -FLOAT32_MAX <= number <= FLOAT32_MAX:
            raise SensorDataError(f"value {_short(value)} is beyond float32")
        floats.append(number)
    return np.asarray(floats, dtype=np.float32)


def _short(value: Any) -> str:
    """repr() for a log line: a 5000-digit integer or a huge list is cut short."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"<integer of ~{int(value.bit_length() * 0.30103) + 1} digits>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class MqttSource(Source):
    def __init__(self, options: MqttSourceOptions, ctx: SourceContext) -> None:
        if ctx.mqtt is None:
            raise SourceError("the mqtt source needs an [mqtt] section")
        self.options = options
        self.columns = options.columns or ctx.columns
        self.window_length = options.window or ctx.window
        if not self.columns:
            raise SourceError("no columns: set source.columns or convert the model with sensor metadata")
        if self.window_length < 1:
            raise SourceError("no window length: set source.window")
        self._window = SlidingWindow(self.window_length, len(self.columns))
        self._since_last = options.stride
        self._ready: deque[Frame] = deque(maxlen=1)  # live: only the newest window matters
        self._cond = threading.Condition()
        self._count = 0
        self._errors = 0
        self._warn = RateLimitedLogger(logger)
        self._mqtt_config = ctx.mqtt
        client_id = f"{ctx.client_id}-in-{ctx.pipeline}"
        self._client = make_client(ctx.mqtt, client_id)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        # paho's own reconnect (doubling, no jitter) between [retry.broker]'s delays
        self._client.reconnect_delay_set(*ctx.reconnect)  # type: ignore[arg-type] # floats work
        self._pipeline = ctx.pipeline
        self._thread: NamedThread | None = None
        self._loop_error = ""

    def open(self) -> None:
        if self._thread is not None:
            return
        try:
            connect_async(self._client, self._mqtt_config)
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot connect to the broker for {self.options.topic!r}: {exc}") from exc
        self._loop_error = ""
        self._thread = NamedThread(target=self._network_loop, name=f"mqtt-in-{self._pipeline}",
                                   daemon=True)
        self._thread.start()

    def _network_loop(self) -> None:
        """paho's loop (it reconnects by itself) until close(); an error ending it is kept."""
        try:
            self._client.loop_forever(retry_first_connection=True)
        except Exception as exc:  # noqa: BLE001 - read() reports it, the pipeline reopens
            self._loop_error = f"{type(exc).__name__}: {exc}"
            logger.exception("%s: the input connection's loop failed", self.options.topic)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.options.topic, qos=self.options.qos)  # again after each reconnect

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.Message) -> None:
        # An exception escaping here would end paho's loop: every failure is a counted bad input.
        try:
            self._take(message)
        except SensorDataError as exc:
            self._reject(message.topic, str(exc))
        except Exception as exc:  # noqa: BLE001 - see above
            self._reject(message.topic, f"{type(exc).__name__}: {exc}")

    def _take(self, message: mqtt.Message) -> None:
        if len(message.payload) > self.options.max_payload_bytes:
            raise SensorDataError(f"payload of {len(message.payload)} bytes is over "
                                  f"max_payload_bytes ({self.options.max_payload_bytes})")
        rows = parse_sensor_payload(message.payload, self.columns)
        for row in rows:
            self._window.push(row)
            self._since_last += 1
            if self._window.full and self._since_last >= self.options.stride:
                self._since_last = 0
                with self._cond:
                    self._ready.append(Frame(self._window.snapshot(), self._count, message.topic))
                    self._count += 1
                    self._cond.notify()

    def _reject(self, topic: str, reason: str) -> None:
        self._errors += 1
        self._warn.warning(topic, "%s: skipping bad sensor payload: %s", topic, reason)

    def read(self) -> Frame | None:
        if self._thread is not None and not self._thread.is_alive():
            raise SourceError(f"the input connection for {self.options.topic!r} ended "
                              f"({self._loop_error or 'its loop returned'})")
        with self._cond:
            if not self._ready:
                self._cond.wait(timeout=0.5)
            return self._ready.popleft() if self._ready else None

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._client.disconnect()  # ends loop_forever, also between reconnect attempts
            thread.join(CLOSE_TIMEOUT)
            if thread.is_alive():
                logger.warning("%s: the input connection did not close within %.0fs",
                               self.options.topic, CLOSE_TIMEOUT)

    def input_errors(self) -> int:
        return self._errors
