"""Motion gating: which frames reach the model (injected clock, generated frames, real daemon)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DIGITS_INT8, VIBRATION_MODEL, edge_runtime, write_config
from edge_runtime.config.schema import GateConfig
from edge_runtime.pipeline.gate import MotionGate


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scene(square_x: int | None = None, brightness: int = 60, size: tuple[int, int] = (480, 640)
          ) -> np.ndarray:
    """A gray-ish BGR frame with an optional bright 160x160 square at column `square_x`."""
    frame = np.full((*size, 3), brightness, np.uint8)
    if square_x is not None:
        frame[160:320, square_x:square_x + 160] = 230
    return frame


def run(gate: MotionGate, frames: list[np.ndarray]) -> list[bool]:
    decisions = []
    for frame in frames:
        decision = gate.should_infer(frame)
        if decision:
            gate.inferred()
        decisions.append(decision)
    return decisions


def test_without_motion_gating_every_frame_is_inferred() -> None:
    gate = MotionGate(GateConfig(motion=False))
    assert run(gate, [scene()] * 5) == [True] * 5


def test_a_still_scene_is_inferred_once_and_motion_again() -> None:
    gate = MotionGate(GateConfig(motion=True, motion_threshold=0.01, max_interval=0),
                      FakeClock())
    frames = [scene(100)] * 4 + [scene(400)] * 3 + [scene(100)]
    assert run(gate, frames) == [True, False, False, False, True, False, False, True]
    assert gate.last_motion > 0.01


def test_sensor_noise_below_the_pixel_threshold_is_not_motion() -> None:
    gate = MotionGate(GateConfig(motion=True, max_interval=0), FakeClock())
    rng = np.random.default_rng(0)
    base = scene(200)
    noisy = [np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
             for _ in range(5)]
    assert run(gate, [base, *noisy]) == [True] + [False] * 5


def test_the_threshold_is_the_fraction_of_changed_pixels() -> None:
    # A 160x160 square moving by 80 px changes 2 x 80x160 of 640x480 pixels: ~8%.
    moved = [scene(100), scene(180)]
    assert run(MotionGate(GateConfig(motion=True, motion_threshold=0.05, max_interval=0),
                          FakeClock()), moved) == [True, True]
    assert run(MotionGate(GateConfig(motion=True, motion_threshold=0.15, max_interval=0),
                          FakeClock()), moved) == [True, False]


def test_slow_change_adds_up_against_the_last_inferred_frame() -> None:
    # Each step moves the square by 8 px (a few % of the small gray copy changes, under the 5%
    # threshold), but the reference is the last *inferred* frame, so the steps add up.
    gate = MotionGate(GateConfig(motion=True, motion_threshold=0.05, max_interval=0), FakeClock())
    decisions = run(gate, [scene(100 + 8 * i) for i in range(12)])
    assert decisions[0] and not decisions[1]
    assert any(decisions[2:]), "cumulative motion never triggered inference"
    assert not all(decisions[2:])


def test_a_still_scene_is_reinferred_every_max_interval() -> None:
    clock = FakeClock()
    gate = MotionGate(GateConfig(motion=True, max_interval=10.0), clock)
    decisions = []
    for second in range(0, 35):
        clock.now = float(second)
        decision = gate.should_infer(scene(100))
        if decision:
            gate.inferred()
        decisions.append(decision)
    assert [s for s, d in enumerate(decisions) if d] == [0, 10, 20, 30]


def test_a_frame_of_another_size_is_inferred_and_becomes_the_reference() -> None:
    gate = MotionGate(GateConfig(motion=True, max_interval=0), FakeClock())
    small = scene(50, size=(240, 320))
    assert run(gate, [scene(100), scene(100), small, small]) == [True, False, True, False]


def test_gray_and_bgra_frames_are_gated_too() -> None:
    gray = cv2.cvtColor(scene(100), cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(scene(100), cv2.COLOR_BGR2BGRA)
    for frame in (gray, bgra):
        gate = MotionGate(GateConfig(motion=True, max_interval=0), FakeClock())
        assert run(gate, [frame, frame.copy()]) == [True, False]


def test_motion_gating_needs_an_image_source(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", None, [{
        "name": "vib", "source": {"type": "csv", "path": "x.csv", "columns": ["ax", "ay", "az"],
                                  "window": 32},
        "model": {"path": str(VIBRATION_MODEL)},
        "gate": {"motion": True}}])
    (tmp_path / "x.csv").write_text("ax,ay,az\n" + "0,0,0\n" * 40)
    result = edge_runtime("check", "--config", str(config))
    assert result.returncode == 2
    assert "pipelines[0].gate.motion: motion gating needs an image source" in result.stderr


@pytest.mark.parametrize("value, message", [(1.5, "must be between 0 and 1"),
                                            ("x", "expected a number")])
def test_bad_gate_settings_name_the_key(tmp_path: Path, value: object, message: str) -> None:
    config = write_config(tmp_path / "c.toml", None, [{
        "name": "cam", "source": {"type": "images", "path": str(tmp_path)},
        "model": {"path": str(DIGITS_INT8)}, "gate": {"motion": True, "motion_threshold": value}}])
    result = edge_runtime("check", "--config", str(config))
    assert result.returncode == 2
    assert "pipelines[0].gate.motion_threshold" in result.stderr and message in result.stderr


def test_the_daemon_infers_only_frames_with_motion(tmp_path: Path, mosquitto, subscribe,
                                                   start_daemon) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    sequence = [100] * 5 + [400] * 4 + [100] * 3  # two scene changes
    for index, x in enumerate(sequence):
        cv2.imwrite(str(frames / f"{index:03d}.png"), scene(x))
    config = write_config(tmp_path / "c.toml", mosquitto, [{
        "name": "cam", "source": {"type": "images", "path": str(frames)},
        "model": {"path": str(DIGITS_INT8), "threads": 1},
        "gate": {"motion": True, "motion_threshold": 0.02, "max_interval": 0}}])
    sub = subscribe("edge/test-pi/cam/result")
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    results = [json.loads(p) for p in sub.on("edge/test-pi/cam/result")]
    assert [r["source"]["name"] for r in results] == ["000.png", "005.png", "009.png"]
    assert [r["seq"] for r in results] == [0, 1, 2]
    assert "12 frames, 3 results" in daemon.log
