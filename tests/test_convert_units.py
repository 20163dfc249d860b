"""The converter's parts that need no TensorFlow: data loading, labels, reports, runtime probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DIGITS_INT8, daemon_env
from converters.data import InputSettings, label_indices, load_dataset, read_labels_file, subset
from converters.errors import ConvertError
from converters.modes import resolve_io_type
from converters.plot import plot_report
from converters.progress import Progress
from converters.report import ModeReport, Report
from converters.runtime_check import RuntimeCheck, Target, check, targets
from converters.verify import pair_outputs, score
from edge_runtime.model.runtime import select_runtime
from edge_runtime.model.tflite_model import TensorSpec, TfliteModel
from edge_runtime.preprocessing import PreprocessSpec

GRAY_8X8 = TensorSpec("image", 0, (1, 8, 8, 1), np.dtype(np.float32))
WINDOW_4X2 = TensorSpec("window", 0, (1, 4, 2), np.dtype(np.float32))
QUIET = Progress(False)


def image_settings(**spec: object) -> InputSettings:
    return InputSettings(GRAY_8X8, PreprocessSpec(color="gray", std=(255.0,)).updated(spec))


def write_png(path, value: int, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size), value, np.uint8))


def test_image_folder_uses_the_daemons_preprocessing_and_class_folders(tmp_path):
    for digit, value in ((0, 0), (1, 51), (10, 255)):
        write_png(tmp_path / str(digit) / "a.png", value)
    (tmp_path / "10" / "notes.txt").write_text("not an image: ignored")
    data = load_dataset(tmp_path, image_settings(), (), None, QUIET, "validation")
    assert data.x.shape == (3, 8, 8, 1) and data.x.dtype == np.float32
    assert np.allclose(data.x.reshape(3, -1).mean(axis=1), [0.0, 0.2, 1.0])
    assert data.labels.tolist() == [0, 1, 10]  # numeric folder names are class indices
    assert "3 images, 3 classes" in data.origin


def test_named_class_folders_map_through_labels(tmp_path):
    for name in ("cat", "dog"):
        write_png(tmp_path / name / "a.png", 10)
    data = load_dataset(tmp_path, image_settings(), ("dog", "cat"), None, QUIET, "validation")
    assert data.labels.tolist() == [1, 0]
    with pytest.raises(ConvertError, match="class 'cat' is not one of the labels"):
        load_dataset(tmp_path, image_settings(), ("dog", "bird"), None, QUIET, "validation")
    unlabeled = load_dataset(tmp_path, image_settings(), (), None, QUIET, "validation")
    assert unlabeled.class_names == ("cat", "dog") and unlabeled.labels.tolist() == [0, 1]


def test_image_errors_name_the_file_or_folder(tmp_path):
    with pytest.raises(ConvertError, match="calibration data .*: no such file or folder"):
        load_dataset(tmp_path / "absent", image_settings(), (), None, QUIET, "calibration")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvertError, match="empty: no images found"):
        load_dataset(tmp_path / "empty", image_settings(), (), None, QUIET, "calibration")
    write_png(tmp_path / "mixed" / "loose.png", 1)
    write_png(tmp_path / "mixed" / "cls" / "a.png", 1)
    with pytest.raises(ConvertError, match="both images and class subfolders"):
        load_dataset(tmp_path / "mixed", image_settings(), (), None, QUIET, "calibration")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ConvertError, match=r"bad/x\.jpg: cannot read this image"):
        load_dataset(tmp_path / "bad", image_settings(), (), None, QUIET, "calibration")
    write_png(tmp_path / "ok" / "a.png", 1)
    with pytest.raises(ConvertError, match="color 'rgb' gives 3 channel"):
        load_dataset(tmp_path / "ok", image_settings(color="rgb"), (), None, QUIET, "validation")


def test_arrays_shapes_labels_and_subsets(tmp_path):
    x = np.random.default_rng(0).random((30, 8, 8, 1), dtype=np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array(["b", "a", "c"] * 10))
    data = load_dataset(tmp_path / "d.npz", image_settings(), (), 10, QUIET, "validation")
    assert len(data) == 10 and data.class_names == ("a", "b", "c")
    chosen = subset(30, 10)
    assert np.array_equal(data.x, x[chosen])
    assert data.labels.tolist() == [[1, 0, 2][i % 3] for i in chosen]
    np.save(tmp_path / "flat.npy", x.reshape(30, 64))
    with pytest.raises(ConvertError,
                       match=r"wrong shape \[30, 64\]; the model takes \[N, 8, 8, 1\]"):
        load_dataset(tmp_path / "flat.npy", image_settings(), (), None, QUIET, "validation")
    bad = x.copy()
    bad[3, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ConvertError, match="finite"):
        load_dataset(tmp_path / "nan.npy", image_settings(), (), None, QUIET, "validation")
    np.savez(tmp_path / "short.npz", x=x, y=np.arange(5))
    with pytest.raises(ConvertError, match="5 labels for 30 inputs"):
        load_dataset(tmp_path / "short.npz", image_settings(), (), None, QUIET, "validation")


def test_csv_windows_keep_only_single_class_windows(tmp_path):
    rows = ["t,ax,ay,state"]
    rows += [f"{i},{i},{-i},still" for i in range(5)]
    rows += [""]  # blank lines are skipped by the daemon's csv reader, and here too
    rows += [f"{i},{i},{-i},moving" for i in range(5, 10)]
    path = tmp_path / "s.csv"
    path.write_text("\n".join(rows) + "\n")
    settings = InputSettings(WINDOW_4X2, PreprocessSpec(mean=(1.0, 0.0), std=(2.0, 1.0)),
                             ("ax", "ay"), None, 1, "state")
    data = load_dataset(path, settings, (), None, QUIET, "validation")
    # 10 rows, window 4: 7 windows, of which rows 0-3, 1-4 and 5-8, 6-9 lie in one class.
    assert data.class_names == ("moving", "still")
    assert data.labels.tolist() == [1, 1, 0, 0]
    assert data.x.shape == (4, 4, 2)
    assert np.allclose(data.x[0][:, 0], (np.arange(4) - 1.0) / 2.0)  # (ax - mean) / std
    assert np.allclose(data.x[3][:, 1], -np.arange(6, 10))
    with pytest.raises(ConvertError, match="no column 'az'"):
        load_dataset(path, InputSettings(WINDOW_4X2, PreprocessSpec(), ("ax", "az")),
                     (), None, QUIET, "validation")
    with pytest.raises(ConvertError, match="needs --columns"):
        load_dataset(path, InputSettings(WINDOW_4X2, PreprocessSpec()), (), None, QUIET, "x")


def test_labels_files(tmp_path):
    (tmp_path / "l.csv").write_text("label\n2\n0\n")
    assert read_labels_file(tmp_path / "l.csv", ())[0].tolist() == [2, 0]
    (tmp_path / "n.txt").write_text("dog\ncat\n")
    labels, names = read_labels_file(tmp_path / "n.txt", ("cat", "dog"))
    assert labels.tolist() == [1, 0] and names == ("cat", "dog")
    np.save(tmp_path / "l.npy", np.array([3, 1]))
    assert read_labels_file(tmp_path / "l.npy", ())[0].tolist() == [3, 1]
    with pytest.raises(ConvertError, match="no such file"):
        read_labels_file(tmp_path / "absent.csv", ())
    assert label_indices(["10", "2"], (), "x")[0].tolist() == [10, 2]


def test_io_types_per_mode():
    assert resolve_io_type("int8", None) == "int8"
    assert resolve_io_type("int8", "uint8") == "uint8"
    assert resolve_io_type("int16x8", None) == "float32"
    with pytest.raises(ValueError, match="does not apply to --quantize dynamic"):
        resolve_io_type("dynamic", "int8")


def test_runtime_probe_runs_a_real_model_and_reports_a_broken_one(tmp_path):
    model = TfliteModel(DIGITS_INT8, select_runtime("ai-edge-litert"))
    spec = model.inputs[0]
    inputs = np.random.default_rng(0).integers(-128, 128, (5, *spec.shape[1:]), dtype=np.int8)
    expected = []
    for sample in inputs:
        model.set_input(0, sample[None])
        model.invoke()
        expected.append(model.raw_output(0)[0].copy())
    scales = [(o.scale, o.zero_point) for o in model.outputs]
    target = Target("ai-edge-litert", sys.executable)
    result = check(target, DIGITS_INT8, inputs, [np.stack(expected)], scales, tmp_path)
    assert result.status == "ok" and result.agreement == 1.0 and result.max_abs_diff == 0.0
    wrong = check(target, DIGITS_INT8, inputs, [np.roll(np.stack(expected), 1, axis=1)], scales,
                  tmp_path)
    assert wrong.status == "failed" and "top-1 agrees on only" in wrong.detail
    broken = tmp_path / "broken.tflite"
    data = DIGITS_INT8.read_bytes()
    broken.write_bytes(data[:8] + b"\x00" * (len(data) - 8))
    failed = check(target, broken, inputs, [np.stack(expected)], scales, tmp_path)
    assert failed.status == "failed" and "cannot run the model" in failed.detail


def test_tflite_runtime_defaults_to_the_checkouts_venv(monkeypatch, tmp_path):
    """Neither option nor variable: the checkout's .venv-tflite when there is one (as
    deploy/run-tests.sh makes it), like .venv-torch and .venv-onnx for the framework workers."""
    import converters.runtime_check as runtime_check

    checkout = Path(runtime_check.__file__).resolve().parent.parent
    assert runtime_check.CHECKOUT_TFLITE_RUNTIME_PYTHON == checkout / ".venv-tflite/bin/python"
    monkeypatch.delenv("EDGE_CONVERT_TFLITE_RUNTIME_PYTHON", raising=False)
    venv_python = tmp_path / ".venv-tflite" / "bin" / "python"
    monkeypatch.setattr(runtime_check, "CHECKOUT_TFLITE_RUNTIME_PYTHON", venv_python)
    assert targets(None)[1].python is None  # not made: skipped (below)
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    assert targets(None)[1].python == str(venv_python)
    assert targets("/given/python")[1].python == "/given/python"  # the option wins
    monkeypatch.setenv("EDGE_CONVERT_TFLITE_RUNTIME_PYTHON", "/env/python")
    assert targets(None)[1].python == "/env/python"  # and the variable


def test_tflite_runtime_is_skipped_with_a_reason_when_not_given(monkeypatch, tmp_path):
    import converters.runtime_check as runtime_check

    monkeypatch.delenv("EDGE_CONVERT_TFLITE_RUNTIME_PYTHON", raising=False)
    monkeypatch.setattr(runtime_check, "CHECKOUT_TFLITE_RUNTIME_PYTHON", tmp_path / "no-venv")
    tflite_runtime = targets(None)[1]
    result = check(tflite_runtime, DIGITS_INT8, np.zeros((1, 8, 8, 1), np.int8), [], [], tmp_path)
    assert result.status == "skipped"
    assert "numpy<2" in result.line() and "--tflite-runtime-python" in result.line()
    missing = check(Target("tflite-runtime", str(tmp_path / "no-python")), DIGITS_INT8,
                    np.zeros((1, 8, 8, 1), np.int8), [], [], tmp_path)
    assert missing.status == "failed" and "cannot run" in missing.detail


def sample_report() -> Report:
    report = Report(source={"file": "m.keras", "framework": "keras", "sha256": "ab" * 32},
                    input={"shape": [1, 8, 8, 1], "dtype": "float32"}, task="classification",
                    validation={"origin": "val/", "reference_accuracy": 0.9},
                    calibration=None, converter={"name": "edge-convert"})
    report.modes = [
        ModeReport("none", "float32", size_bytes=4000, accuracy=0.9, agreement=1.0,
                   max_abs_diff=0.0, latency_ms=0.2,
                   runtime_checks=[RuntimeCheck("ai-edge-litert", "ok", "fine", "2.3.0")]),
        ModeReport("int8", "int8", size_bytes=1000, accuracy=0.88, agreement=0.97,
                   max_abs_diff=0.05, latency_ms=0.1,
                   runtime_checks=[RuntimeCheck("tflite-runtime", "skipped", "no python")]),
        ModeReport("int16x8", "float32", "skipped", "needs --calibration-data"),
    ]
    return report


def test_report_table_and_json(tmp_path):
    report = sample_report()
    table = report.table()
    lines = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert "0.25" in lines["int8"] and "0.50" in lines["int8"]  # size and latency ratios
    assert "88.00%" in lines["int8"]
    assert "skipped: needs --calibration-data" in lines["int16x8"]
    assert "tflite-runtime: skipped: no python" in table
    report.write_json(tmp_path / "sub" / "r.json")
    doc = json.loads((tmp_path / "sub" / "r.json").read_text())
    assert [m["mode"] for m in doc["modes"]] == ["none", "int8", "int16x8"]
    assert doc["modes"][0]["runtime_checks"][0]["version"] == "2.3.0"


def test_plot_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert plot_report(sample_report(), tmp_path / "p.png") is False
    assert not (tmp_path / "p.png").exists()


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    assert plot_report(sample_report(), tmp_path / "p.png") is True
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_outputs_are_paired_by_shape_and_scored():
    boxes, scores = np.ones((4, 10, 4), np.float32), np.eye(4, 3, dtype=np.float32)
    assert pair_outputs([scores, boxes], [boxes, scores])[0] is scores
    with pytest.raises(ValueError, match="no source output matches"):
        pair_outputs([np.ones((4, 7))], [scores])
    with pytest.raises(ValueError, match="has 1 outputs, the source model 2"):
        pair_outputs([scores], [boxes, scores])
    shifted = scores + 0.25
    shifted[3] = [0.0, 0.0, 1.0]  # sample 3: argmax 0 -> 2
    result = score([shifted], [scores], np.array([0, 1, 2, 0]), classification=True)
    assert result.agreement == 0.75 and result.accuracy == 0.75
    assert result.max_abs_diff == pytest.approx(1.0)
    assert score([shifted], [scores], None, classification=False).agreement is None


def test_converter_without_the_convert_extra_says_so_and_exits_2(tmp_path):
    """A device install (no tensorflow) runs `edge-convert`: one line naming the extra, exit 2."""
    python = os.environ.get("EDGE_RUNTIME_TFLITE_PYTHON", "")
    if not python or not Path(python).exists():
        pytest.skip("no Python without tensorflow (deploy/run-tests.sh sets "
                    "EDGE_RUNTIME_TFLITE_PYTHON to its tflite-runtime venv)")
    probe = subprocess.run([python, "-c", "import importlib.util as u; "
                            "print(u.find_spec('tensorflow') is None)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "True", "that Python has tensorflow: not a device install"
    model = tmp_path / "model.keras"
    model.write_bytes(b"")
    done = subprocess.run([python, "-m", "converters.cli", str(model), "-o", str(tmp_path / "m.tflite")],
                          capture_output=True, text=True, timeout=60, env=daemon_env(), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "pip install 'edge-runtime[convert]'" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
