"""Audio pipelines end to end: real recordings (alsa-utils' spoken channel names) streamed by
ffmpeg through the command source (s16le), log-mel features computed by the daemon from the
model's metadata, the project's own keyword model (examples/build_audio_model.py), results over
a real broker. And the configuration mistakes an audio pipeline can have, each named."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (
    EXAMPLES,
    REPO,
    VIBRATION_CSV,
    daemon_env,
    edge_runtime,
    wait_until,
    write_config,
)
from edge_runtime.model.metadata import read_model_metadata
from edge_runtime.sources.base import Kind
from edge_runtime.sources.command_source import CommandOptions

KEYWORDS = EXAMPLES / "audio" / "keywords.tflite"
ALSA = Path("/usr/share/sounds/alsa")
FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None or not (ALSA / "Front_Left.wav").exists(),
                                reason="needs ffmpeg and alsa-utils (deploy/dev-setup.sh)")
KEYWORD_LABELS = {"center", "left", "right"}


def ffmpeg(*args: str) -> list[str]:
    return [FFMPEG or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args]


def padded(folder: Path, name: str) -> Path:
    """The recording with one second of silence before and after it."""
    path = folder / f"{name}_padded.wav"
    if not path.exists():
        subprocess.run(ffmpeg("-i", str(ALSA / f"{name}.wav"), "-af",
                              "adelay=1000,apad=pad_dur=1", str(path)), check=True)
    return path


def speak(recording: Path, rate: int = 16000) -> list[str]:
    """A recording played in real time (-re, like a microphone) as 16-bit mono samples at
    `rate` on standard output, as `arecord -f S16_LE -r 16000 -c 1 -t raw` gives them."""
    return ffmpeg("-re", "-i", str(recording), "-f", "s16le", "-ac", "1", "-ar", str(rate), "-")


def listening(name: str, recording: Path, **source) -> dict:
    return {"name": name, "model": {"path": str(KEYWORDS), "threads": 1},
            "source": {"type": "command", "format": "s16le", "command": speak(recording),
                       "stride": 4000, **source}}


def test_the_model_carries_its_features():
    meta = read_model_metadata(KEYWORDS.read_bytes())
    assert meta.audio["sample_rate"] == 16000 and meta.audio["features"] == "log-mel"
    assert meta.audio["hop_length"] == 320 and meta.audio["n_mels"] == 32
    assert meta.labels == ("center", "left", "right", "noise", "silence", "unknown")
    assert meta.converter["quantize"] == "int8"
    assert CommandOptions(type="command", command=("x",), format="s16le").traits().kind \
        is Kind.AUDIO


@pytest.mark.parametrize("runtime", ["ai-edge-litert", "tflite-runtime"])
def test_spoken_words_are_recognized_through_the_daemon(runtime, tmp_path, mosquitto, subscribe):
    """Two pipelines hear two different real recordings; each names its word, and no window is
    confidently taken for another keyword. The same code path on both runtimes."""
    python = sys.executable
    if runtime == "tflite-runtime":
        python = os.environ.get("EDGE_RUNTIME_TFLITE_PYTHON", "")
        if not python or not Path(python).exists():
            pytest.skip("no tflite-runtime venv (deploy/run-tests.sh sets "
                        "EDGE_RUNTIME_TFLITE_PYTHON)")
    sub = subscribe("edge/test-pi/+/result")
    pipelines = [listening("center", padded(tmp_path, "Front_Center")),
                 listening("left", padded(tmp_path, "Side_Left"))]
    for pipeline in pipelines:
        pipeline["model"]["runtime"] = runtime
    config = write_config(tmp_path / "c.toml", mosquitto, pipelines)
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen([python, "-m", "edge_runtime", "run", "--config", str(config)],
                                  stdout=out, stderr=subprocess.STDOUT, env=daemon_env(),
                                  cwd=REPO)
    try:
        def heard(name: str, word: str) -> bool:
            """The word, then the silence after the phrase: the whole recording went through."""
            results = sub.json_on(f"edge/test-pi/{name}/result")
            labels = [r["classes"][0]["label"] for r in results]
            return word in labels and "silence" in labels[labels.index(word):]

        wait_until(lambda: heard("center", "center") and heard("left", "left"), 60)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
    for name, word in (("center", "center"), ("left", "left")):
        results = sub.json_on(f"edge/test-pi/{name}/result")
        confident = [r["classes"][0] for r in results if r["classes"][0]["score"] >= 0.6]
        keywords = [c["label"] for c in confident if c["label"] in KEYWORD_LABELS]
        assert keywords.count(word) >= 2, (name, confident)
        assert set(keywords) == {word}, (name, confident)
        # The windows before the phrase and after it are silence (the stream's padding).
        assert "silence" in {c["label"] for c in confident}, (name, confident)
        first = results[0]["source"]
        assert first["name"].startswith("ffmpeg#") and "width" not in first


@pytest.mark.parametrize("change, key, message", [
    ({"source": {"sample_rate": 48000}}, "pipelines[0].source.sample_rate",
     "48000 Hz, but model"),
    ({"source": {"window": 8000}}, "pipelines[0].source.window", "8000 samples, but model"),
    ({"preprocess": {"color": "gray"}}, "pipelines[0].preprocess.color",
     "not a setting of audio pipelines"),
    ({"preprocess": {"n_mels": 40}}, "pipelines[0].preprocess",
     "49 frames x 40 mel bands = 1960 values but input tensor"),
    ({"preprocess": {"fmax": 9000.0}}, "pipelines[0].preprocess",
     "fmax <= sample_rate / 2 (8000 Hz)"),
    ({"preprocess": {"features": "mfcc"}}, "pipelines[0].preprocess.features", "mfcc"),
])
def test_audio_config_mistakes_are_named(tmp_path, change, key, message):
    pipeline = listening("kw", ALSA / "Front_Left.wav")
    for section, values in change.items():
        pipeline[section] = {**pipeline.get(section, {}), **values}
    config = write_config(tmp_path / "c.toml", None, [pipeline])
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode != 0
    assert key in done.stderr and message in done.stderr, done.stderr


def test_an_audio_model_needs_an_audio_source_and_the_reverse(tmp_path):
    config = write_config(tmp_path / "csv.toml", None, [{
        "name": "kw", "model": {"path": str(KEYWORDS)},
        "source": {"type": "csv", "path": str(VIBRATION_CSV), "columns": ["ax"]}}])
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode != 0
    assert "pipelines[0].source.type" in done.stderr
    assert "takes audio (16000 Hz" in done.stderr and 'format = "s16le"' in done.stderr
    config = write_config(tmp_path / "img.toml", None, [{
        "name": "img", "model": {"path": str(EXAMPLES / "digits" / "digits_int8.tflite")},
        "source": {"type": "command", "format": "s16le", "command": speak(ALSA / "Front_Left.wav")}}])
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode != 0
    assert "pipelines[0].source.sample_rate" in done.stderr
    assert "required: model" in done.stderr and "has no audio metadata" in done.stderr
    config = write_config(tmp_path / "mel.toml", None, [{
        "name": "img", "model": {"path": str(EXAMPLES / "digits" / "digits_int8.tflite")},
        "source": {"type": "images", "path": str(EXAMPLES / "digits" / "samples")},
        "preprocess": {"n_mels": 40}}])
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode != 0
    assert "pipelines[0].preprocess.n_mels" in done.stderr
    assert "not a setting of image pipelines" in done.stderr


@pytest.mark.skipif(shutil.which("arecord") is None, reason="alsa-utils not installed")
def test_a_missing_microphone_is_retried_and_other_pipelines_go_on(tmp_path, mosquitto, subscribe,
                                                                    start_daemon):
    """arecord on a sound card that is not there exits at once: the pipeline logs its stderr,
    counts the failures and retries with backoff; the pipeline next to it hears its word."""
    sub = subscribe("edge/test-pi/#")
    mic = {"name": "mic", "model": {"path": str(KEYWORDS), "threads": 1},
           "source": {"type": "command", "format": "s16le",
                      "command": "arecord -q -D plughw:9,0 -f S16_LE -r 16000 -c 1 -t raw"}}
    config = write_config(tmp_path / "c.toml", mosquitto,
                          [mic, listening("left", padded(tmp_path, "Front_Left"))],
                          retry={"source": {"min_delay": 0.1, "max_delay": 0.3}})
    daemon = start_daemon(config)
    wait_until(lambda: any(r["classes"][0]["label"] == "left"
                           for r in sub.json_on("edge/test-pi/left/result")), 60)
    wait_until(lambda: daemon.log.count("audio open error") >= 2, 30)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    final = sub.json_on("edge/test-pi/stats")[-1]["pipelines"]
    assert final["mic"]["source_failures"] >= 2 and final["mic"]["results"] == 0
    assert final["left"]["results"] > 0
    assert not sub.on("edge/test-pi/mic/result")
