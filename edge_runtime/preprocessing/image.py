"""Image frames (OpenCV BGR uint8) into an image model's input tensor."""

from __future__ import annotations

import cv2
import numpy as np

from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.preprocessing.geometry import Geometry
from edge_runtime.preprocessing.spec import PreprocessError, PreprocessSpec, affine_to_input, store


def image_input_size(spec: PreprocessSpec, tensor: TensorSpec) -> tuple[int, int, int]:
    """(height, width, channels) the model wants, checked against the preprocessing settings."""
    shape = tensor.shape
    if len(shape) == 3 and spec.layout == "nhwc":  # [1, H, W]: a gray image without channel axis
        height, width, channels = shape[1], shape[2], 1
    elif len(shape) == 4 and shape[0] == 1:
        if spec.layout == "nhwc":
            height, width, channels = shape[1], shape[2], shape[3]
        else:
            channels, height, width = shape[1], shape[2], shape[3]
    else:
        raise PreprocessError(
            f"input tensor {tensor.name!r} has shape {list(shape)}, not an image "
            f"([1, H, W, C] for nhwc or [1, C, H, W] for nchw)"
        )
    wanted = 1 if spec.color == "gray" else 3
    if channels != wanted:
        raise PreprocessError(
            f"color {spec.color!r} gives {wanted} channel(s) but input tensor {tensor.name!r} "
            f"has {channels} (shape {list(shape)})"
        )
    return height, width, channels


_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}
_FROM_BGR = {"rgb": cv2.COLOR_BGR2RGB, "gray": cv2.COLOR_BGR2GRAY}


