"""The daemon as users run it: a subprocess, a real broker, a real subscriber."""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime

import jsonschema
import pytest

from conftest import (
    DIGITS_FLOAT,
    DIGITS_INT8,
    VIBRATION_CSV,
    VIBRATION_MODEL,
    digits_pipeline,
    edge_runtime,
    outbox_state,
    produced,
    wait_until,
    write_config,
)
from edge_runtime.payload_schemas import result_schema

SCHEMA = result_schema()  # as the task plugins assemble it (edge-runtime schema result)


def true_digit(name: str) -> str:
    return re.search(r"digit(\d)", name).group(1)


@pytest.mark.parametrize("model", [DIGITS_INT8, DIGITS_FLOAT], ids=["int8", "float32"])
def test_classifies_every_sample_image_with_the_right_label(tmp_path, mosquitto, subscribe,
                                                             start_daemon, model):
    sub = subscribe("edge/test-pi/#")
    config = write_config(tmp_path / "config.toml", mosquitto, [digits_pipeline(model=model)])
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    # Delivered to the broker before the daemon exits; on to us a moment later.
    wait_until(lambda: len(sub.on("edge/test-pi/status")) >= 2, 10)
    results = sub.json_on("edge/test-pi/digits/result")
    assert len(results) == 20
    assert [r["seq"] for r in results] == list(range(20))
    for result in results:
        jsonschema.validate(result, SCHEMA)
        assert result["classes"][0]["label"] == true_digit(result["source"]["name"])
        assert result["classes"][0]["score"] > 0.5
        assert len(result["classes"]) == 3
        assert result["source"]["width"] == 64 and result["source"]["height"] == 64
        assert result["model"]["name"] == model.stem
    # online at start, offline (retained) after a clean end
    assert sub.on("edge/test-pi/status") == [b"online", b"offline"]


def test_sensor_csv_pipeline_classifies_each_block(tmp_path, mosquitto, subscribe, start_daemon):
    sub = subscribe("edge/test-pi/vibration/result")
    config = write_config(tmp_path / "config.toml", mosquitto, [{
        "name": "vibration",
        "source": {"type": "csv", "path": str(VIBRATION_CSV), "stride": 32},
        "model": {"path": str(VIBRATION_MODEL)},
    }])
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    wait_until(lambda: len(sub.on("edge/test-pi/vibration/result")) >= 12, 10)
    results = sub.json_on("edge/test-pi/vibration/result")
    # 384 rows, window 32, stride 32: 12 windows, each inside one 64-row block of one class.
    assert len(results) == 12
    blocks = ["idle", "normal", "imbalance", "normal", "idle", "imbalance"]
    got = [r["classes"][0]["label"] for r in results]
    assert got == [label for label in blocks for _ in range(2)]
    for result in results:
        jsonschema.validate(result, SCHEMA)


def test_raw_task_publishes_dequantized_outputs(tmp_path, mosquitto, subscribe, start_daemon):
    sub = subscribe("edge/test-pi/raw/result")
    pipeline = digits_pipeline(name="raw")
    pipeline["postprocess"] = {"task": "raw"}
    daemon = start_daemon(write_config(tmp_path / "c.toml", mosquitto, [pipeline]))
    assert daemon.wait(60) == 0, daemon.log
    wait_until(lambda: len(sub.on("edge/test-pi/raw/result")) >= 20, 10)
    results = sub.json_on("edge/test-pi/raw/result")
    assert len(results) == 20
    (name, output), = results[0]["outputs"].items()
    assert output["shape"] == [1, 10]
    assert abs(sum(output["data"]) - 1.0) < 0.05  # softmax probabilities, dequantized
    assert max(range(10), key=lambda i: output["data"][i]) == int(true_digit(results[0]["source"]["name"]))
    jsonschema.validate(results[0], SCHEMA)


def test_sigterm_flushes_and_says_offline(tmp_path, mosquitto, subscribe, start_daemon):
    sub = subscribe("edge/test-pi/#")
    config = write_config(tmp_path / "config.toml", mosquitto,
                          [digits_pipeline(loop=True, fps=20.0)])
    daemon = start_daemon(config)
    wait_until(lambda: len(sub.on("edge/test-pi/digits/result")) >= 5, 30)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    wait_until(lambda: sub.on("edge/test-pi/status")[-1:] == [b"offline"], 10)
    seqs = [r["seq"] for r in sub.json_on("edge/test-pi/digits/result")]
    assert seqs == list(range(len(seqs)))  # nothing produced was lost on the way out
    assert "SIGTERM" in daemon.log


