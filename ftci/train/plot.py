"""loss.png: training and validation loss against the optimizer step, from metrics.jsonl."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from ftci.io import atomic_write_bytes


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every record of a metrics.jsonl (see `callbacks.MetricsWriter`)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_loss(metrics_path: Path, out_path: Path) -> Path:
    """Draw the train and val loss curves into `out_path` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI runners; must precede pyplot
    from matplotlib import pyplot as plt

    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records
             if r.get("kind") == "train" and r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in records
           if r.get("kind") == "eval" and r.get("val_loss") is not None]
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        if train:
            axes.plot(*zip(*train, strict=True), label="train", linewidth=1.2)
        if val:
            axes.plot(*zip(*val, strict=True), label="val", marker="o", linewidth=1.5)
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("loss (assistant tokens)")
        axes.set_title("ftci training loss")
        axes.grid(alpha=0.3)
        if train or val:
            axes.legend()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(figure)
    atomic_write_bytes(out_path, buffer.getvalue())
    return out_path
