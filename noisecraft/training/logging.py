"""Training logs: one JSON object per line (``log.jsonl``) and a loss-curve PNG (matplotlib's Agg renderer).

Named after what it holds; the standard library ``logging`` module is unaffected (absolute imports).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a JSONL log; a torn last line (process killed mid-write) is skipped."""
    records = []
    with open(path, encoding="utf-8") as file:
        for line in file:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class JsonlLogger:
    """Appends records to ``path``, one JSON object per line, flushed at once so a killed run keeps its log.

    ``resume_step``: continue an existing log, dropping records past that step (they belong to training the resumed
    run is about to redo); ``None`` starts a fresh log.
    """

    def __init__(self, path: str | os.PathLike, *, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None and self.path.exists():
            kept = [record for record in read_jsonl(self.path) if record.get("step", 0) <= resume_step]
        self.records: list[dict[str, Any]] = kept
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record``; numbers that JSON does not know (0-d tensors, numpy scalars) are written as floats."""
        line = json.dumps(record, default=float)
        self.records.append(json.loads(line))
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def smooth(values: Sequence[float], *, weight: float = 0.9) -> list[float]:
    """Debiased exponential moving average, ``s_t = weight * s_{t-1} + (1 - weight) * v_t`` divided by
    ``1 - weight^t`` (as in TensorBoard), so the first points are not pulled towards zero."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must lie in [0, 1), got {weight}")
    smoothed, running = [], 0.0
    for count, value in enumerate(values, start=1):
        running = weight * running + (1.0 - weight) * value
        smoothed.append(running / (1.0 - weight**count))
    return smoothed


def plot_loss_curve(records: Iterable[dict[str, Any]], path: str | os.PathLike, *,
                    smoothing: float | None = None) -> Path:
    """Write the loss against step (raw, faint, and smoothed) from log records that carry ``"loss"``.

    ``smoothing=None`` picks the EMA weight from the number of points (a window of ~1/20 of the run), so a short
    run's fast early drop is not drawn lagging by hundreds of steps.

    The PNG is written to a temporary file and moved into place, so a reader never sees half an image. The y-axis is
    logarithmic when every loss is positive, as diffusion losses span orders of magnitude early in training.
    """
    # The Agg canvas directly, not pyplot: no window, no global backend switch in the caller's session, works
    # headless. Imported lazily, so that loading weights through noisecraft.training does not import matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = [(r["step"], r["loss"]) for r in records if "loss" in r and math.isfinite(r["loss"])]
    path = Path(path)
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    if points:
        steps, losses = zip(*points)
        if smoothing is None:
            smoothing = round(min(0.99, max(0.0, 1.0 - 20.0 / len(losses))), 2)
        axes.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=1, label="loss")
        axes.plot(steps, smooth(losses, weight=smoothing), color="tab:blue", linewidth=2,
                  label=f"smoothed ({smoothing})")
        if min(losses) > 0:
            axes.set_yscale("log")
        axes.legend()
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path
