"""PNG charts of a job's metric series (job_metrics). matplotlib is imported here, lazily, with the Agg backend and
its object API (no pyplot global state), so charts can be drawn in worker threads and a server that never draws one
never imports it."""

from __future__ import annotations

import io

MAX_PNG_BYTES = 100_000
MAX_PANELS = 4


def line_chart(title: str, series: dict[str, tuple[list[int], list[float]]]) -> bytes:
    """One panel per metric (at most MAX_PANELS), value against epoch; under MAX_PNG_BYTES."""
    from matplotlib.figure import Figure

    names = list(series)[:MAX_PANELS]
    for dpi in (90, 70, 50):
        figure = Figure(figsize=(6.4, 1.2 + 1.6 * len(names)), dpi=dpi)
        axes = figure.subplots(len(names), 1, squeeze=False, sharex=True)[:, 0]
        for ax, name in zip(axes, names, strict=True):
            epochs, values = series[name]
            ax.plot(epochs, values, marker="o" if len(epochs) <= 30 else None, markersize=3, linewidth=1.2)
            ax.set_ylabel(name[:24], fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
        axes[-1].set_xlabel("epoch", fontsize=8)
        figure.suptitle(title[:80], fontsize=9)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        png = buffer.getvalue()
        if len(png) <= MAX_PNG_BYTES:
            return png
    return png
