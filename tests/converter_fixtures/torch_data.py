"""Colored digits for the PyTorch/ONNX converter tests: scikit-learn's 8x8 digits, upscaled to
16x16 and tinted with a random color per sample, so the three channels differ and a model fed
its channels in the wrong layout gives other answers.

`write(root)` writes root/data.npz (x [N, 3, 16, 16] NCHW in 0..1, y) for the PyTorch training
script (build_torch.py), and the same images as 32x32 RGB PNGs in class subfolders of
root/calib and root/val, which the daemon's preprocessing resizes back to 16x16 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SIZE = 16


@dataclass(frozen=True)
class TorchData:
    npz: Path  # training data (all samples but the validation ones)
    calib: Path
    val: Path
    val_x: Path  # .npy [N, 16, 16, 3] NHWC in 0..1, the validation images as the device sees them
    val_y: Path


def colored_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 16, 16, 3] uint8 RGB, labels [N])."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    scale = SIZE // 8
    gray = (digits.images / 16.0).astype(np.float32).repeat(scale, axis=1).repeat(scale, axis=2)
    tint = rng.uniform(0.3, 1.0, (len(gray), 1, 1, 3)).astype(np.float32)
    images = np.rint(gray[..., None] * tint * 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def _write_images(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        big = cv2.resize(image, (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(target / f"{i:04d}.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))


def write(root: Path, val_count: int = 300, calib_count: int = 200) -> TorchData:
    images, labels = colored_digits()
    out = TorchData(root / "data.npz", root / "calib", root / "val", root / "val_x.npy",
                    root / "val_y.npy")
    root.mkdir(parents=True, exist_ok=True)
    val, train = slice(0, val_count), slice(val_count, None)
    x_train = images[train].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    np.savez(out.npz, x=x_train, y=labels[train])
    _write_images(out.val, images[val], labels[val])
    _write_images(out.calib, images[train][:calib_count], labels[train][:calib_count])
    np.save(out.val_x, images[val].astype(np.float32) / 255.0)
    np.save(out.val_y, labels[val])
    return out