class ImagePreprocessor:
    """Resize, color conversion and normalization into reused buffers; one per pipeline.

    Resizing comes first, so color conversion and normalization touch only the model's pixels.
    """

    def __init__(self, spec: PreprocessSpec, tensor: TensorSpec) -> None:
        self.spec = spec
        self.tensor = tensor
        self.height, self.width, self.channels = image_input_size(spec, tensor)
        self._gain, self._offset = affine_to_input(spec, tensor, self.channels)
        self._identity = bool(np.all(self._gain == 1.0) and np.all(self._offset == 0.0))
        self._interpolation = _INTERPOLATION[spec.interpolation]
        self._bgr = np.zeros((self.height, self.width, 3), np.uint8)
        # The model's pixels: the BGR buffer itself for bgr models, else a converted copy.
        self._pixels = (self._bgr if spec.color == "bgr"
                        else np.zeros((self.height, self.width, self.channels), np.uint8))
        self._values = np.zeros((self.height, self.width, self.channels), np.float32)
        self._lut = self._lookup_table(tensor.dtype) if spec.layout == "nhwc" else None

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model input: what image sources may decode down to."""
        return self.width, self.height

    def _lookup_table(self, dtype: np.dtype) -> np.ndarray:
        """The normalization of every possible 8-bit pixel value, per channel, in the tensor's
        dtype: one table lookup per pixel instead of a multiply, an add and a saturating cast.
        The same float32 arithmetic as the element-wise path, so the results are identical."""
        levels = np.arange(256, dtype=np.float32).reshape(256, 1)
        values = np.ascontiguousarray(levels * self._gain + self._offset)  # (256, channels)
        table = np.zeros(values.shape, dtype)
        store(values, table)
        return table[:, 0] if self.channels == 1 else table.reshape(1, 256, self.channels)

    def __call__(self, frame: np.ndarray, out: np.ndarray) -> Geometry:
        """Write the model input for `frame` into `out` (the input tensor or an array like it)."""
        geometry = self._resize_into(self._as_bgr(frame))
        if self.spec.color != "bgr":
            cv2.cvtColor(self._bgr, _FROM_BGR[self.spec.color],
                         dst=self._pixels.reshape(self._pixels.shape[:2] if self.channels == 1
                                                  else self._pixels.shape))
        if self._identity and out.dtype == np.uint8 and self.spec.layout == "nhwc":
            np.copyto(out.reshape(self._pixels.shape), self._pixels)
            return geometry
        if self._lut is not None:
            target = out.reshape(self._pixels.shape)  # a view: out is contiguous
            looked_up = cv2.LUT(self._pixels, self._lut, dst=target)
            if looked_up.ctypes.data != target.ctypes.data:  # OpenCV could not write in place
                np.copyto(target, looked_up.reshape(target.shape))
            return geometry
        np.multiply(self._pixels, self._gain, out=self._values)
        np.add(self._values, self._offset, out=self._values)
        values = self._values
        if self.spec.layout == "nchw":
            values = np.ascontiguousarray(values.transpose(2, 0, 1))
        store(values, out)
        return geometry

    @staticmethod
    def _as_bgr(frame: np.ndarray) -> np.ndarray:
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or 0 in frame.shape:
            raise PreprocessError(
                f"expected an 8-bit image, got an array of shape {list(frame.shape)} and "
                f"dtype {frame.dtype}"
            )
        if frame.ndim == 2:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if frame.shape[2] == 4:
            return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        if frame.shape[2] != 3:
            raise PreprocessError(f"expected 1, 3 or 4 channels, got {frame.shape[2]}")
        return frame

    def _resize_into(self, image: np.ndarray) -> Geometry:
        src_h, src_w = image.shape[:2]
        dst = self._bgr
        mode = self.spec.resize
        if mode == "stretch":
            cv2.resize(image, (self.width, self.height), dst=dst, interpolation=self._interpolation)
            return Geometry(src_w, src_h, self.width, self.height,
                            src_w / self.width, src_h / self.height)
        if mode == "letterbox":
            scale = min(self.width / src_w, self.height / src_h)
            new_w = max(1, min(self.width, round(src_w * scale)))
            new_h = max(1, min(self.height, round(src_h * scale)))
            pad_x, pad_y = (self.width - new_w) // 2, (self.height - new_h) // 2
            dst[...] = 0
            cv2.resize(image, (new_w, new_h), dst=dst[pad_y : pad_y + new_h, pad_x : pad_x + new_w],
                       interpolation=self._interpolation)
            sx, sy = src_w / new_w, src_h / new_h
            return Geometry(src_w, src_h, self.width, self.height, sx, sy, -pad_x * sx, -pad_y * sy)
        if mode == "letterbox-mediapipe":
            # MediaPipe's ImageToTensorCalculator: the frame centered in a region of the model's
            # aspect ratio, mapped corner to corner (input x = frame x * scale + offset, no
            # half-pixel centering, fractional bars) by a bilinear warp. Its models' outputs are
            # reproduced exactly; plain letterbox samples pixel centers, a fraction of a pixel off.
            scale = min(self.width / src_w, self.height / src_h)
            off_x, off_y = (self.width - src_w * scale) / 2, (self.height - src_h * scale) / 2
            matrix = np.float32([[scale, 0, off_x], [0, scale, off_y]])
            cv2.warpAffine(image, matrix, (self.width, self.height), dst=dst,
                           flags=self._interpolation, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0)
            return Geometry(src_w, src_h, self.width, self.height, 1 / scale, 1 / scale,
                            -off_x / scale, -off_y / scale)
        # center-crop: the largest centered region with the model's aspect ratio
        scale = max(self.width / src_w, self.height / src_h)
        crop_w = min(src_w, max(1, round(self.width / scale)))
        crop_h = min(src_h, max(1, round(self.height / scale)))
        x0, y0 = (src_w - crop_w) // 2, (src_h - crop_h) // 2
        crop = image[y0 : y0 + crop_h, x0 : x0 + crop_w]
        cv2.resize(crop, (self.width, self.height), dst=dst, interpolation=self._interpolation)
        return Geometry(src_w, src_h, self.width, self.height,
                        crop_w / self.width, crop_h / self.height, x0, y0)
