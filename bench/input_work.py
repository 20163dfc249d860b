"""The daemon's input work (a source's read + decode, then the image preprocessing) outside the
daemon, flat out or paced, alone or beside the interpreter: the limits the benches compare to.

    input_rate(...)           frames/s of the input work alone, on one thread
    invoke_beside_input(...)  the raw invoke rate while that work runs on another thread, flat
                              out (rate=None) or at a given frames/s (e.g. the daemon's own rate)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from common import invoke_rate


def load_with_preprocessor(model_path: Path, threads: int) -> tuple[Any, Any]:
    """The model and the daemon's image preprocessing for it, from its metadata."""
    from edge_runtime.model.runtime import select_runtime
    from edge_runtime.model.tflite_model import TfliteModel
    from edge_runtime.preprocessing import ImagePreprocessor, PreprocessSpec

    model = TfliteModel(model_path, select_runtime(), threads=threads)
    spec = PreprocessSpec().updated(model.metadata.preprocess if model.metadata else {})
    return model, ImagePreprocessor(spec, model.inputs[0])


def images_source(folder: Path) -> Callable[[tuple[int, int]], Any]:
    """A factory of the daemon's `images` source over `folder` (reduced JPEG decode as in the
    daemon: the factory is given the model input size)."""
    from edge_runtime.sources.base import SourceContext
    from edge_runtime.sources.images import ImagesOptions, ImagesSource

    return lambda size: ImagesSource(ImagesOptions("images", str(folder)),
                                     SourceContext(folder, "bench", image_size=size))


def video_source(path: Path) -> Callable[[tuple[int, int]], Any]:
    """A factory of the daemon's `video` source, looping over `path`."""
    from edge_runtime.sources.base import SourceContext
    from edge_runtime.sources.video import VideoOptions, VideoSource

    return lambda size: VideoSource(VideoOptions("video", str(path), loop=True),
                                    SourceContext(path.parent, "bench", image_size=size))


def input_rate(model_path: Path, make_source: Callable[[tuple[int, int]], Any],
               stop: threading.Event | None = None, rate: float | None = None,
               started: threading.Event | None = None) -> float:
    """Frames/s the daemon's source and preprocessing manage on one thread. Without `stop`: one
    pass over a finite source. With `stop`: round after round until it is set, flat out or, with
    `rate`, one frame every 1/rate s (late frames are not made up in a burst)."""
    from edge_runtime.sources.base import EndOfStream

    model, preprocess = load_with_preprocessor(model_path, 1)
    source = make_source((preprocess.width, preprocess.height))
    out = np.zeros(model.inputs[0].shape, model.inputs[0].dtype)
    source.open()
    if started is not None:
        started.set()
    interval = 1.0 / rate if rate else 0.0
    count, start = 0, time.perf_counter()
    due = start
    try:
        while stop is None or not stop.is_set():
            if interval:
                now = time.perf_counter()
                if due > now:
                    if stop is not None and stop.wait(due - now):
                        break
                due = max(due, now - interval) + interval
            try:
                frame = source.read()
            except EndOfStream:
                if stop is None:
                    break
                source.open()  # the model is loaded once, not per round
                continue
            if frame is None:
                continue
            preprocess(frame.data, out)
            count += 1
    finally:
        source.close()
    return count / (time.perf_counter() - start)


def invoke_beside_input(model_path: Path, threads: int,
                        make_source: Callable[[tuple[int, int]], Any],
                        rate: float | None = None, seconds: float = 3.0) -> tuple[float, float]:
    """(raw invoke/s, input frames/s achieved) while a thread does the input work beside the
    interpreter, flat out or at `rate` frames/s."""
    stop, started = threading.Event(), threading.Event()
    result: list[float] = []
    worker = threading.Thread(
        target=lambda: result.append(input_rate(model_path, make_source, stop, rate, started)),
        name="bench-input", daemon=True)
    worker.start()
    try:
        started.wait(30)
        time.sleep(0.2)
        invokes = invoke_rate(model_path, threads, seconds)[0]
    finally:
        stop.set()
        worker.join()
    return invokes, (result or [0.0])[0]
