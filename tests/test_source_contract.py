"""The source contract: a source's options declare what it is (kind, live, pacing) and the
pipeline is built from that declaration alone. The command source, whose kind follows its
`format`, is registered with one line and runs as an image or a sensor pipeline accordingly."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import cv2

from conftest import (
    DIGITS_INT8,
    DIGITS_SAMPLES,
    VIBRATION_CSV,
    VIBRATION_MODEL,
    edge_runtime,
    wait_until,
    write_config,
)
from edge_runtime.app_config import load_config
from edge_runtime.sources.base import Kind, SourceTraits
from edge_runtime.sources.command_source import CommandOptions
from edge_runtime.sources.registry import SOURCES

# Prints the accelerometer columns of the example CSV as lines, over and over, like a sensor.
PRINT_ROWS = (
    "import sys, time\n"
    "rows = [','.join(r.split(',')[1:4]) for r in open(sys.argv[1]).read().splitlines()[1:]]\n"
    "while True:\n"
    "    for row in rows:\n"
    "        print(row, flush=True)\n"
    "        time.sleep(0.0005)\n"
)


def print_rows(tmp_path: Path) -> list[str]:
    script = tmp_path / "print_rows.py"
    script.write_text(PRINT_ROWS)
    return [sys.executable, str(script), str(VIBRATION_CSV)]


def command_options(fmt: str, **extra) -> CommandOptions:
    return CommandOptions(type="command", command=("true",), format=fmt, **extra)


def test_command_kind_follows_its_format():
    assert command_options("mjpeg").traits().kind is Kind.IMAGE
    assert command_options("raw", width=4, height=4).traits().kind is Kind.IMAGE
    lines = command_options("lines", columns=("ax", "ay"), window=8, fps=5).traits()
    assert lines == SourceTraits(Kind.SENSOR, live=True, max_fps=5, columns=("ax", "ay"),
                                 window=8)
    audio = command_options("s16le", channels=2).traits()
    assert audio.kind.windowed and audio.columns == ("channel0", "channel1")


def test_every_registered_options_class_declares_traits():
    """No source can be registered without saying what it is (the core never guesses)."""
    for name, plugin in SOURCES.items():
        assert callable(getattr(plugin.options, "traits", None)), name


def test_a_lines_command_is_a_sensor_pipeline_for_check(tmp_path):
    """Motion gating is refused for it: the kind the options declare reached the assembly."""
    pipeline = {"name": "vib", "model": {"path": str(VIBRATION_MODEL)},
                "source": {"type": "command", "format": "lines",
                           "command": print_rows(tmp_path)}}
    config = write_config(tmp_path / "ok.toml", None, [pipeline])
    assert load_config(config).pipelines[0].source.traits().kind is Kind.SENSOR
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    gated = write_config(tmp_path / "gated.toml", None, [{**pipeline, "gate": {"motion": True}}])
    done = edge_runtime("check", "--config", str(gated))
    assert done.returncode != 0
    assert "pipelines[0].gate.motion" in done.stderr
    assert "motion gating needs an image source, not 'command'" in done.stderr


def test_command_sources_run_as_image_and_sensor_pipelines(tmp_path, mosquitto, subscribe,
                                                            start_daemon):
    """mjpeg from a shell loop classifies like the same JPEG read as a file; lines from a
    process are windowed and classified; image results carry a size, sensor results none."""
    sample = sorted(DIGITS_SAMPLES.glob("*.png"))[0]
    jpg = tmp_path / "digit.jpg"
    cv2.imwrite(str(jpg), cv2.imread(str(sample)), [cv2.IMWRITE_JPEG_QUALITY, 100])
    sub = subscribe("edge/test-pi/+/result")
    config = write_config(tmp_path / "c.toml", mosquitto, [
        {"name": "file", "source": {"type": "images", "path": str(jpg)},
         "model": {"path": str(DIGITS_INT8), "threads": 1}},
        {"name": "cam", "model": {"path": str(DIGITS_INT8), "threads": 1},
         "source": {"type": "command", "format": "mjpeg", "fps": 20,
                    "command": ["sh", "-c", f"while :; do cat '{jpg}'; sleep 0.05; done"]}},
        {"name": "vib", "model": {"path": str(VIBRATION_MODEL), "threads": 1},
         "source": {"type": "command", "format": "lines",
                    "command": print_rows(tmp_path)}},
    ])
    daemon = start_daemon(config)
    wait_until(lambda: all(sub.json_on(f"edge/test-pi/{name}/result")
                           for name in ("file", "cam", "vib")), 60)
    daemon.signal(15)
    daemon.wait()
    file_result = sub.json_on("edge/test-pi/file/result")[0]
    cam = sub.json_on("edge/test-pi/cam/result")
    vib = sub.json_on("edge/test-pi/vib/result")
    expected = sample.stem.split("digit")[-1]
    assert file_result["classes"][0]["label"] == expected
    assert {r["classes"][0]["label"] for r in cam} == {expected}
    assert (cam[0]["source"]["width"], cam[0]["source"]["height"]) == \
        (file_result["source"]["width"], file_result["source"]["height"])
    labels = {line.rsplit(",", 1)[1] for line in VIBRATION_CSV.read_text().splitlines()[1:]}
    assert vib and all(r["classes"][0]["label"] in labels for r in vib)
    assert all("width" not in r["source"] and "height" not in r["source"] for r in vib)



def test_the_readme_sources_table_has_every_source_and_its_keys():
    """A registered source without a README row, or a key the row does not name, is a user
    left guessing (the table is the user's reference for `[pipelines.source]`)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines()
    for name, plugin in SOURCES.items():
        rows = [line for line in readme if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, f"README's sources table has {len(rows)} rows for {name!r}"
        keys = rows[0].split("|")[2]
        undocumented = [f.name for f in dataclasses.fields(plugin.options)
                        if f.name != "type" and f"`{f.name}`" not in keys]
        assert not undocumented, f"{name}: keys missing from README's row: {undocumented}"
