"""The arm64 emulation run's result assertions (deploy/arm64/check_results.py) fail when they should.

The emulated run itself (deploy/test-arm64.sh) takes minutes and runs from .ci/run; these tests
prove on captures written here that its checks reject every way a run can go wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "deploy" / "arm64" / "check_results.py"
SCRIPT = REPO / "deploy" / "test-arm64.sh"
BASE = "edge/arm64-test"


@pytest.fixture()
def samples(tmp_path: Path) -> Path:
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, digit in enumerate([2, 0, 4]):
        (folder / f"{i:03d}_digit{digit}.png").write_bytes(b"")
    return folder


def result(seq: int, name: str, label: str, pipeline: str = "digits") -> str:
    payload = {"schema": 1, "device": "arm64-test", "pipeline": pipeline, "seq": seq,
               "source": {"frame": seq, "name": name}, "model": {"name": "digits_int8"},
               "classes": [{"index": int(label), "label": label, "score": 0.99}]}
    return f"{BASE}/{pipeline}/result {json.dumps(payload)}"


GOOD = [f"{BASE}/status online",
        result(0, "000_digit2.png", "2"),
        result(1, "001_digit0.png", "0"),
        result(2, "002_digit4.png", "4"),
        f"{BASE}/stats {{}}",
        f"{BASE}/status offline"]


def check(tmp_path: Path, samples: Path, lines: list[str], min_results: int = 3):
    capture = tmp_path / "capture.txt"
    capture.write_text("\n".join(lines) + "\n")
    return subprocess.run([sys.executable, str(CHECK), str(capture), str(samples), BASE, "digits",
                           str(min_results)], capture_output=True, text=True)


def test_a_complete_correct_run_passes(tmp_path: Path, samples: Path) -> None:
    done = check(tmp_path, samples, GOOD)
    assert done.returncode == 0, done.stderr
    assert "3 results (3 correct)" in done.stdout


@pytest.mark.parametrize(
    "lines, message",
    [
        (GOOD[:-1], "want online first and offline last"),
        (GOOD[1:], "want online first and offline last"),
        (GOOD[:2] + GOOD[4:], "1 results, want at least 3"),
        ([GOOD[0], GOOD[1], result(2, "001_digit0.png", "0"), GOOD[3], GOOD[5]], "seq values"),
        ([GOOD[0], result(0, "000_digit2.png", "7"), result(1, "001_digit0.png", "7"),
          GOOD[3], GOOD[5]], "top-1 accuracy 0.33"),
        ([GOOD[0], GOOD[1], GOOD[2], result(2, "999_digit4.png", "4"), GOOD[5]],
         "malformed result"),
    ],
    ids=["no-offline", "no-online", "too-few", "seq-gap", "wrong-answers", "unknown-image"],
)
def test_a_broken_run_fails(tmp_path: Path, samples: Path, lines: list[str], message: str) -> None:
    done = check(tmp_path, samples, lines)
    assert done.returncode == 1
    assert message in done.stderr


def test_an_unknown_runtime_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(SCRIPT), "--runtime", "tensorflow"], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin",
                                          "ARM64_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 1
    assert "unknown runtime: tensorflow" in done.stderr
    assert not (tmp_path / "cache").exists()
