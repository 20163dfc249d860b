"""The detection output formats: the one list, format name -> decoder class.

`format` in `[pipelines.postprocess]` is checked against it (options.py), `auto` guesses among
them (detector.py), and the error messages list them from here.
"""

from __future__ import annotations

from edge_runtime.postprocessing.detection.ssd import SsdPostprocessDecoder
from edge_runtime.postprocessing.detection.ssd_anchors import AnchorsDecoder
from edge_runtime.postprocessing.detection.yolo import YoloDecoder

DECODERS: dict[str, type] = {
    "ssd-postprocess": SsdPostprocessDecoder,
    "yolo": YoloDecoder,
    "anchors": AnchorsDecoder,
}
