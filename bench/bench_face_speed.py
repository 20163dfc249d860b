"""Face detection frames/s: MediaPipe's own solution against the daemon, same model, same video.

Runs in the bench-only virtualenv that has mediapipe 0.10.21 (never a daemon dependency):

    bash deploy/mediapipe-venv.sh      # once: .venv-mediapipe and Debian's opencv-doc video
    .venv-mediapipe/bin/python bench/bench_face_speed.py [--rounds 3] [--frames 810] [--threads 1]
        [--before DIR]   # also run the daemon from another checkout each round (an A/B)

Both sides run MediaPipe's short-range BlazeFace (`face_detection_short_range.tflite` from the
mediapipe wheel) on Debian opencv-doc's `Megamind.avi` (720x528, looped to --frames frames),
decoding included on both sides:
  MediaPipe: OpenCV reads each frame, converts it to RGB and hands it to
      `mp.solutions.face_detection.FaceDetection(model_selection=0).process()` (its own graph:
      letterbox to 128x128, invoke, anchors, weighted NMS), one frame after another, as its
      documentation's example does;
  daemon: `python -m edge_runtime run` with a looping `video` source at `fps = 0` and the
      detection task with MediaPipe's anchor options (bench_face_parity.SHORT_RANGE), results
      counted at a real mosquitto.
The two alternate for --rounds rounds; the medians and their ratio are printed (the daemon
led 240 against 146 frames/s when this bench was written: keep that lead).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

from bench_face_parity import SHORT_RANGE, VIDEO, short_range_model
from bench_video import describe_interpreter
from common import REPO, Broker, cpu_summary, own_cpu, run_daemon


def mediapipe_rate(video: Path, frames: int) -> tuple[float, int]:
    """(frames/s, frames with a face) of MediaPipe's solution, decode included."""
    import mediapipe as mp

    capture = cv2.VideoCapture(str(video))
    faces = 0
    with mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                   min_detection_confidence=0.5) as solution:
        start = time.perf_counter()
        for _ in range(frames):
            ok, bgr = capture.read()
            if not ok:  # loop, as the daemon's source does
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = capture.read()
            result = solution.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            faces += bool(result.detections)
        rate = frames / (time.perf_counter() - start)
    capture.release()
    return rate, faces


def daemon_config(path: Path, port: int, model: Path, video: Path, threads: int | str,
                  cpus: tuple[int, ...] = ()) -> Path:
    labels = path.parent / "face-labels.txt"
    labels.write_text("face\n")
    path.write_text(
        f'[device]\nid = "bench"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nqos = 1\n'
        f'[[pipelines]]\nname = "bench"\n'
        f'[pipelines.source]\ntype = "video"\npath = "{video}"\nloop = true\n'
        f'[pipelines.model]\npath = "{model}"\nthreads = {threads!r}\n'.replace("'", '"')
        + (f"cpus = {list(cpus)}\n" if cpus else "")
        + SHORT_RANGE.format(labels=labels, nms="weighted", resize="letterbox"))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=810, help="frames per run (3 x the video)")
    parser.add_argument("--threads", default="1", help="the daemon's interpreter threads, or auto")
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout whose daemon also runs each round (A/B)")
    parser.add_argument("--cpus", action="store_true", help="also run the daemon with "
                        "[pipelines.model] cpus = [<last CPU>] each round (an own CPU)")
    args = parser.parse_args()
    if not args.video.is_file():
        print(f"no {args.video}: run deploy/sample-videos.sh (Debian's opencv-doc)")
        return 2
    threads: int | str = args.threads if args.threads == "auto" else int(args.threads)
    model = short_range_model()
    print(f"model {model.name}, video {args.video.name}, {args.frames} frames per run, daemon "
          f"threads {threads!r}, {cpu_summary()}")
    theirs: list[float] = []
    ours: list[float] = []
    before: list[float] = []
    pinned: list[float] = []
    pinned_cpu = own_cpu()
    with Broker() as broker, tempfile.TemporaryDirectory() as tmp:
        config = daemon_config(Path(tmp) / "faces.toml", broker.port, model, args.video, threads)
        pinned_config = daemon_config(Path(tmp) / "pinned.toml", broker.port, model, args.video,
                                      threads, (pinned_cpu,))
        for round_ in range(1, args.rounds + 1):
            mp_rate, faces = mediapipe_rate(args.video, args.frames)
            trees = [("daemon", REPO, config)]
            trees += [("before", args.before, config)] if args.before else []
            trees += [(f"cpus=[{pinned_cpu}]", REPO, pinned_config)] if args.cpus else []
            if round_ % 2 == 0:  # alternate which tree runs right after MediaPipe
                trees.reverse()
            theirs.append(mp_rate)
            print(f"round {round_}: MediaPipe {mp_rate:6.1f} frames/s ({faces} frames with a "
                  f"face)", flush=True)
            for label, tree, path in trees:
                run = run_daemon(path, broker.port, args.frames, stop_after=args.frames,
                                 pythonpath=tree)
                {"daemon": ours, "before": before}.get(label, pinned).append(run.rate)
                print(f"         {label} {run.rate:6.1f} results/s ({run.results} results, exit "
                      f"{run.exit_code})  {label} / MediaPipe {run.rate / mp_rate:.2f}")
                print(f"         {label} CPU ms per result by thread: {run.cpu_line()}")
                print(f"         {label} interpreter: {describe_interpreter(run.interpreter())}",
                      flush=True)
    print(f"at the end: {cpu_summary()}")
    ratio = statistics.median(o / t for o, t in zip(ours, theirs))
    print("| MediaPipe solution frames/s | daemon results/s | daemon / MediaPipe |")
    print(f"| {statistics.median(theirs):.1f} | {statistics.median(ours):.1f} | {ratio:.2f} |")
    if before:
        old = statistics.median(b / t for b, t in zip(before, theirs))
        print(f"before ({args.before}): {statistics.median(before):.1f} results/s, before / "
              f"MediaPipe {old:.2f}; this tree / before (median per round) "
              f"{statistics.median(o / b for o, b in zip(ours, before)):.2f}")
    if pinned:
        print(f"cpus = [{pinned_cpu}]: {statistics.median(pinned):.1f} results/s, / MediaPipe "
              f"{statistics.median(p / t for p, t in zip(pinned, theirs)):.2f}; own CPU / "
              f"daemon (median per round) {statistics.median(p / o for p, o in zip(pinned, ours)):.2f}")
    print("target: daemon / MediaPipe > 1 (the lead measured when this bench was written: 1.64)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
