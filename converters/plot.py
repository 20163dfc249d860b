"""--plot: accuracy (or agreement) against latency, marker area by file size, one point per mode."""

from __future__ import annotations

import logging
from pathlib import Path

from converters.report import Report

logger = logging.getLogger(__name__)


def plot_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_report(report: Report, path: Path) -> bool:
    """Draw the chart into `path`; False (and a warning) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("--plot skipped: matplotlib is not installed "
                       "(pip install 'edge-runtime[plot]')")
        return False
    points = [m for m in report.modes if m.latency_ms is not None and m.size_bytes]
    use_accuracy = all(m.accuracy is not None for m in points) and bool(points)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    biggest = max((m.size_bytes or 0 for m in points), default=1)
    # One color per model (the one given, pruned, student), so a variant's modes read together.
    models = list(dict.fromkeys(m.variant for m in points))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for m in points:
        value = m.accuracy if use_accuracy else m.agreement
        y = 100.0 * value if value is not None else 0.0
        area = 60 + 600 * (m.size_bytes or 0) / biggest
        group = [p for p in points if p.variant == m.variant]
        color = colors[models.index(m.variant) % len(colors)]
        label = (m.variant or str(report.source.get("file"))) if m is group[0] else None
        axis.scatter(m.latency_ms, y, s=area, alpha=0.6, color=color, label=label)
        # Staggered within a model: its modes often sit on top of each other.
        axis.annotate(f"{m.mode} ({(m.size_bytes or 0) / 1024:.0f} KB)", (m.latency_ms, y),
                      textcoords="offset points", color=color,
                      xytext=(10, 14 - 11 * group.index(m)), fontsize=8)
    if len(models) > 1:
        axis.legend(fontsize=8, loc="best", markerscale=0.5)
    axis.set_xlabel("median invoke latency (ms)")
    axis.set_ylabel("top-1 accuracy (%)" if use_accuracy else "top-1 agreement with source (%)")
    what = "models and modes" if len(models) > 1 else "modes"
    axis.set_title(f"{report.source.get('file')}: {what} (marker area = file size)")
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
