"""Sampling helpers, image grids a person can read, and training curves."""

from __future__ import annotations

import csv
import math
import os
from typing import List, Optional, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid

LABEL_FONT_SIZE = 14
"""Pixel size of the labels that :func:`save_grid` writes beside and above a grid."""

_CURVE_LABELS = {"nelbo": ("-ELBO", "nats per image"), "bpd": ("bits/dim", "bits/dim")}


@torch.no_grad()
def gibbs_chain(vae, x: Tensor, steps: int) -> List[Tensor]:
    """The Markov chain ``z ~ q(z|x)``, ``x ~ p(x|z)`` from preprocessed observations ``x``
    (Zhao et al.'s sampler for unregularized models); returns the ``steps`` states as images."""
    states = []
    for _ in range(steps):
        x = vae.likelihood(vae.posterior(x).sample()).sample()
        states.append(vae.to_image(x))
    return states


def save_grid(images: Tensor, path: str, nrow: int = 8, *,
              row_labels: Optional[Sequence[str]] = None,
              column_labels: Optional[Sequence[str]] = None, title: Optional[str] = None,
              min_width: int = 400, padding: int = 2) -> str:
    """Save ``(N, C, H, W)`` images in ``[0, 1]`` as a PNG grid that is readable at 100% zoom.

    The grid (``torchvision.utils.make_grid``, ``nrow`` images per row, grey separators) is
    enlarged by the smallest whole factor that makes it at least ``min_width`` pixels wide,
    with nearest-neighbour scaling so that pixels stay sharp. ``row_labels`` (one per grid
    row) are written on the left, ``column_labels`` (one per column, ``""`` for none) above,
    ``title`` on top. Returns ``path``.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> path = os.path.join(tempfile.mkdtemp(), "grid.png")
        >>> save_grid(torch.rand(16, 1, 8, 8), path, nrow=8,
        ...           row_labels=["input", "reconstruction"]) == path
        True
        >>> Image.open(path).width >= 400
        True
    """
    rows = math.ceil(len(images) / nrow)
    for name, labels, count in (("row_labels", row_labels, rows),
                                ("column_labels", column_labels, min(nrow, len(images)))):
        if labels is not None and len(labels) != count:
            raise ValueError(f"{name}: {len(labels)} labels for {count} grid "
                             f"{name.split('_')[0]}s ({len(images)} images, nrow={nrow})")
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=padding,
                     pad_value=0.5)
    scale = max(1, math.ceil(min_width / grid.shape[-1]))
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)  # rounded, as save_image
    picture = to_pil_image(pixels).resize((grid.shape[-1] * scale, grid.shape[-2] * scale),
                                        Image.NEAREST)
    if row_labels or column_labels or title:
        cell = ((images.shape[-2] + padding) * scale, (images.shape[-1] + padding) * scale)
        picture = _with_labels(picture, cell, padding * scale, row_labels, column_labels, title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    picture.save(path)
    return path


def _with_labels(grid: Image.Image, cell, pad: int, row_labels, column_labels,
                 title) -> Image.Image:
    """``grid`` on a white canvas with row labels on its left and column labels and a title
    above it; ``cell`` is the ``(height, width)`` in pixels of one image plus its separator."""
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)
    line = LABEL_FONT_SIZE + 8
    left = max((font.getbbox(s)[2] for s in row_labels or [""]), default=0)
    left = left + 10 if row_labels else 0
    top = line * (bool(title) + bool(column_labels))
    canvas = Image.new("RGB", (left + grid.width, top + grid.height), "white")
    canvas.paste(grid, (left, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((left + grid.width / 2, line / 2), title, fill="black", font=font, anchor="mm")
    for i, label in enumerate(row_labels or []):
        y = top + pad + i * cell[0] + (cell[0] - pad) / 2
        draw.text((left - 6, y), label, fill="black", font=font, anchor="rm")
    for j, label in enumerate(column_labels or []):
        x = left + pad + j * cell[1] + (cell[1] - pad) / 2
        draw.text((x, top - line / 2), label, fill="black", font=font, anchor="mm")
    return canvas


def plot_training_curve(metrics_csv: str, path: Optional[str] = None, *,
                        metric: str = "nelbo", title: Optional[str] = None,
                        train_label: Optional[str] = None) -> str:
    """Plot the train and test loss of a run against optimizer steps, from its ``metrics.csv``.

    ``metric`` is ``"nelbo"`` (the ``train_nelbo`` / ``test_nelbo`` columns that
    :func:`flowvae.train.fit` writes, nats per image) or ``"bpd"``; a run without a test set
    shows the train curve only; of a CSV that several fresh runs appended to, the newest run is
    plotted. ``train_label`` names the training curve (default ``"train -ELBO"``); say what
    was optimized, e.g. ``"training objective (free bits)"``. Writes a PNG to ``path``
    (default: ``training_curve.png`` beside the CSV) and returns the path. Needs matplotlib
    (``pip install "flowvae[examples]"``), which is imported only here.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError('plot_training_curve needs matplotlib: pip install "flowvae[examples]"'
                          ) from None
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{metrics_csv} has no rows to plot")
    rows = _newest_run(rows)
    path = path or os.path.join(os.path.dirname(os.path.abspath(metrics_csv)),
                                "training_curve.png")
    figure = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    axes = figure.subplots()
    name, unit = _CURVE_LABELS.get(metric, (metric, metric))
    labels = {"train": train_label or f"train {name}", "test": f"test {name}"}
    for split in ("train", "test"):
        points = [(int(r["step"]), float(r[f"{split}_{metric}"])) for r in rows
                  if r.get(f"{split}_{metric}") not in (None, "")]
        if points:
            axes.plot(*zip(*points), marker="o", markersize=3, label=labels[split])
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("optimizer steps")
    axes.set_ylabel(unit)
    axes.set_title(title or os.path.basename(os.path.dirname(os.path.abspath(metrics_csv))))
    axes.grid(alpha=0.3)
    axes.legend()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path


def _newest_run(rows: List[dict]) -> List[dict]:
    """The rows of the last run: ``fit`` appends, and a fresh run in an old folder starts
    again at a step no larger than the previous row's."""
    restarts = [i for i in range(1, len(rows)) if int(rows[i]["step"]) <= int(rows[i - 1]["step"])]
    return rows[restarts[-1]:] if restarts else rows
