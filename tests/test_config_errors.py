"""Bad configs and bad model files: exit code 2 and one line naming the file and key at fault."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import DIGITS_INT8, digits_pipeline, edge_runtime, write_config


def check(config: Path) -> tuple[int, str]:
    done = edge_runtime("check", "--config", str(config))
    return done.returncode, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


def config_with(tmp_path: Path, **changes) -> Path:
    pipeline = digits_pipeline()
    for section, values in changes.items():
        pipeline.setdefault(section, {}).update(values)
    return write_config(tmp_path / "config.toml", None, [pipeline])


def test_missing_model_file(tmp_path):
    code, line = check(config_with(tmp_path, model={"path": "x.tflite"}))
    assert code == 2
    assert line.startswith(f"error: {tmp_path / 'config.toml'}: pipelines[0].model.path: no such file")
    assert "x.tflite" in line


@pytest.mark.parametrize("content,reason", [
    (b"", "file is empty"),
    (b"this is not a model at all", "not a TFLite model"),
])
def test_model_file_that_is_not_a_model(tmp_path, content, reason):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    code, line = check(config_with(tmp_path, model={"path": str(bad)}))
    assert code == 2
    assert "pipelines[0].model.path:" in line and reason in line and "bad.tflite" in line


def test_truncated_model_file(tmp_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(DIGITS_INT8.read_bytes()[:3000])
    code, line = check(config_with(tmp_path, model={"path": str(truncated)}))
    assert code == 2
    assert "pipelines[0].model.path:" in line and "truncated.tflite" in line


def test_unknown_key_names_the_path_and_the_valid_keys(tmp_path):
    code, line = check(config_with(tmp_path, source={"colour": "red"}))
    assert code == 2
    assert ("pipelines[0].source.colour: unknown key (expected one of: fps, loop, max_pixels, path, "
            "reduced_decode, type)") in line


def test_wrong_type(tmp_path):
    code, line = check(config_with(tmp_path, source={"fps": "fast"}))
    assert code == 2
    assert "pipelines[0].source.fps: expected a number, got str 'fast'" in line


def test_negative_value(tmp_path):
    code, line = check(config_with(tmp_path, model={"threads": 0}))
    assert code == 2
    assert "pipelines[0].model.threads: must be >= 1, got 0" in line


def test_unknown_source_type(tmp_path):
    code, line = check(config_with(tmp_path, source={"type": "webcam"}))
    assert code == 2
    assert "pipelines[0].source.type: unknown source type 'webcam'" in line


def test_color_that_does_not_fit_the_model_input(tmp_path):
    # The digits model takes 1 channel; rgb makes 3.
    code, line = check(config_with(tmp_path, preprocess={"color": "rgb"}))
    assert code == 2
    assert "pipelines[0].preprocess:" in line
    assert "color 'rgb' gives 3 channel(s)" in line and "has 1" in line


def test_mean_with_the_wrong_number_of_channels(tmp_path):
    code, line = check(config_with(tmp_path, preprocess={"mean": [1.0, 2.0, 3.0]}))
    assert code == 2
    assert "pipelines[0].preprocess: mean has 3 values but the model input has 1 channels" in line


def test_labels_file_missing_and_too_short(tmp_path):
    code, line = check(config_with(tmp_path, postprocess={"labels": "labels.txt"}))
    assert code == 2
    assert "pipelines[0].postprocess.labels: no such file" in line
    (tmp_path / "labels.txt").write_text("zero\none\n")
    code, line = check(config_with(tmp_path, postprocess={"labels": "labels.txt"}))
    assert code == 2
    assert "pipelines[0].postprocess: 2 labels for 10 classes" in line


def test_unknown_task_option(tmp_path):
    code, line = check(config_with(tmp_path, postprocess={"top_k": 2, "iou": 0.5}))
    assert code == 2
    assert "pipelines[0].postprocess.iou: unknown key" in line


def test_duplicate_pipeline_names(tmp_path):
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline(), digits_pipeline()])
    code, line = check(config)
    assert code == 2 and "pipelines[1].name: duplicate pipeline name 'digits'" in line


def test_pipeline_name_unsafe_for_topics(tmp_path):
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline(name="front/door")])
    code, line = check(config)
    assert code == 2 and "pipelines[0].name:" in line and "MQTT topics" in line


def test_password_file_missing(tmp_path):
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline()],
                          mqtt_extra={"username": "pi", "password_file": "secret"})
    code, line = check(config)
    assert code == 2 and "mqtt.password_file: no such file" in line


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[device\nid = 1\n")
    code, line = check(bad)
    assert code == 2 and f"{bad}: not valid TOML" in line
    code, line = check(tmp_path / "absent.toml")
    assert code == 2 and "absent.toml: no such file" in line


def test_no_pipelines(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[device]\nid = 'x'\n")
    code, line = check(config)
    assert code == 2 and "pipelines: at least one [[pipelines]] table is required" in line


def test_run_refuses_a_bad_config_before_starting(tmp_path):
    config = config_with(tmp_path, model={"path": "x.tflite"})
    done = edge_runtime("run", "--config", str(config))
    assert done.returncode == 2
    assert "pipelines[0].model.path: no such file" in done.stderr


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    shutil.copy(DIGITS_INT8, tmp_path / "m.tflite")
    config = config_with(tmp_path, model={"path": "m.tflite"})
    code, _ = check(config)
    assert code == 0


def test_check_opens_file_sources_so_a_wrong_path_or_column_is_named(tmp_path):
    """A file source that cannot be read (a path that matches nothing, a missing video, CSV
    columns the header lacks) passed `check` and then failed and retried at run time forever.
    `check` opens each file source once and names the pipeline's source."""
    from conftest import VIBRATION_CSV, VIBRATION_MODEL

    images = config_with(tmp_path, source={"path": str(tmp_path / "nothing" / "*.png")})
    code, line = check(images)
    assert code == 2 and "pipelines[0].source: no images match" in line, line
    video = write_config(tmp_path / "video.toml", None, [{
        "name": "v", "source": {"type": "video", "path": str(tmp_path / "gone.mp4")},
        "model": {"path": str(DIGITS_INT8)}}])
    code, line = check(video)
    assert code == 2 and "pipelines[0].source: cannot open" in line and "gone.mp4" in line, line
    csv = write_config(tmp_path / "csv.toml", None, [{
        "name": "c", "source": {"type": "csv", "path": str(VIBRATION_CSV),
                                "columns": ["x", "y", "z"]},
        "model": {"path": str(VIBRATION_MODEL)}}])
    code, line = check(csv)
    assert code == 2 and "pipelines[0].source:" in line and "no column 'x'" in line, line


