"""The command source with real processes: ffmpeg writing each format from files, exits, stderr."""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.sources.base import SourceContext, SourceError
from edge_runtime.sources.command_source import CommandOptions, CommandSource
from edge_runtime.sources.process import LineBudget
from edge_runtime.sources.stream_formats import MjpegSplitter, SampleWindows

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (deploy/dev-setup.sh)")
ALSA_WAV = Path("/usr/share/sounds/alsa/Front_Center.wav")


def ctx(tmp_path: Path, **extra) -> SourceContext:
    return SourceContext(base_dir=tmp_path, pipeline="cmd", **extra)


def source(tmp_path: Path, command, fmt: str, **options) -> CommandSource:
    argv = tuple(command) if isinstance(command, (list, tuple)) else (command,)
    return CommandSource(CommandOptions(type="command", command=argv, format=fmt, **options),
                         ctx(tmp_path, **options.pop("_ctx", {})))


def read_frames(src: CommandSource, count: int, timeout: float = 20.0) -> list:
    frames, deadline = [], time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < deadline:
        frame = src.read()
        if frame is not None:
            frames.append(frame)
    return frames


def colour_video(path: Path, frames: int = 50, size=(160, 120)) -> Path:
    """A video file whose frames are left half red, right half blue (BGR), at 25 fps."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:, : size[0] // 2] = (0, 0, 255)
    image[:, size[0] // 2:] = (255, 0, 0)
    for _ in range(frames):
        writer.write(image)
    writer.release()
    return path


def ffmpeg(*args: str) -> list[str]:
    return [FFMPEG or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args]


def assert_red_blue(image: np.ndarray) -> None:
    h, w = image.shape[:2]
    left, right = image[h // 2, w // 4].astype(int), image[h // 2, 3 * w // 4].astype(int)
    assert left[2] > 200 and left[0] < 60, left
    assert right[0] > 200 and right[2] < 60, right


# -- parsers, fed in awkward pieces -----------------------------------------------------------------
def test_mjpeg_splitter_finds_each_jpeg_across_chunks_and_skips_garbage():
    image = np.full((40, 60, 3), 128, np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    exif_thumb = jpeg[:2] + b"\xff\xe1" + (len(jpeg) + 2).to_bytes(2, "big") + jpeg + jpeg[2:]
    stream = b"garbage\xff" + jpeg + b"--boundary\r\nContent-Type: image/jpeg\r\n\r\n" + exif_thumb \
        + b"\xff\xd8\xff\x00junk" + jpeg
    splitter = MjpegSplitter()
    got = []
    for i in range(0, len(stream), 7):
        got += splitter.feed(stream[i:i + 7])
    assert got == [jpeg, exif_thumb, jpeg]  # the thumbnail's EOI did not end its parent
    assert cv2.imdecode(np.frombuffer(got[1], np.uint8), cv2.IMREAD_COLOR).shape == (40, 60, 3)
    assert splitter.skipped > 0


def test_sample_windows_cut_odd_chunks_into_strided_windows():
    samples = (np.arange(1000, dtype=np.int16) - 500).astype("<i2")
    raw = samples.tobytes()
    windows = SampleWindows(channels=1, window=100, stride=50)
    got = []
    for i in range(0, len(raw), 33):  # odd sizes split samples in half
        got += windows.feed(raw[i:i + 33])
    assert len(got) == 19
    expected = samples.astype(np.float32) / 32768
    for k, window in enumerate(got):
        np.testing.assert_array_equal(window[:, 0], expected[50 * k:50 * k + 100])


def test_stderr_budget_holds_back_a_flood_and_says_how_much():
    now = [0.0]
    budget = LineBudget(burst=3, period=10, clock=lambda: now[0])
    assert [budget.take() for _ in range(5)] == [0, 0, 0, None, None]
    now[0] = 10.5
    assert budget.take() == 2


# -- real processes ---------------------------------------------------------------------------------
@needs_ffmpeg
def test_mjpeg_from_ffmpeg(tmp_path):
    video = colour_video(tmp_path / "in.avi")
    src = source(tmp_path, ffmpeg("-re", "-i", str(video), "-f", "mjpeg", "-q:v", "3", "-"), "mjpeg")
    src.open()
    try:
        frames = read_frames(src, 5)
    finally:
        src.close()
    assert len(frames) == 5
    assert all(f.data.shape == (120, 160, 3) for f in frames)
    assert_red_blue(frames[-1].data)
    assert [f.index for f in frames] == list(range(5))


@needs_ffmpeg
@pytest.mark.parametrize("pixel_format", ["bgr24", "rgb24", "yuv420p", "gray"])
def test_raw_frames_from_ffmpeg(tmp_path, pixel_format):
    video = colour_video(tmp_path / "in.avi", frames=10)
    src = source(tmp_path, ffmpeg("-i", str(video), "-f", "rawvideo", "-pix_fmt", pixel_format,
                                  "-s", "80x60", "-"),
                 "raw", width=80, height=60, pixel_format=pixel_format, read_timeout=5)
    src.open()
    try:
        frames = read_frames(src, 1)
    finally:
        src.close()
    assert frames and frames[0].data.shape == (60, 80, 3) and frames[0].data.dtype == np.uint8
    if pixel_format == "gray":
        left, right = frames[0].data[30, 20], frames[0].data[30, 60]
        assert abs(int(left[0]) - 76) < 20 and abs(int(right[0]) - 29) < 20  # luma of red, blue
    else:
        assert_red_blue(frames[0].data)


@needs_ffmpeg
@pytest.mark.skipif(not ALSA_WAV.exists(), reason="alsa-utils not installed (deploy/dev-setup.sh)")
def test_s16le_audio_windows_hold_the_recording(tmp_path):
    with wave.open(str(ALSA_WAV)) as wav:
        rate = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    # -re: delivered in real time, like arecord; the source keeps the newest window.
    src = source(tmp_path, ffmpeg("-re", "-i", str(ALSA_WAV), "-f", "s16le", "-ac", "1", "-"),
                 "s16le", sample_rate=rate, window=rate // 2, stride=rate // 4)
    src.open()
    try:
        frames = read_frames(src, 2)
    finally:
        src.close()
    assert len(frames) == 2
    for frame in frames:
        assert frame.data.shape == (rate // 2, 1) and frame.data.dtype == np.float32
        # each window is a stretch of the recording, sample for sample, on a stride boundary
        samples = np.round(frame.data[:, 0] * 32768).astype("<i2").tobytes()
        offset = pcm.find(samples)
        assert offset >= 0 and (offset // 2) % (rate // 4) == 0
    assert np.abs(frames[-1].data).max() > 0.05  # speech, not silence


def test_lines_from_a_command_skip_garbage_and_window(tmp_path):
    data = tmp_path / "readings.txt"
    data.write_bytes(b"booting...\nax,ay\n1,2\n\xff\xfe\n3,4\n{\"ax\": 5, \"ay\": 6}\n[7, 8]\nnan,1\n")
    src = source(tmp_path, ["sh", "-c", f"cat {data}; exec sleep 30"], "lines",
                 columns=("ax", "ay"), window=4)
    src.open()
    try:
        frames = read_frames(src, 1, timeout=5)
    finally:
        src.close()
    np.testing.assert_array_equal(frames[0].data, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert src.input_errors() == 3  # booting..., the bytes that are no text, nan


def test_process_exit_is_a_source_error_with_its_status(tmp_path):
    src = source(tmp_path, ["sh", "-c", "echo 1; exit 3"], "lines", columns=("x",), window=1)
    src.open()
    try:
        with pytest.raises(SourceError, match="exited with status 3"):
            for _ in range(20):
                src.read()
    finally:
        src.close()


def test_a_missing_program_is_a_source_error(tmp_path):
    src = source(tmp_path, "/nonexistent/rpicam-vid -t 0", "mjpeg")
    with pytest.raises(SourceError, match="cannot start '/nonexistent/rpicam-vid'"):
        src.open()


def test_silence_longer_than_read_timeout_restarts(tmp_path):
    src = source(tmp_path, "sleep 30", "mjpeg", read_timeout=1.0)
    src.open()
    pid = src._child.pid  # noqa: SLF001 - white-box: the child process to watch
    started = time.monotonic()
    try:
        with pytest.raises(SourceError, match="no complete mjpeg unit for 1s"):
            while time.monotonic() - started < 10:
                src.read()
    finally:
        src.close()
    assert not Path(f"/proc/{pid}").exists()  # close() reaped it


def test_stderr_goes_to_the_log_rate_limited(tmp_path, caplog):
    flood = "for i in $(seq 1 200); do echo \"line $i\" >&2; done; exec sleep 30"
    src = source(tmp_path, ["sh", "-c", flood], "mjpeg", read_timeout=30)
    with caplog.at_level(logging.WARNING, logger="edge_runtime.sources.process"):
        src.open()
        deadline = time.monotonic() + 5
        while "line 20" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        src.close()
    logged = [r.getMessage() for r in caplog.records if "line " in r.getMessage()]
    assert logged[0] == "cmd:sh: line 1" and "cmd:sh: line 20" in logged
    assert len(logged) == 20  # the other 180 were held back ...
    assert any("180 stderr lines held back" in r.getMessage() for r in caplog.records)  # ... and said


def test_child_dies_when_the_process_that_started_it_is_killed(tmp_path):
    """PR_SET_PDEATHSIG for real: a Python process opens a command source and is SIGKILLed."""
    import os
    import signal
    import subprocess

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from edge_runtime.sources.base import SourceContext\n"
        "from edge_runtime.sources.command_source import CommandOptions, CommandSource\n"
        "src = CommandSource(CommandOptions(type='command', command=('sleep 600',), format='mjpeg'),"
        " SourceContext(base_dir=Path('.'), pipeline='p'))\n"
        "src.open()\n"
        "print(src._child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        child = int(parent.stdout.readline())
        assert Path(f"/proc/{child}").exists()
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the command outlived the process that started it"
    finally:
        parent.kill()


def test_a_restart_stops_every_command_of_a_shell_pipeline(tmp_path):
    """A stalled `sh -c "a | b"` is stopped for its restart: the stop reaches the commands sh
    started too (its process group), not only sh, so none lives on as an orphan holding the
    camera or microphone the next run needs."""
    pid_file = tmp_path / "grandchild.pid"
    src = source(tmp_path, ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"], "mjpeg",
                 read_timeout=1.0)
    src.open()
    try:
        with pytest.raises(SourceError, match="no complete mjpeg unit"):
            started = time.monotonic()
            while time.monotonic() - started < 10:
                src.read()
        grandchild = int(pid_file.read_text())
        assert _alive(grandchild)
    finally:
        src.close()
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "a command of the pipeline outlived the stop"


@pytest.mark.skipif(shutil.which("setsid") is None, reason="setsid (util-linux) not installed")
def test_a_process_that_left_the_group_and_holds_the_pipes_does_not_hang_the_stop(tmp_path):
    """What the group signal cannot reach (a process that made a session of its own) keeps the
    output pipes open: the stop leaves their readers to end at EOF instead of blocking the
    source thread in close() (it used to hang there for as long as that process lived)."""
    import os
    import signal

    pid_file = tmp_path / "escaped.pid"
    src = source(tmp_path, ["sh", "-c", f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' & "
                            "wait"], "mjpeg", read_timeout=30)
    src.open()
    deadline = time.monotonic() + 5
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    escaped = int(pid_file.read_text())
    try:
        stopped = {}
        closer = threading.Thread(target=lambda: stopped.setdefault("done", src.close()),
                                  name="test-close", daemon=True)
        closer.start()
        closer.join(15)
        assert not closer.is_alive(), "close() blocked on the pipes the escaped process holds"
    finally:
        os.kill(escaped, signal.SIGKILL)


def test_a_command_that_left_its_process_group_is_still_stopped(tmp_path):
    """A command that moves itself into another process group has no group of its own to
    signal: the stop signals the command itself (without that it waited for it forever)."""
    import os
    import signal

    leave = ("import os, time; os.setpgid(0, os.getpgid(os.getppid())); print('moved', flush=True); "
             "time.sleep(300)")
    src = source(tmp_path, [sys.executable, "-c", leave], "lines", columns=("x",), window=1,
                 read_timeout=30)
    src.open()
    pid = src._child.pid  # noqa: SLF001 - white-box: the child process to watch
    try:
        deadline = time.monotonic() + 10
        while os.getpgid(pid) != os.getpgid(0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.getpgid(pid) == os.getpgid(0)
        closer = threading.Thread(target=src.close, name="test-close", daemon=True)
        closer.start()
        closer.join(15)
        assert not closer.is_alive(), "close() waited for a command it never signalled"
        assert not _alive(pid)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running and not a zombie (an orphan is reaped by init; a zombie is already dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"



def test_ctrl_c_reaches_the_daemon_not_the_command(tmp_path, mosquitto, subscribe):
    """Ctrl-C in a terminal signals the foreground process group. The command runs in a group of
    its own, so only the daemon gets SIGINT and stops the child itself: the child never sees
    SIGINT, and its end is no "source failed ... retrying" and no `source_failures`."""
    import json
    import os
    import signal
    import subprocess

    from conftest import VIBRATION_MODEL, daemon_env, wait_until, write_config

    marker = tmp_path / "child-got-sigint"
    child = (f"trap 'echo INT > {marker}; exit 130' INT; "
             "while :; do echo 0.1,0.2,0.3; sleep 0.01; done")
    config = write_config(tmp_path / "c.toml", mosquitto, [{
        "name": "lines",
        "source": {"type": "command", "format": "lines", "columns": ["ax", "ay", "az"],
                   "command": ["sh", "-c", child]},
        "model": {"path": str(VIBRATION_MODEL), "threads": 1}}], stats={"interval": 60.0})
    sub = subscribe("edge/test-pi/#")
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", "--config",
                                   str(config)], stdout=out, stderr=subprocess.STDOUT,
                                  env=daemon_env(), start_new_session=True)
    try:
        wait_until(lambda: len(sub.on("edge/test-pi/lines/result")) >= 3, 30)
        os.killpg(daemon.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert daemon.wait(30) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
    text = log.read_text()
    assert "received SIGINT" in text
    assert not marker.exists(), "the command got the terminal's SIGINT"
    assert "source failed" not in text, text
    final = wait_until(lambda: [s for s in sub.json_on("edge/test-pi/stats")
                                if s["pipelines"]["lines"]["state"] == "stopped"], 10)
    assert final[-1]["pipelines"]["lines"]["source_failures"] == 0, json.dumps(final[-1])


@pytest.mark.parametrize("command, message", [
    ("ffmpeg -i /dev/video0 -f mjpeg - | cat", "'|' is shell syntax"),
    ("arecord -q -t raw 2>/dev/null", "'2>/dev/null' is shell syntax"),
    ("ffmpeg -i $HOME/in.mp4 -f mjpeg -", "'$HOME/in.mp4' is shell syntax"),
    ("ffmpeg -i 'my video.mp4 -f mjpeg -", "cannot split"),  # ran into a traceback at start
    ("  ", "the command is empty"),
    ([], "the command is empty"),
])
def test_a_command_a_shell_would_need_is_a_config_error(tmp_path, command, message):
    """The command runs without a shell: what only a shell understands is refused when the config
    is read (check, run), naming the key, instead of a program restarted forever on arguments
    like "|" (or, for an unbalanced quote, a traceback when the daemon starts)."""
    from conftest import DIGITS_INT8, write_config
    from edge_runtime.app_config import load_config
    from edge_runtime.config.typed import ConfigError

    config = write_config(tmp_path / "c.toml", None, [{
        "name": "cam", "source": {"type": "command", "format": "mjpeg", "command": command},
        "model": {"path": str(DIGITS_INT8)}}])
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert error.value.key == "pipelines[0].source.command" and message in str(error.value)


def test_shell_characters_inside_an_argument_are_fine(tmp_path):
    from conftest import DIGITS_INT8, write_config
    from edge_runtime.app_config import load_config

    for command in ("ffmpeg -i in.mp4 -vf 'select=eq(n\\,0)|gt(n\\,9)' -f mjpeg -",
                    ["sh", "-c", "ffmpeg -i in.mp4 -f mjpeg - 2>/dev/null | cat"]):
        config = write_config(tmp_path / "c.toml", None, [{
            "name": "cam", "source": {"type": "command", "format": "mjpeg", "command": command},
            "model": {"path": str(DIGITS_INT8)}}])
        assert load_config(config).pipelines[0].source.command
