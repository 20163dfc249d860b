"""Assert what the emulated daemon published, from a `mosquitto_sub -v` capture.

Run on the host by deploy/arm64/run-runtime.sh (stdlib only: the host needs no venv).
Usage: check_results.py CAPTURE SAMPLES_DIR PREFIX/DEVICE PIPELINE MIN_RESULTS

The digits samples carry their true class in the file name (`003_digit7.png`), so besides counting
results this checks that inference under emulation computes the right answers, not just any.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# The int8 model gets every bundled sample right on x86; a little slack for arm64 kernels whose
# rounding differs, none for a runtime that returns garbage.
MIN_ACCURACY = 0.9


def main(argv: list[str]) -> int:
    capture, samples_dir, base, pipeline = Path(argv[1]), Path(argv[2]), argv[3], argv[4]
    min_results = int(argv[5])
    samples = {p.name for p in samples_dir.iterdir() if p.suffix == ".png"}
    statuses: list[str] = []
    results: list[dict] = []
    for line in capture.read_text().splitlines():
        topic, _, payload = line.partition(" ")
        if topic == f"{base}/status":
            statuses.append(payload)
        elif topic == f"{base}/{pipeline}/result":
            results.append(json.loads(payload))

    errors: list[str] = []
    if not statuses or statuses[0] != "online" or statuses[-1] != "offline":
        errors.append(f"status sequence {statuses}: want online first and offline last")
    if len(results) < min_results:
        errors.append(f"{len(results)} results, want at least {min_results}")
    seqs = sorted(r.get("seq") for r in results)
    if seqs != list(range(len(results))):
        errors.append(f"seq values not 0..{len(results) - 1}: {seqs}")
    correct = 0
    for result in results:
        name = result["source"]["name"]
        truth = re.search(r"digit(\d)", name)
        if (result.get("pipeline") != pipeline or name not in samples or truth is None
                or not result.get("classes")):
            errors.append(f"malformed result: {result}")
            continue
        correct += result["classes"][0]["label"] == truth.group(1)
    accuracy = correct / max(len(results), 1)
    if accuracy < MIN_ACCURACY:
        errors.append(f"top-1 accuracy {accuracy:.2f} < {MIN_ACCURACY}")
    models = sorted({r.get("model", {}).get("name", "?") for r in results})
    print(f"{len(results)} results ({correct} correct), models {models}, status {statuses}")
    for error in errors:
        print(f"FAIL: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
