"""The verification report: per-mode results, as JSON and as a table for the terminal."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.runtime_check import RuntimeCheck


@dataclass
class ModeReport:
    mode: str
    io_type: str
    status: str = "ok"  # ok | rejected (failed a check, not written) | failed | skipped
    message: str = ""
    # "" for the model given; else what was made from it ("pruned 50%", "student ...").
    variant: str = ""
    size_bytes: int | None = None
    gzip_bytes: int | None = None  # the file gzip -9: what a download or an OTA update costs
    accuracy: float | None = None
    agreement: float | None = None
    accuracy_drop: float | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    latency_ms: float | None = None
    latency_no_delegate_ms: float | None = None  # without XNNPACK (variant comparisons only)
    runtime_checks: list[RuntimeCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"mode": self.mode, "io_type": self.io_type, "status": self.status}
        for key in ("message", "variant", "size_bytes", "gzip_bytes", "accuracy", "agreement",
                    "accuracy_drop", "max_abs_diff", "mean_abs_diff", "latency_ms",
                    "latency_no_delegate_ms"):
            value = getattr(self, key)
            if value is not None and value != "":
                doc[key] = round(value, 6) if isinstance(value, float) else value
        if self.runtime_checks:
            doc["runtime_checks"] = [c.to_dict() for c in self.runtime_checks]
        return doc


@dataclass
class Report:
    source: dict[str, Any]
    input: dict[str, Any]
    task: str
    validation: dict[str, Any]
    calibration: dict[str, Any] | None
    converter: dict[str, Any]
    modes: list[ModeReport] = field(default_factory=list)
    output: str | None = None
    # More about how variants were made, e.g. {"pruning": {...}, "distillation": {...}}.
    sections: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "source": self.source,
            "input": self.input,
            "task": self.task,
            "validation": self.validation,
            "converter": self.converter,
            "modes": [m.to_dict() for m in self.modes],
        }
        if self.calibration:
            doc["calibration"] = self.calibration
        if self.output:
            doc["output"] = self.output
        doc.update(self.sections)
        return doc

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    def baseline(self) -> ModeReport | None:
        """The float32 result, which ratios are relative to."""
        return next((m for m in self.modes
                     if m.mode == "none" and not m.variant and m.size_bytes), None)

    def table(self) -> str:
        base = self.baseline()
        variants = any(m.variant for m in self.modes)
        no_delegate = any(m.latency_no_delegate_ms is not None for m in self.modes)
        headers = (["model"] if variants else []) + [
            "mode", "io", "size", "gzip", "size x", "accuracy", "agreement", "max|diff|",
            "latency", "latency x"] + (["no XNNPACK"] if no_delegate else []) + [
            "runtimes", "status"]
        rows = []
        for m in self.modes:
            size_ratio = _ratio(m.size_bytes, base.size_bytes if base else None)
            latency_ratio = _ratio(m.latency_ms, base.latency_ms if base else None)
            runtimes = ", ".join(c.summary() for c in m.runtime_checks) or "-"
            rows.append(([m.variant or self.source.get("file", "")] if variants else []) + [
                m.mode, m.io_type, _kb(m.size_bytes), _kb(m.gzip_bytes), size_ratio,
                _percent(m.accuracy), _percent(m.agreement),
                f"{m.max_abs_diff:.3g}" if m.max_abs_diff is not None else "-",
                _ms(m.latency_ms), latency_ratio,
            ] + ([_ms(m.latency_no_delegate_ms)] if no_delegate else []) + [
                runtimes, m.status if not m.message else f"{m.status}: {m.message}",
            ])
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                  for i, h in enumerate(headers)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        validation = self.validation
        head = [f"source: {self.source.get('file')} ({self.source.get('framework')}, "
                f"sha256 {str(self.source.get('sha256'))[:12]})",
                f"validation: {validation.get('origin')}"]
        if validation.get("reference_accuracy") is not None:
            head.append(f"source model accuracy: {validation['reference_accuracy']:.2%}")
        if validation.get("note"):
            head.append(f"note: {validation['note']}")
        checks = [c.line() for m in self.modes for c in m.runtime_checks if c.status != "ok"]
        tail = sorted(set(checks))
        return "\n".join(head + [""] + lines + ([""] + tail if tail else []))


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}"


def _kb(size: int | None) -> str:
    return f"{size / 1024:.1f} KB" if size else "-"


def _ms(value: float | None) -> str:
    return f"{value:.3f} ms" if value is not None else "-"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"
