"""Sampling helpers and image grids."""

from __future__ import annotations

import os
from typing import List

import torch
from torch import Tensor
from torchvision.utils import save_image


@torch.no_grad()
def gibbs_chain(vae, x: Tensor, steps: int) -> List[Tensor]:
    """The Markov chain ``z ~ q(z|x)``, ``x ~ p(x|z)`` from preprocessed observations ``x``
    (Zhao et al.'s sampler for unregularized models); returns the ``steps`` states as images."""
    states = []
    for _ in range(steps):
        x = vae.likelihood(vae.posterior(x).sample()).sample()
        states.append(vae.to_image(x))
    return states


def save_grid(images: Tensor, path: str, nrow: int = 8) -> str:
    """Save ``(N, C, H, W)`` images in ``[0, 1]`` as a PNG grid (``torchvision.utils``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_image(images.detach().float().cpu().clamp(0, 1), path, nrow=nrow, padding=1)
    return path
