"""A :class:`~flowvae.train.Callback` that logs :func:`~flowvae.train.fit` to TensorBoard.

``fit(..., callbacks=[TensorBoard("runs/vapnev/tensorboard")])``, then
``tensorboard --logdir runs``: every metric of ``metrics.jsonl`` as a scalar against the
optimizer step, and grids of samples and reconstructions as images. The event files are
written by PyTorch's own :class:`torch.utils.tensorboard.SummaryWriter` (the ``tensorboard``
package, which nflows already requires).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, Optional

import torch
from torchvision.utils import make_grid

from flowvae.train.callbacks import Callback

if TYPE_CHECKING:  # pragma: no cover
    from flowvae.train.loop import TrainingRun

__all__ = ["TensorBoard"]


class TensorBoard(Callback):
    """Writes each epoch's metrics row and, every ``images_every`` epochs, image grids to
    TensorBoard event files in ``log_dir``.

    Scalars: every number of the row ``fit`` records (``train_nelbo``, ``test_bpd``,
    ``test_rate_z``, ... with the names of ``metrics.jsonl``; nats per image, bits/dim,
    seconds) at global step ``row["step"]``, the optimizer steps taken so far. Images (rank 0,
    every ``images_every``-th epoch, and the last): ``samples``, ``num_images`` draws of
    ``module.generate`` at ``temperature``, and ``reconstructions``, the first ``num_images``
    test images (training images without a test set) above their
    ``module.reconstruct``; pixels in ``[0, 1]``. A model without ``generate`` or
    ``reconstruct`` (``NotImplementedError``) gets the scalars alone. A resumed run appends
    to the same folder.

    Args:
        log_dir: folder of the event files, e.g. ``out_dir/tensorboard``.
        images_every: epochs between image grids (0: no images).
        num_images: images per grid.
        temperature: sampling temperature of ``samples`` (and of reconstructions).

    Example:
        >>> import tempfile
        >>> from flowvae.data import load_dataset
        >>> from flowvae.models import VAE
        >>> from flowvae.train import fit
        >>> digits = load_dataset("digits", "train").images[:64]
        >>> log_dir = tempfile.mkdtemp()
        >>> history = fit(VAE((1, 8, 8), latent_dim=2, hidden=8), digits, epochs=1,
        ...               max_steps_per_epoch=1, progress=False, device="cpu",
        ...               callbacks=[TensorBoard(log_dir, num_images=4)])
    """

    def __init__(self, log_dir: str, images_every: int = 1, num_images: int = 16,
                 temperature: float = 1.0):
        if images_every < 0 or num_images < 1:
            raise ValueError(f"TensorBoard: images_every must be >= 0 and num_images >= 1, "
                             f"got {images_every} and {num_images}")
        self.log_dir = log_dir
        self.images_every = images_every
        self.num_images = num_images
        self.temperature = temperature
        self.writer = None

    def on_start(self, run: TrainingRun) -> None:
        if run.rank == 0:
            from torch.utils.tensorboard import SummaryWriter  # loads tensorboard: only here

            self.writer = SummaryWriter(self.log_dir)

    def on_epoch(self, run: TrainingRun, row: Dict[str, float]) -> None:
        if self.writer is None:
            return
        step = int(row["step"])
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        epoch = int(row["epoch"])
        last = epoch >= run.config.epochs
        if self.images_every and (epoch % self.images_every == 0 or last):
            self.write_images(run, step)
        self.writer.flush()

    @torch.no_grad()
    def write_images(self, run: TrainingRun, step: int) -> None:
        """The ``samples`` and ``reconstructions`` grids of ``run.module`` at ``step``."""
        module, n = run.module, self.num_images
        was_training = module.training
        module.eval()
        try:
            samples = _images(module.generate(n, temperature=self.temperature))
            self.writer.add_image("samples", make_grid(samples, nrow=_columns(n)), step)
            x = module.preprocess(_source(run)[:n].to(run.device))
            pairs = torch.cat([_images(module.to_image(x)), _images(module.reconstruct(x))])
            self.writer.add_image("reconstructions", make_grid(pairs, nrow=len(x)), step)
        except NotImplementedError:  # a model without a latent or without generate
            pass
        finally:
            module.train(was_training)

    def close(self) -> None:
        """Flush and close the event file (``fit`` leaves it open for a resumed run)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _source(run: TrainingRun):
    images: Optional[torch.Tensor] = getattr(run, "test_images", None)
    return images if images is not None else run.images


def _images(x) -> torch.Tensor:
    """A batch of images in ``[0, 1]``, ``(B, C, H, W)`` on the CPU (a list: its last)."""
    if isinstance(x, (list, tuple)):  # a sequential model's steps: the final images
        x = x[-1]
    return x.detach().float().clamp(0, 1).cpu()


def _columns(n: int) -> int:
    return max(1, int(math.sqrt(n)))
