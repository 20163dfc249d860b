"""What every input format must do with a model edge-convert cannot take: exit 2, one line naming
the file and the reason, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

from conftest import edge_convert


def assert_refused(model: Path, tmp_path: Path, *reasons: str) -> None:
    output = tmp_path / "refused.tflite"
    code, _, stderr = edge_convert(model, "-o", output, "--quantize", "none", "--no-progress")
    assert code == 2, stderr
    assert str(model) in stderr and all(reason in stderr for reason in reasons), stderr
    assert "Traceback" not in stderr and not output.exists()


def assert_several_inputs_refused(model: Path, tmp_path: Path, count: int,
                                  what: str = "the model") -> None:
    assert_refused(model, tmp_path, f"{model}: {what} has {count} inputs; only one is supported")


def assert_dynamic_size_refused(model: Path, tmp_path: Path) -> None:
    assert_refused(model, tmp_path, "unknown dimensions besides the batch",
                   "give the model a fixed input shape")
