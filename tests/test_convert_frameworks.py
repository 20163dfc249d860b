"""edge-convert on PyTorch (.pt2) and ONNX (.onnx) models the project trains itself.

A small CNN is trained with torch on colored scikit-learn digits, saved with torch.export and
exported to ONNX (tests/converter_fixtures/build_torch.py, in the torch virtualenv). The
converted models are verified against torch and onnxruntime, and the daemon, fed the PNG files,
must give what the source model gives on the same image in its own NCHW layout.

Needs the converter's worker virtualenvs (deploy/setup-convert-venvs.sh, which
deploy/run-tests.sh runs): $EDGE_CONVERT_TORCH_PYTHON / $EDGE_CONVERT_ONNX_PYTHON or the repo's
.venv-torch / .venv-onnx. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import edge_convert as convert
from conftest import write_config
from converter_fixtures.refusals import assert_dynamic_size_refused, assert_several_inputs_refused
from converter_fixtures.torch_data import SIZE, TorchData, write
from converters.errors import ConvertError
from converters.frameworks import ONNX_PYTHON_ENV, TORCH_PYTHON_ENV, call_worker, framework_python
from edge_runtime.model.metadata import read_model_metadata
from edge_runtime.model.runtime import select_runtime
from edge_runtime.model.tflite_model import TfliteModel

pytestmark = pytest.mark.slow
BUILD = Path(__file__).resolve().parent / "converter_fixtures" / "build_torch.py"


def _python(framework: str) -> str:
    try:
        return framework_python(framework)
    except ConvertError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def torch_python() -> str:
    return _python("pytorch")


@pytest.fixture(scope="session")
def onnx_python() -> str:
    return _python("onnx")


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> TorchData:
    return write(tmp_path_factory.mktemp("torch-data"))


@pytest.fixture(scope="session")
def models(torch_python: str, data: TorchData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits.pt2 (torch.export) and digits.onnx (its ONNX export), trained here."""
    out = tmp_path_factory.mktemp("torch-models")
    done = subprocess.run([torch_python, str(BUILD), str(data.npz), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _source_scores(python: str, framework: str, model: Path, nchw: np.ndarray,
                   tmp: Path) -> np.ndarray:
    """The source model's own framework on inputs already in its layout (no transposing)."""
    np.save(tmp / "in.npy", nchw)
    call_worker(python, "run", framework, str(model), str(tmp / "in.npy"), str(tmp / "out.npz"),
                "none")
    with np.load(tmp / "out.npz") as archive:
        return archive["arr_0"]


@pytest.mark.parametrize("framework, suffix", [("onnx", "onnx"), ("pytorch", "pt2")])
def test_every_mode_verified_against_the_original_framework(framework, suffix, models, data,
                                                            tmp_path, request):
    request.getfixturevalue("onnx_python" if framework == "onnx" else "torch_python")
    report_path = tmp_path / "report.json"
    code, stdout, stderr = convert(
        models / f"digits.{suffix}", "--compare", "--calibration-data", data.calib,
        "--validation-data", data.val, "--std", "255", "--report", report_path,
        "--no-progress")
    assert code == 0, stderr
    report = json.loads(report_path.read_text())
    assert report["source"]["framework"] == framework and report["source"]["layout"] == "nchw"
    assert report["input"]["shape"] == [1, SIZE, SIZE, 3]  # what the device feeds: NHWC
    reference = report["validation"]["reference_accuracy"]
    assert reference > 0.9, "the fixture model itself should be good"
    modes = {m["mode"]: m for m in report["modes"]}
    assert set(modes) == {"none", "float16", "dynamic", "int8", "int16x8"}
    for mode in modes.values():
        assert mode["status"] == "ok", mode
        # Verified against torch / onnxruntime: the float model matches them exactly.
        assert mode["agreement"] >= 0.97, mode
        assert mode["accuracy"] >= reference - 0.03, mode
        checks = {c["runtime"]: c["status"] for c in mode["runtime_checks"]}
        assert checks["ai-edge-litert"] == "ok"
    assert modes["none"]["max_abs_diff"] < 1e-4
    assert modes["int8"]["size_bytes"] < 0.5 * modes["none"]["size_bytes"]
    # ONNX goes through TFLiteConverter (int8 I/O); PyTorch through ai-edge-quantizer (float I/O).
    assert modes["int8"]["io_type"] == ("int8" if framework == "onnx" else "float32")


@pytest.fixture(scope="session")
def pytorch_float(models: Path, data: TorchData, torch_python: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("pt-float") / "digits.tflite"
    code, _, stderr = convert(models / "digits.pt2", "-o", output, "--validation-data", data.val,
                              "--std", "255", "--top-k", "10", "--no-progress")
    assert code == 0, stderr
    return output


def test_metadata_says_what_the_device_feeds(pytorch_float, models):
    model = TfliteModel(pytorch_float, select_runtime("ai-edge-litert"))
    assert model.inputs[0].shape == (1, SIZE, SIZE, 3)
    meta = read_model_metadata(pytorch_float.read_bytes())
    assert meta.preprocess["layout"] == "nhwc" and meta.preprocess["color"] == "rgb"
    assert meta.source["framework"] == "pytorch" and meta.source["layout"] == "nchw"


def test_daemon_preprocessing_gives_the_source_models_answer(pytorch_float, models, data,
                                                             torch_python, tmp_path, mosquitto,
                                                             subscribe, start_daemon):
    """The daemon reads the PNGs and preprocesses them from the metadata alone; torch gets the
    same images decoded and normalized here, transposed to NCHW, and must give the same scores."""
    images = sorted(data.val.glob("*/*.png"))[::30]
    folder = tmp_path / "frames"
    folder.mkdir()
    nchw = []
    for path in images:
        (folder / f"{path.parent.name}_{path.name}").write_bytes(path.read_bytes())
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        small = rgb.reshape(SIZE, 2, SIZE, 2, 3).mean(axis=(1, 3))  # 2x2 mean: the 32->16 resize
        nchw.append(small.transpose(2, 0, 1).astype(np.float32) / 255.0)
    expected = _source_scores(torch_python, "pytorch", models / "digits.pt2", np.stack(nchw),
                              tmp_path)
    sub = subscribe("edge/test-pi/digits/result")
    config = write_config(tmp_path / "config.toml", mosquitto, [{
        "name": "digits", "source": {"type": "images", "path": str(folder)},
        "model": {"path": str(pytorch_float)},
    }])
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    results = {r["source"]["name"]: r for r in sub.json_on("edge/test-pi/digits/result")}
    assert len(results) == len(images)
    for k, path in enumerate(images):
        classes = results[f"{path.parent.name}_{path.name}"]["classes"]
        got = np.zeros(10)
        for c in classes:
            got[c["index"]] = c["score"]
        np.testing.assert_allclose(got, expected[k], atol=1e-4)
    # The same images in the wrong layout (NHWC bytes read as NCHW) give other answers: the test
    # would catch a converter that skipped the transpose.
    wrong = np.stack(nchw).transpose(0, 2, 3, 1).reshape(len(nchw), 3, SIZE, SIZE)
    wrong_scores = _source_scores(torch_python, "pytorch", models / "digits.pt2",
                                  np.ascontiguousarray(wrong), tmp_path)
    assert np.abs(wrong_scores - expected).max() > 0.05


def test_onnx_matches_onnxruntime_on_the_same_image(models, data, onnx_python, tmp_path):
    output = tmp_path / "digits.tflite"
    code, _, stderr = convert(models / "digits.onnx", "-o", output, "--validation-data", data.val,
                              "--std", "255", "--no-progress")
    assert code == 0, stderr
    model = TfliteModel(output, select_runtime("ai-edge-litert"))
    x = np.load(data.val_x)[:8]  # NHWC in 0..1, as the device's preprocessing makes them
    got = []
    for sample in x:
        model.set_input(0, sample[None])
        model.invoke()
        got.append(model.output(0)[0].copy())
    expected = _source_scores(onnx_python, "onnx", models / "digits.onnx",
                              np.ascontiguousarray(x.transpose(0, 3, 1, 2)), tmp_path)
    np.testing.assert_allclose(np.stack(got), expected, atol=1e-4)


def test_pytorch_refuses_integer_io(models, data, torch_python, tmp_path):
    code, _, stderr = convert(models / "digits.pt2", "-o", tmp_path / "m.tflite", "--quantize",
                              "int8", "--io-type", "int8", "--calibration-data", data.calib)
    assert code == 2
    assert "keep float32 input and output tensors" in stderr
    assert not (tmp_path / "m.tflite").exists()


def test_missing_framework_environment_says_how_to_make_it(models, tmp_path, monkeypatch):
    monkeypatch.setenv(TORCH_PYTHON_ENV, str(tmp_path / "nowhere" / "python"))
    monkeypatch.setenv(ONNX_PYTHON_ENV, str(tmp_path / "nowhere" / "python"))
    for name in ("digits.pt2", "digits.onnx"):
        code, _, stderr = convert(models / name, "-o", tmp_path / "m.tflite")
        assert code == 2, stderr
        assert "deploy/setup-convert-venvs.sh" in stderr


def test_a_file_that_is_not_a_model_says_why(torch_python, onnx_python, tmp_path):
    for name in ("broken.pt2", "broken.onnx"):
        path = tmp_path / name
        path.write_bytes(b"not a model")
        code, _, stderr = convert(path, "-o", tmp_path / "m.tflite")
        assert code == 2, stderr
        assert stderr.startswith("edge-convert: error: ")


# Two tiny ONNX graphs made with onnx.helper in the ONNX worker's environment.
ONNX_SHAPES = """
import sys
import onnx
from onnx import TensorProto, helper

def save(name, inputs, node, output):
    graph = helper.make_graph([node], name, inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, f"{sys.argv[1]}/{name}.onnx")

def value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

save("two_inputs", [value("x", [1, 3, 8, 8]), value("y", [1, 3, 8, 8])],
     helper.make_node("Add", ["x", "y"], ["z"]), value("z", [1, 3, 8, 8]))
save("any_size", [value("x", ["N", 3, "H", "W"])],
     helper.make_node("Relu", ["x"], ["z"]), value("z", ["N", 3, "H", "W"]))
"""


def test_onnx_models_with_several_inputs_or_a_dynamic_size_are_refused(onnx_python, tmp_path):
    subprocess.run([onnx_python, "-c", ONNX_SHAPES, str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    two, any_size = tmp_path / "two_inputs.onnx", tmp_path / "any_size.onnx"
    assert_several_inputs_refused(two, tmp_path, 2)
    assert_dynamic_size_refused(any_size, tmp_path)


# The same two cases as torch.export programs, made in the PyTorch worker's environment.
TORCH_SHAPES = """
import sys
import torch

class Add(torch.nn.Module):
    def forward(self, x, y):
        return x + y

class Relu(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x)

image = torch.zeros(1, 3, 8, 8)
torch.export.save(torch.export.export(Add(), (image, image)), f"{sys.argv[1]}/two_inputs.pt2")
size = {2: torch.export.Dim("h", min=2, max=64), 3: torch.export.Dim("w", min=2, max=64)}
program = torch.export.export(Relu(), (image,), dynamic_shapes={"x": size})
torch.export.save(program, f"{sys.argv[1]}/any_size.pt2")
"""


def test_pytorch_programs_with_several_inputs_or_a_dynamic_size_are_refused(torch_python,
                                                                           tmp_path):
    subprocess.run([torch_python, "-c", TORCH_SHAPES, str(tmp_path)], check=True,
                   capture_output=True, timeout=300)
    two, any_size = tmp_path / "two_inputs.pt2", tmp_path / "any_size.pt2"
    assert_several_inputs_refused(two, tmp_path, 2)
    assert_dynamic_size_refused(any_size, tmp_path)
