"""The preprocessing stage: source frames, sensor and audio windows into model input tensors.

The converter imports this same code for calibration and validation data, so a model is
calibrated on exactly what the device will feed it.
"""

from edge_runtime.preprocessing.audio import AudioPreprocessor, AudioSpec
from edge_runtime.preprocessing.geometry import Geometry
from edge_runtime.preprocessing.image import ImagePreprocessor
from edge_runtime.preprocessing.sensor import SensorPreprocessor
from edge_runtime.preprocessing.spec import PreprocessError, PreprocessSpec

__all__ = ["AudioPreprocessor", "AudioSpec", "Geometry", "ImagePreprocessor", "PreprocessError",
           "PreprocessSpec", "SensorPreprocessor"]
