"""Object detection post-processing: ssd-postprocess, yolo and MediaPipe-style anchors outputs."""

from edge_runtime.postprocessing.detection.detector import Detector
from edge_runtime.postprocessing.detection.options import DetectionOptions

__all__ = ["DetectionOptions", "Detector"]