def test_check_names_a_command_source_program_that_is_not_installed(tmp_path):
    """A command source whose program is missing (rpicam-vid on a Pi without rpicam-apps) passed
    `check`, then failed and was restarted with backoff forever. `check` looks the program up on
    its own PATH (the one the daemon would use: it says so) and names the key; a present program
    (ffmpeg, by name or absolute path) passes, a non-executable absolute path does not."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed (deploy/dev-setup.sh)")

    def command(name: str, argv) -> Path:
        return write_config(tmp_path / f"{name}.toml", None, [{
            "name": "cam", "source": {"type": "command", "format": "mjpeg", "command": argv},
            "model": {"path": str(DIGITS_INT8)}}])

    code, line = check(command("missing", "edge-runtime-no-such-program -t 0 -o -"))
    assert code == 2, line
    assert ("pipelines[0].source.command: program 'edge-runtime-no-such-program' not found on "
            "PATH (") in line and "the PATH of this process" in line, line
    not_executable = tmp_path / "cam.sh"
    not_executable.write_text("#!/bin/sh\n")
    code, line = check(command("plain", [str(not_executable)]))
    assert code == 2 and "pipelines[0].source.command:" in line and "not executable" in line, line
    code, line = check(command("gone", [str(tmp_path / "gone.sh")]))
    assert code == 2 and "gone.sh' does not exist" in line, line
    for name, argv in (("name", "ffmpeg -i x.mp4 -f mjpeg -"), ("path", [ffmpeg, "-f", "mjpeg"])):
        code, line = check(command(name, argv))
        assert code == 0, line
    # The PATH is the checking process's (as the daemon's would be), not a fixed list.
    done = edge_runtime("check", "--config", str(command("name", "ffmpeg -f mjpeg -")),
                        PATH=str(tmp_path))
    assert done.returncode == 2 and f"'ffmpeg' not found on PATH ({tmp_path}:" in done.stderr, \
        done.stderr
