"""A small PyTorch CNN the project trains itself, saved as a torch.export program and as ONNX.

    <.venv-torch>/bin/python tests/converter_fixtures/build_torch.py DATA.npz OUT_DIR

DATA.npz holds x [N, 3, H, W] float32 (NCHW, pixels / 255) and y [N] int64 (see
converter_fixtures.torch_data, which makes colored digits from scikit-learn's digits). Writes
OUT_DIR/digits.pt2 (torch.export.save) and OUT_DIR/digits.onnx (torch.onnx.export of the same
program). Runs in the torch virtualenv (deploy/setup-convert-venvs.sh torch); nothing downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

EPOCHS = 12


def network() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.LazyLinear(10), nn.Softmax(dim=1),
    )


def train(x: np.ndarray, y: np.ndarray) -> nn.Module:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = network()
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    model(xs[:1])  # materialize the lazy layer
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.NLLLoss()
    for _ in range(EPOCHS):
        order = torch.randperm(len(xs))
        for start in range(0, len(xs), 32):
            batch = order[start : start + 32]
            optimizer.zero_grad()
            loss = loss_fn(torch.log(model(xs[batch]) + 1e-7), ys[batch])
            loss.backward()
            optimizer.step()
    return model.eval()


def main(data_path: str, out_dir: str) -> None:
    data = np.load(data_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = train(data["x"].astype(np.float32), data["y"].astype(np.int64))
    sample = (torch.zeros(1, *data["x"].shape[1:]),)
    program = torch.export.export(model, sample)
    torch.export.save(program, str(out / "digits.pt2"))
    torch.onnx.export(program, sample, str(out / "digits.onnx"), input_names=["image"],
                      output_names=["scores"], external_data=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
