"""edge-convert on small real models trained once per session (sklearn digits, a synthetic sensor).

Every conversion really runs TensorFlow's converter in the worker subprocess, and every converted
model is run with the daemon's own loader. About 2-3 minutes on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys

import numpy as np
import pytest

from conftest import edge_convert as convert
from conftest import edge_runtime, write_config
from converter_fixtures.refusals import assert_dynamic_size_refused, assert_several_inputs_refused
from converter_fixtures.train import DIGIT_NAMES, Fixtures, build
from converters.conversion import ConversionJob, convert_all
from converters.errors import ConvertError
from converters.progress import Progress
from converters.runtime_check import TFLITE_RUNTIME_PYTHON_ENV, Target, check
from edge_runtime.model.metadata import read_model_metadata
from edge_runtime.model.runtime import select_runtime
from edge_runtime.model.tflite_model import TfliteModel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    return build(tmp_path_factory.mktemp("converter-fixtures"))


@pytest.fixture(scope="session")
def cnn_int8(fx: Fixtures, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The digits CNN converted to int8 once, with labels, preprocessing and a report."""
    out = tmp_path_factory.mktemp("cnn-int8")
    model, report = out / "digits.tflite", out / "report.json"
    code, stdout, stderr = convert(
        fx.cnn, "-o", model, "--quantize", "int8", "--calibration-data", fx.calib_images,
        "--validation-data", fx.val_images, "--labels", fx.labels_txt, "--color", "gray",
        "--std", "255", "--top-k", "3", "--postprocess", "threshold=0.0",
        "--max-accuracy-drop", "0.02", "--report", report,
    )
    assert code == 0, stderr
    return {"model": model, "report": json.loads(report.read_text()), "stdout": stdout,
            "stderr": stderr}


