"""One bad MQTT payload must not end a sensor source (issue 12, scenario 4).

A 401-digit integer made `math.isfinite` raise OverflowError and a 5000-digit one made
`json.loads` raise ValueError (Python's integer digit limit); either escaped paho's on_message,
ended paho's network thread, and the pipeline never received again while it still looked
`running`. Here: the real payloads through a real mosquitto, then good readings must still give
results and the bad ones are counted; and the parser is fuzzed with hypothesis: it only ever
returns rows or raises SensorDataError, the one error the source counts.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import paho.mqtt.client as mqtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import VIBRATION_MODEL, wait_until, write_config

from edge_runtime.sources.mqtt_source import parse_sensor_payload
from edge_runtime.sources.windowing import SensorDataError

STATS = "edge/test-pi/stats"
RESULT = "edge/test-pi/vib/result"
COLUMNS = ("ax", "ay", "az")
HUGE = [b"[1, 2, 1" + b"0" * 400 + b"]",  # OverflowError in float()/isfinite
        b"[1, 2, " + b"9" * 5000 + b"]",  # ValueError: over Python's int digit limit
        b'{"ax": 1' + b"0" * 400 + b', "ay": 0, "az": 1}']


def test_huge_integers_are_bad_inputs_and_the_source_keeps_receiving(
        tmp_path, mosquitto, subscribe, start_daemon):
    sub = subscribe(RESULT, STATS)
    config = write_config(tmp_path / "c.toml", mosquitto, [{
        "name": "vib",
        "source": {"type": "mqtt", "topic": "sensors/vib"},
        "model": {"path": str(VIBRATION_MODEL), "threads": 1},
    }], stats={"interval": 1.0})
    daemon = start_daemon(config)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    try:
        def send_good(n: int) -> None:
            for i in range(n):
                reading = {"ax": 0.0, "ay": 0.0, "az": 1.0 + 0.01 * (i % 3)}
                pub.publish("sensors/vib", json.dumps(reading), qos=1).wait_for_publish(5)

        def bad_inputs() -> int:
            stats = sub.json_on(STATS)
            return stats[-1]["pipelines"]["vib"]["bad_inputs"] if stats else -1

        wait_until(lambda: (send_good(8), sub.json_on(RESULT))[1], 30)  # subscribed, flowing
        for payload in HUGE:
            pub.publish("sensors/vib", payload, qos=1).wait_for_publish(5)
        wait_until(lambda: bad_inputs() == len(HUGE), 20)
        before = len(sub.json_on(RESULT))
        # The window refills with good readings: results must flow again on the same input.
        wait_until(lambda: (send_good(8), len(sub.json_on(RESULT)) > before + 5)[1], 30)
        assert sub.json_on(STATS)[-1]["pipelines"]["vib"]["state"] == "running"
        assert "skipping bad sensor payload" in daemon.log
        assert "Traceback" not in daemon.log, daemon.log
    finally:
        pub.loop_stop()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log


def _check(payload: bytes, columns: tuple[str, ...] = COLUMNS) -> None:
    try:
        rows = parse_sensor_payload(payload, columns)
    except SensorDataError:
        return
    assert rows and all(isinstance(r, np.ndarray) and r.dtype == np.float32 for r in rows)
    assert all(r.shape == (len(columns),) and np.isfinite(r).all() for r in rows)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.integers(min_value=10 ** 300, max_value=10 ** 1000),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(COLUMNS + ("x", "")), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_any_json_document_is_rows_or_one_counted_error(doc):
    _check(json.dumps(doc, allow_nan=True).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_any_bytes_are_rows_or_one_counted_error(raw):
    _check(raw)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b",", b":", b'"ax"', b"1e999", b"-",
                                 b"0" * 500, b"9" * 5000, b"NaN", b"Infinity", b"null", b"1.5",
                                 b"\xff", b" "]), max_size=30))
def test_fuzz_json_shaped_garbage_is_rows_or_one_counted_error(parts):
    _check(b"".join(parts))
    _check(b"".join(parts), ("ax",))