def test_fast_sensor_pipeline_stopped_mid_stream_loses_no_result(tmp_path, mosquitto, subscribe,
                                                                start_daemon):
    """A csv at full speed publishes in batches; SIGTERM flushes the batch in hand."""
    sub = subscribe("edge/test-pi/#")
    config = write_config(tmp_path / "config.toml", mosquitto, [{
        "name": "vibration",
        "source": {"type": "csv", "path": str(VIBRATION_CSV), "stride": 1, "loop": True},
        "model": {"path": str(VIBRATION_MODEL)},
    }], outbox={"path": str(tmp_path / "o.sqlite")})
    daemon = start_daemon(config)
    wait_until(lambda: len(sub.on("edge/test-pi/vibration/result")) >= 3000, 60)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    wait_until(lambda: sub.on("edge/test-pi/status")[-1:] == [b"offline"], 10)
    final = [s for s in sub.json_on("edge/test-pi/stats")][-1]["pipelines"]["vibration"]
    seqs = [r["seq"] for r in sub.json_on("edge/test-pi/vibration/result")]
    # every result the pipeline counted reached the broker, in order, without a gap
    assert seqs == list(range(final["results"])) and len(seqs) > 3000
    assert final["dropped"] == 0 and final["outbox_depth"] == 0


def test_kill_9_leaves_the_last_will_offline(tmp_path, mosquitto, subscribe, start_daemon):
    config = write_config(tmp_path / "config.toml", mosquitto,
                          [digits_pipeline(loop=True, fps=10.0)], mqtt_extra={"keepalive": 5})
    sub = subscribe("edge/test-pi/status")
    daemon = start_daemon(config)
    wait_until(lambda: sub.on("edge/test-pi/status") == [b"online"], 30)
    daemon.signal(signal.SIGKILL)
    daemon.wait(10)
    # The broker notices the dead socket at once (closed by the kernel) and sends the will.
    wait_until(lambda: sub.on("edge/test-pi/status")[-1:] == [b"offline"], 20)
    late = subscribe("edge/test-pi/status")  # retained: a newcomer learns the device is offline
    wait_until(lambda: late.on("edge/test-pi/status") == [b"offline"], 10)


def test_pipelines_keep_running_while_the_broker_is_away(tmp_path, mosquitto, subscribe,
                                                         start_daemon):
    """Inference goes on while the broker is down; what it produces waits in the outbox and is
    delivered after the broker returns (a persistent subscriber sees every seq: test_reliability)."""
    outbox = tmp_path / "outbox.sqlite"
    config = write_config(tmp_path / "config.toml", mosquitto,
                          [digits_pipeline(loop=True, fps=20.0)], outbox={"path": str(outbox)})
    daemon = start_daemon(config)
    sub = subscribe("edge/test-pi/digits/result")
    wait_until(lambda: len(sub.on("edge/test-pi/digits/result")) >= 3, 30)
    sub.close()
    mosquitto.stop()
    wait_until(lambda: "lost the broker connection" in daemon.log, 30)
    at_outage = produced(outbox)
    # The pipeline keeps producing: results committed to the outbox while nobody can take them.
    wait_until(lambda: produced(outbox) >= at_outage + 10 and outbox_state(outbox)[0] >= 10, 30)
    produced_while_away = produced(outbox)
    mosquitto.start()
    sub2 = subscribe("edge/test-pi/digits/result")
    # Delivery resumes past what was produced while the broker was away.
    wait_until(lambda: any(r["seq"] >= produced_while_away
                           for r in sub2.json_on("edge/test-pi/digits/result")), 30)
    assert daemon.process.poll() is None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    assert outbox_state(outbox)[0] == 0  # everything produced reached the broker


def test_check_accepts_the_bundled_examples():
    for config in ("examples/digits/config.toml", "examples/vibration/config.toml"):
        done = edge_runtime("check", "--config", config)
        assert done.returncode == 0, done.stderr
        assert "OK" in done.stdout


def test_info_prints_tensors_runtime_and_metadata():
    done = edge_runtime("info", str(DIGITS_INT8), "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["inputs"][0]["shape"] == [1, 8, 8, 1]
    assert info["inputs"][0]["dtype"] == "int8"
    assert info["inputs"][0]["quantization"]["zero_point"] == -128
    assert info["runtime"].startswith("ai-edge-litert")
    assert info["metadata"]["task"] == "classification"
    assert info["metadata"]["labels"] == [str(i) for i in range(10)]
    text = edge_runtime("info", str(DIGITS_INT8))
    assert "ai-edge-litert" in text.stdout and "classification" in text.stdout


def test_fps_paces_before_reading_so_the_frame_handed_over_is_fresh(tmp_path, mosquitto, subscribe,
                                                                    start_daemon):
    """`fps` waits before the source is read, not between reading a frame and handing it over:
    a live source (camera, stream, command) then gives the frame it has at that moment. Reading
    first held every frame for the whole interval (fps = 0.5 on a camera: every result 2 s old).
    An image file is read at once, so its `ts` (read time) shows when reads happen: one interval
    apart from the first frame on (reading first read frame 1 right after frame 0)."""
    sub = subscribe("edge/test-pi/digits/result")
    interval = 0.5
    config = write_config(tmp_path / "config.toml", mosquitto,
                          [digits_pipeline(fps=1 / interval)])
    daemon = start_daemon(config)
    wait_until(lambda: len(sub.on("edge/test-pi/digits/result")) >= 4, 30)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    stamps = [datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp()
              for r in sub.json_on("edge/test-pi/digits/result")][:4]
    gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
    assert min(gaps) >= interval * 0.9, gaps  # ts has millisecond resolution