def test_int8_keeps_accuracy_and_metadata_round_trips(fx, cnn_int8):
    report = cnn_int8["report"]
    (mode,) = report["modes"]
    reference = report["validation"]["reference_accuracy"]
    assert reference > 0.9, "the fixture model itself should be good"
    assert mode["mode"] == "int8" and mode["status"] == "ok"
    assert mode["accuracy"] >= reference - 0.02
    assert "calibrating int8" in cnn_int8["stderr"]  # the progress bar
    assert "wrote" in cnn_int8["stdout"] and "int8" in cnn_int8["stdout"]

    # The daemon's loader reads the file; the metadata says everything the device needs.
    model = TfliteModel(cnn_int8["model"], select_runtime("ai-edge-litert"))
    assert model.inputs[0].dtype == np.int8 and model.inputs[0].shape == (1, 8, 8, 1)
    meta = read_model_metadata(cnn_int8["model"].read_bytes())
    assert meta == model.metadata
    assert meta.task == "classification"
    assert meta.labels == tuple(DIGIT_NAMES)
    assert meta.preprocess == {"color": "gray", "resize": "stretch", "mean": [0.0],
                               "std": [255.0], "layout": "nhwc", "interpolation": "linear"}
    assert meta.postprocess == {"top_k": 3, "threshold": 0.0}
    assert meta.source == {"file": "digits_cnn.keras", "framework": "keras",
                           "sha256": hashlib.sha256(fx.cnn.read_bytes()).hexdigest()}
    assert meta.converter["name"] == "edge-convert"
    assert meta.converter["quantize"] == "int8" and meta.converter["io_type"] == "int8"
    assert meta.converter["tensorflow"].startswith("2.")
    verified = meta.verification["report"]
    assert verified["accuracy"] == pytest.approx(mode["accuracy"])
    assert verified["validation"]["samples"] == report["validation"]["samples"]
    assert [c["runtime"] for c in verified["runtime_checks"]][0] == "ai-edge-litert"
    # `edge-runtime info` (no TensorFlow) prints the same metadata.
    info = edge_runtime("info", str(cnn_int8["model"]), "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["metadata"] == meta.to_dict()


def test_compare_every_mode(fx, tmp_path):
    report_path, plot_path = tmp_path / "compare.json", tmp_path / "compare.png"
    code, stdout, stderr = convert(
        fx.cnn, "--compare", "--calibration-data", fx.calib_images, "--validation-data",
        fx.val_images, "--std", "255", "--report", report_path, "--plot", plot_path,
        "--no-progress",
    )
    assert code == 0, stderr
    report = json.loads(report_path.read_text())
    modes = {m["mode"]: m for m in report["modes"]}
    assert list(modes) == ["none", "float16", "dynamic", "int8", "int16x8"]
    assert all(m["status"] == "ok" for m in modes.values()), modes
    reference = report["validation"]["reference_accuracy"]
    assert modes["none"]["accuracy"] == pytest.approx(reference)
    assert modes["none"]["max_abs_diff"] < 1e-4
    assert modes["float16"]["accuracy"] >= reference - 0.01
    for quantized in ("dynamic", "int8", "int16x8"):
        assert modes[quantized]["accuracy"] >= modes["none"]["accuracy"] - 0.02, quantized
    for smaller in ("float16", "dynamic", "int8"):
        assert modes[smaller]["size_bytes"] < modes["none"]["size_bytes"], smaller
    for mode in modes.values():
        assert mode["runtime_checks"][0]["runtime"] == "ai-edge-litert"
        assert mode["runtime_checks"][0]["status"] == "ok"
        assert mode["latency_ms"] > 0
    # The table: one line per mode with the size ratio against float32.
    lines = {line.split()[0]: line for line in stdout.splitlines() if line.strip()}
    assert all(mode in lines for mode in modes)
    assert " 1.00 " in lines["none"]
    if "plot: skipped" in stdout:
        assert "matplotlib" in stdout and not plot_path.exists()
    else:
        assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_broken_calibration_fails_max_accuracy_drop_and_writes_nothing(fx, tmp_path):
    # Calibrating on blank inputs squeezes every quantization range to nothing: the classic
    # silent failure of hand-rolled int8 conversion. The accuracy bound must catch it.
    blank = tmp_path / "blank.npy"
    np.save(blank, np.zeros((50, 64), np.float32))
    output, report = tmp_path / "mlp.tflite", tmp_path / "report.json"
    code, stdout, stderr = convert(
        fx.mlp, "-o", output, "--quantize", "int8", "--calibration-data", blank,
        "--validation-data", fx.mlp_val_x, "--validation-labels", fx.mlp_val_y_csv,
        "--max-accuracy-drop", "0.02", "--report", report, "--no-progress",
    )
    assert code == 1
    assert "accuracy dropped by" in stderr and "was not written" in stderr
    assert not output.exists() and not list(tmp_path.glob("*.partial"))
    (mode,) = json.loads(report.read_text())["modes"]
    assert mode["status"] == "rejected" and mode["accuracy_drop"] > 0.02


def test_h5_model_without_any_data_is_checked_on_random_inputs(fx, tmp_path):
    output, report = tmp_path / "mlp.tflite", tmp_path / "r.json"
    code, stdout, stderr = convert(
        fx.mlp, "-o", output, "--quantize", "dynamic", "--max-accuracy-drop", "0.05",
        "--report", report, "--no-progress",
    )
    assert code == 0, stderr
    assert "note: no --validation-data: agreement measured on 32 random inputs" in stdout
    (mode,) = json.loads(report.read_text())["modes"]
    assert "accuracy" not in mode and mode["agreement"] >= 0.95  # unlabeled: agreement only
    meta = read_model_metadata(output.read_bytes())
    assert meta.converter["quantize"] == "dynamic" and meta.source["file"] == "digits_mlp.h5"
    assert meta.preprocess == {}  # not an image model: nothing to resize or convert


def test_sensor_saved_model_from_csv_runs_in_the_daemon(fx, tmp_path, mosquitto, subscribe,
                                                        start_daemon):
    output = tmp_path / "vibration.tflite"
    labels = tmp_path / "labels.txt"
    labels.write_text("idle\nnormal\nimbalance\n")
    code, stdout, stderr = convert(
        fx.sensor, "-o", output, "--quantize", "int8", "--io-type", "uint8",
        "--calibration-data", fx.sensor_calib_csv, "--validation-data", fx.sensor_val_csv,
        "--columns", "ax,ay,az", "--label-column", "label", "--labels", labels,
        "--max-accuracy-drop", "0.02", "--no-progress",
    )
    assert code == 0, stderr
    meta = read_model_metadata(output.read_bytes())
    assert meta.sensor == {"columns": ["ax", "ay", "az"], "window": 32}
    assert meta.labels == ("idle", "normal", "imbalance")
    assert meta.source["framework"] == "tensorflow"
    assert meta.converter["io_type"] == "uint8"
    assert meta.verification["report"]["accuracy"] >= 0.9
    model = TfliteModel(output, select_runtime("ai-edge-litert"))
    assert model.inputs[0].dtype == np.uint8 and model.outputs[0].dtype == np.uint8

    # The daemon: columns, window and labels from the file; windows of 32 rows, stride 32, so
    # each lies inside one 64-row block of one class.
    sub = subscribe("edge/test-pi/vibration/result")
    config = write_config(tmp_path / "config.toml", mosquitto, [{
        "name": "vibration", "source": {"type": "csv", "path": str(fx.sensor_val_csv),
                                        "stride": 32},
        "model": {"path": str(output)},
    }])
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    got = [r["classes"][0]["label"] for r in sub.json_on("edge/test-pi/vibration/result")]
    blocks = ["imbalance", "idle", "normal", "idle", "imbalance", "normal", "normal",
              "imbalance", "idle"]  # the order train.py writes vibration_val.csv in
    assert got == [label for label in blocks for _ in range(2)]


def test_daemon_classifies_the_converted_model_end_to_end(fx, cnn_int8, tmp_path, mosquitto,
                                                          subscribe, start_daemon):
    """A config with only model.path: labels, preprocessing and task come from the metadata."""
    import keras
    import cv2

    source = keras.models.load_model(fx.cnn, compile=False)
    folder = tmp_path / "frames"
    folder.mkdir()
    expected = {}
    for digit in range(10):  # two images per digit that the source model gets right
        picked = 0
        for path in sorted((fx.val_images / str(digit)).glob("*.png")):
            pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            small = cv2.resize(pixels, (8, 8), interpolation=cv2.INTER_AREA)
            scores = source(small[None, :, :, None].astype(np.float32) / 255.0).numpy()
            if scores.argmax() == digit:
                name = f"{digit}_{path.name}"
                shutil.copy(path, folder / name)
                expected[name] = DIGIT_NAMES[digit]
                picked += 1
            if picked == 2:
                break
    sub = subscribe("edge/test-pi/digits/result")
    config = write_config(tmp_path / "config.toml", mosquitto, [{
        "name": "digits", "source": {"type": "images", "path": str(folder)},
        "model": {"path": str(cnn_int8["model"])},
    }])
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    results = sub.json_on("edge/test-pi/digits/result")
    assert len(results) == len(expected) == 20
    got = {r["source"]["name"]: r["classes"][0]["label"] for r in results}
    wrong = {name: label for name, label in got.items() if label != expected[name]}
    assert len(wrong) <= 1, wrong  # int8 may flip one near-tie of the float model
    assert all(len(r["classes"]) == 3 for r in results)  # top_k from the metadata


def test_conversion_crash_is_an_error_and_other_modes_go_on(fx, tmp_path):
    """A real crash: TF 2.21's converter segfaults calibrating a Keras 3 LSTM for int8.

    If a TensorFlow release fixes that, this test needs another crashing graph.
    """
    jobs = [ConversionJob("int8", "int8"), ConversionJob("none", "float32")]
    calibration = np.load(fx.lstm_x)
    crashed, converted = convert_all("keras", fx.lstm, jobs, calibration, tmp_path,
                                     Progress(False), 600)
    assert not crashed.ok
    assert "the TensorFlow converter crashed (SIGSEGV)" in crashed.error
    assert "calibrator.py" in crashed.error  # where it crashed, from faulthandler's dump
    assert "while converting --quantize int8" in crashed.error
    assert converted.ok and converted.model_bytes[4:8] == b"TFL3"


def test_crash_through_the_cli_exits_1_and_writes_nothing(fx, tmp_path):
    output = tmp_path / "lstm.tflite"
    code, _, stderr = convert(fx.lstm, "-o", output, "--quantize", "int8", "--calibration-data",
                              fx.lstm_x, "--no-progress")
    assert code == 1
    assert "crashed (SIGSEGV)" in stderr and "lstm.tflite was not written" in stderr
    assert not output.exists()


def test_a_worker_that_cannot_load_the_model_says_why(tmp_path):
    # The parent loads the model first, so this only happens if the file changes in between:
    # provoke it by giving the worker a file that is not a Keras model.
    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip archive")
    with pytest.raises(ConvertError, match="fake.keras: cannot load as a Keras model"):
        convert_all("keras", fake, [ConversionJob("none", "float32")], None, tmp_path,
                    Progress(False), 600)


def test_a_worker_without_progress_is_stopped(fx, tmp_path):
    # Importing TensorFlow alone takes seconds, so a 1 s budget runs out for real.
    jobs = [ConversionJob("none", "float32")]
    with pytest.raises(ConvertError, match="loading the model made no progress for 1 s"):
        convert_all("keras", fx.mlp, jobs, None, tmp_path, Progress(False), 1)


@pytest.mark.parametrize("case", [
    "missing-model", "needs-calibration", "empty-folder", "unreadable-image", "channels",
    "wrong-shape", "csv-columns", "labels-count", "task-option",
])
def test_bad_input_gives_a_clear_error(fx, tmp_path, case):
    out = ["-o", tmp_path / "m.tflite", "--no-progress"]
    if case == "missing-model":
        args, expect = [tmp_path / "nope.keras", *out], "nope.keras: no such file"
    elif case == "needs-calibration":
        args, expect = [fx.cnn, *out, "--quantize", "int8"], "needs --calibration-data"
    elif case == "empty-folder":
        (tmp_path / "empty").mkdir()
        args = [fx.cnn, *out, "--quantize", "int8", "--calibration-data", tmp_path / "empty"]
        expect = "empty: no images found"
    elif case == "unreadable-image":
        bad = tmp_path / "calib"
        shutil.copytree(fx.calib_images / "3", bad / "3")
        (bad / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        args = [fx.cnn, *out, "--quantize", "int8", "--calibration-data", bad,
                "--calibration-samples", "1000"]
        expect = "broken.png: cannot read this image"
    elif case == "channels":
        args = [fx.cnn, *out, "--validation-data", fx.val_images, "--color", "rgb"]
        expect = "3 channel(s) but input tensor"
    elif case == "wrong-shape":
        np.save(tmp_path / "x.npy", np.zeros((5, 8, 8), np.float32))
        args = [fx.cnn, *out, "--validation-data", tmp_path / "x.npy"]
        expect = "wrong shape [5, 8, 8]; the model takes [N, 8, 8, 1]"
    elif case == "csv-columns":
        args = [fx.sensor, *out, "--validation-data", fx.sensor_val_csv]
        expect = "needs --columns"
    elif case == "labels-count":
        args = [fx.mlp, *out, "--validation-data", fx.mlp_calib_x, "--validation-labels",
                fx.mlp_val_y_csv]
        expect = "labels for 200 samples"
    else:  # checked like the daemon checks [pipelines.postprocess]
        args = [fx.cnn, *out, "--postprocess", "top_k=0"]
        expect = "postprocess.top_k: must be >= 1, got 0"
    code, stdout, stderr = convert(*args)
    assert code == 2, stderr
    assert expect in stderr
    assert stderr.startswith("edge-convert: error: ")
    assert not (tmp_path / "m.tflite").exists()


@pytest.fixture(scope="session")
def tflite_runtime_python() -> str:
    import os

    python = os.environ.get(TFLITE_RUNTIME_PYTHON_ENV)
    if not python:
        pytest.skip(f"set {TFLITE_RUNTIME_PYTHON_ENV} to a Python with tflite-runtime 2.14")
    return python


def test_dynamic_mode_loads_on_tflite_runtime_2_14(fx, tmp_path, tflite_runtime_python):
    output, report = tmp_path / "dyn.tflite", tmp_path / "r.json"
    code, _, stderr = convert(
        fx.cnn, "-o", output, "--quantize", "dynamic", "--validation-data", fx.val_images,
        "--std", "255", "--tflite-runtime-python", tflite_runtime_python, "--report", report,
        "--no-progress",
    )
    assert code == 0, stderr
    checks = {c["runtime"]: c for c in json.loads(report.read_text())["modes"][0]["runtime_checks"]}
    assert checks["tflite-runtime"]["status"] == "ok"
    assert checks["tflite-runtime"]["version"] == "2.14.0"


def test_runtime_check_catches_the_new_dynamic_quantizer(fx, tmp_path, tflite_runtime_python):
    """The trap the dynamic mode avoids: TF's new quantizer writes FULLY_CONNECTED v12."""
    from converters.loaders import LOADERS
    from converters.modes import configure

    source = LOADERS["keras"].load(fx.mlp)
    converter = source.make_converter(tmp_path)
    configure(converter, "dynamic", "float32", None)
    converter.experimental_new_dynamic_range_quantizer = True
    path = tmp_path / "new-quantizer.tflite"
    path.write_bytes(converter.convert())
    inputs = np.load(fx.mlp_val_x)[:4]
    result = check(Target("tflite-runtime", tflite_runtime_python), path, inputs,
                   [np.zeros((4, 10), np.float32)], [(0.0, 0)], tmp_path)
    assert result.status == "failed"
    assert "FULLY_CONNECTED" in result.detail and "version '12'" in result.detail


def test_help_lists_modes_without_importing_tensorflow():
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", "import sys, converters.cli as c\n"
         "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
         "print('tensorflow' in sys.modules)"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "int16x8" in done.stdout and done.stdout.strip().endswith("False")


def test_prune_reports_sparsity_accuracy_compressed_size_and_latency(fx, tmp_path):
    """--prune 0.7 on the digits CNN: the model as given and pruned, side by side."""
    output, report_path = tmp_path / "pruned.tflite", tmp_path / "r.json"
    code, stdout, stderr = convert(
        fx.cnn, "-o", output, "--quantize", "int8", "--prune", "0.7", "--prune-epochs", "6",
        "--train-data", fx.calib_images, "--calibration-data", fx.calib_images,
        "--validation-data", fx.val_images, "--color", "gray", "--std", "255",
        "--report", report_path, "--no-progress")
    assert code == 0, stderr
    report = json.loads(report_path.read_text())
    pruning = report["pruning"]
    assert pruning["sparsity"] == pytest.approx(0.7, abs=0.005)
    assert all(s == pytest.approx(0.7, abs=0.01) for s in pruning["layers"].values())
    assert pruning["accuracy_after"] >= pruning["accuracy_before"] - 0.05
    dense, pruned = report["modes"]
    assert "variant" not in dense  # the model as given
    assert pruned["variant"] == "pruned 70%" and pruned["status"] == "ok"
    # An int8 file stores zeros like any weight: same size, much smaller compressed.
    assert abs(pruned["size_bytes"] - dense["size_bytes"]) < 0.05 * dense["size_bytes"]
    assert pruned["gzip_bytes"] < 0.8 * dense["gzip_bytes"]
    for row in (dense, pruned):
        assert row["latency_ms"] > 0 and row["latency_no_delegate_ms"] > 0
    assert "pruned 70%" in stdout and "pruning: 70.0% of" in stdout
    # What was written is the pruned model, and the daemon's loader reads it. Its metadata names
    # the user's model file (not the pruned copy in a temporary folder) and how it was made.
    model = TfliteModel(output, select_runtime("ai-edge-litert"))
    assert model.metadata.source["file"] == fx.cnn.name
    assert model.metadata.source["sha256"] == hashlib.sha256(fx.cnn.read_bytes()).hexdigest()
    assert model.metadata.source["made_by"] == "pruned 70%"
    assert report["source"]["path"] == str(fx.cnn)


@pytest.mark.parametrize("args, expect", [
    (["--prune", "0.5"], "--prune needs --train-data"),
    (["--prune", "1.5", "--train-data", "CALIB"], "between 0 and 1"),
])
def test_prune_bad_options(fx, tmp_path, args, expect):
    args = [str(fx.calib_images) if a == "CALIB" else a for a in args]
    code, _, stderr = convert(fx.cnn, "-o", tmp_path / "m.tflite", "--std", "255", *args)
    assert code == 2, stderr
    assert expect in stderr


def test_prune_refuses_a_saved_model_and_unlabeled_data(fx, tmp_path):
    code, _, stderr = convert(fx.sensor, "-o", tmp_path / "m.tflite", "--prune", "0.5",
                              "--train-data", fx.sensor_calib_csv)
    assert code == 2 and "--prune works on Keras models" in stderr
    code, _, stderr = convert(fx.mlp, "-o", tmp_path / "m.tflite", "--prune", "0.5",
                              "--train-data", fx.mlp_calib_x)
    assert code == 2 and "no labels" in stderr


@pytest.fixture(scope="session")
def big_teacher(fx: Fixtures, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A digits CNN about 20x the size of a mobilenet:0.125 student, and unlabeled inputs."""
    import keras
    from sklearn.datasets import load_digits

    out = tmp_path_factory.mktemp("teacher")
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    teacher = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    teacher.compile("adam", "sparse_categorical_crossentropy")
    teacher.fit(x[:1200], digits.target[:1200], epochs=15, batch_size=32, verbose=0)
    teacher.save(out / "teacher.keras")
    np.save(out / "unlabeled.npy", x[:1200])  # inputs only: no labels reach the student
    return {"model": out / "teacher.keras", "inputs": out / "unlabeled.npy",
            "params": teacher.count_params()}


def test_distill_a_student_ten_times_smaller(fx, big_teacher, tmp_path):
    output, report_path = tmp_path / "student.tflite", tmp_path / "r.json"
    code, stdout, stderr = convert(
        "distill", big_teacher["model"], "--inputs", big_teacher["inputs"],
        "--student", "mobilenet:0.125", "--epochs", "25", "-o", output, "--quantize", "int8",
        "--calibration-data", fx.calib_images, "--validation-data", fx.val_images,
        "--color", "gray", "--std", "255", "--report", report_path, "--no-progress")
    assert code == 0, stderr
    report = json.loads(report_path.read_text())
    details = report["distillation"]
    assert details["teacher_params"] == big_teacher["params"]
    assert details["size_ratio"] >= 10
    teacher_row, student_row = report["modes"]
    assert student_row["variant"] == "student mobilenet 0.125" and student_row["status"] == "ok"
    assert student_row["size_bytes"] * 5 < teacher_row["size_bytes"]
    # Agreement with the teacher, of the converted int8 student, on the labeled validation set.
    assert student_row["agreement"] >= 0.85, student_row
    assert student_row["accuracy"] >= teacher_row["accuracy"] - 0.12
    assert details["student_agreement_before_conversion"] >= 0.85
    assert "distillation: student mobilenet 0.125" in stdout
    model = TfliteModel(output, select_runtime("ai-edge-litert"))
    assert model.inputs[0].dtype == np.int8 and model.metadata.task == "classification"
    teacher = big_teacher["model"]
    assert model.metadata.source["file"] == teacher.name
    assert model.metadata.source["sha256"] == hashlib.sha256(teacher.read_bytes()).hexdigest()
    assert model.metadata.source["made_by"] == "distilled: student mobilenet 0.125"


def test_distill_bad_student(fx, tmp_path):
    code, _, stderr = convert("distill", fx.cnn, "--inputs", fx.calib_images, "--student",
                              "resnet", "-o", tmp_path / "s.tflite")
    assert code == 2 and "--student resnet" in stderr


def test_compare_shows_pruned_and_distilled_side_by_side(fx, big_teacher, tmp_path):
    """One --compare run: the model as given, pruned and a distilled student, every mode."""
    report_path, plot_path = tmp_path / "r.json", tmp_path / "p.png"
    code, stdout, stderr = convert(
        big_teacher["model"], "--compare", "--prune", "0.8", "--prune-epochs", "3",
        "--train-data", fx.calib_images, "--student", "mobilenet:0.125", "--inputs",
        big_teacher["inputs"], "--epochs", "10", "--calibration-data", fx.calib_images,
        "--validation-data", fx.val_images, "--color", "gray", "--std", "255",
        "--report", report_path, "--plot", plot_path, "--no-progress")
    assert code == 0, stderr
    report = json.loads(report_path.read_text())
    rows = [(m.get("variant", ""), m["mode"]) for m in report["modes"]]
    modes = ["none", "float16", "dynamic", "int8", "int16x8"]
    assert rows == [(v, m) for v in ("", "pruned 80%", "student mobilenet 0.125") for m in modes]
    assert {"pruning", "distillation"} <= set(report)
    for m in report["modes"]:
        assert m["status"] == "ok", m
        assert m["gzip_bytes"] and m["latency_ms"] and m["latency_no_delegate_ms"]
        assert [c["runtime"] for c in m["runtime_checks"]][0] == "ai-edge-litert"
    assert "pruned 80%" in stdout and "student mobilenet 0.125" in stdout
    assert plot_path.stat().st_size > 10_000
    # Float files of the pruned model store its zeros sparse (DENSIFY ops): the file itself
    # shrinks, and it verified and loaded on both runtimes above; quantized files stay dense.
    size = {(m.get("variant", ""), m["mode"]): m["size_bytes"] for m in report["modes"]}
    for mode in ("none", "float16"):
        assert size["pruned 80%", mode] < 0.5 * size["", mode], mode
    for mode in ("dynamic", "int8", "int16x8"):
        assert abs(size["pruned 80%", mode] - size["", mode]) < 0.05 * size["", mode], mode


def test_pruning_and_distillation_together_need_compare(fx, tmp_path):
    code, _, stderr = convert(fx.cnn, "-o", tmp_path / "m.tflite", "--prune", "0.5",
                              "--train-data", fx.calib_images, "--student", "mobilenet:0.25",
                              "--inputs", fx.calib_images)
    assert code == 2 and "go with --compare" in stderr


def _tiny_keras(path, inputs_shapes: list[tuple]) -> None:
    import keras

    inputs = [keras.Input(shape) for shape in inputs_shapes]
    joined = inputs[0] if len(inputs) == 1 else keras.layers.Concatenate()(
        [keras.layers.Flatten()(i) for i in inputs])
    if len(inputs) == 1:
        joined = keras.layers.GlobalAveragePooling2D()(joined)
    outputs = keras.layers.Dense(3, activation="softmax")(joined)
    keras.Model(inputs, outputs).save(path)


def test_a_model_with_several_inputs_is_refused_naming_the_count(tmp_path):
    model = tmp_path / "two_inputs.keras"
    _tiny_keras(model, [(4, 4, 1), (4, 4, 1)])
    assert_several_inputs_refused(model, tmp_path, 2)


def test_a_model_with_a_dynamic_image_size_is_refused_naming_the_input(tmp_path):
    model = tmp_path / "any_size.keras"
    _tiny_keras(model, [(None, None, 1)])
    assert_dynamic_size_refused(model, tmp_path)


def _saved_model(path, signature: list) -> None:
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=signature)
        def serve(self, *inputs):
            return {"out": tf.add_n([tf.reduce_mean(t, axis=[1, 2]) for t in inputs])}

    model = Model()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})


def test_a_saved_model_with_several_inputs_or_a_dynamic_size_is_refused(tmp_path):
    import tensorflow as tf

    two, any_size = tmp_path / "two_inputs", tmp_path / "any_size"
    _saved_model(two, [tf.TensorSpec([1, 4, 4, 1], tf.float32)] * 2)
    _saved_model(any_size, [tf.TensorSpec([None, None, None, 1], tf.float32)])
    assert_several_inputs_refused(two, tmp_path, 2, "the signature")
    assert_dynamic_size_refused(any_size, tmp_path)
