"""The names and defaults the ``flowvae`` command offers, declared without importing torch,
Pyro or any flowvae module that does, so that ``flowvae --help`` answers at once.

``tests/test_cli.py`` checks every table here against the library it mirrors (the
registries, the constructors' defaults, the datasets). The likelihoods are not listed: they
are the modules of :mod:`flowvae.parts.likelihoods` (one file each, registered under the
module's name), found by listing that folder.
"""

from __future__ import annotations

import os
from typing import Tuple

#: the models ``flowvae train`` builds
MODEL_NAMES = ("vae", "vapnev")
#: :data:`flowvae.parts.GUIDES`
GUIDE_NAMES = ("normal", "ar1", "flow", "delta", "planar")
#: :data:`flowvae.parts.PRIORS`
PRIOR_NAMES = ("normal", "flow")
#: encoder/decoder kinds of :class:`flowvae.models.VAE`
NETWORKS = ("mlp", "conv", "dense")
#: :data:`flowvae.parts.DEQUANTIZATIONS`
DEQUANTIZATIONS = ("uniform", "variational")
#: checkerboard partitions of :class:`flowvae.transforms.ConditionalRealNVP` (the names of
#: :data:`flowvae.transforms.partitions.PARTITIONS` a multi-scale flow's checkerboard takes)
CHECKERBOARDS = ("masked", "squeezed")
#: conditioners of :class:`flowvae.transforms.MultiscaleRealNVP` (``conditioner=``)
CONDITIONER_NAMES = ("multiplicative", "concat")
#: :data:`flowvae.data.DATASETS`
DATASET_NAMES = ("digits", "mnist", "fashion-mnist", "binarized-mnist", "cifar10", "celeba")
#: :data:`flowvae.data.ENV_VAR`, the dataset root's environment variable
DATA_ENV_VAR = "FLOWVAE_DATA"

#: constructor defaults per model (:class:`~flowvae.models.VAE`, :class:`~flowvae.models.VAPNEV`)
MODEL_DEFAULTS = {
    "vae": {"latent_dim": 32, "hidden": 256, "likelihood": "bernoulli", "network": "mlp",
            "guide": "normal", "prior": "normal"},
    "vapnev": {"latent_dim": 64, "hidden": 32, "guide": "normal", "prior": "normal",
               "dequantization": "uniform"},
}
#: The one table of RealNVP options and their defaults, per flow kind: the constructors of
#: :class:`~flowvae.transforms.VectorRealNVP` (``"vector"``) and
#: :class:`~flowvae.transforms.MultiscaleRealNVP` (``"image"``) take their defaults from it,
#: :class:`~flowvae.transforms.ConditionalRealNVP` refuses an option of the other kind by it,
#: and the CLI's flow flags read it (through :data:`FLOW_DEFAULTS`).
FLOW_OPTIONS = {
    "vector": {"num_couplings": 4, "hidden_features": 128, "num_layers": 2, "actnorm": False},
    "image": {"num_scales": 2, "num_checkerboard": 3, "num_channelwise": 3, "num_final": 4,
              "hidden_channels": 64, "num_blocks": 2, "conditioner": "multiplicative",
              "checkerboard": "masked", "actnorm": False},
}
#: the image-flow options the ``flowvae`` command offers as flags, with their defaults (a
#: selection of :data:`FLOW_OPTIONS`, not a copy)
FLOW_DEFAULTS = {name: FLOW_OPTIONS["image"][name]
                 for name in ("hidden_channels", "num_blocks", "checkerboard")}

_LIKELIHOOD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "parts",
                               "likelihoods")


def likelihood_names() -> Tuple[str, ...]:
    """The registered likelihoods' names: the modules of :mod:`flowvae.parts.likelihoods`
    (a file ``name.py`` registers the likelihood ``name``), sorted."""
    return tuple(sorted(file[:-3] for file in os.listdir(_LIKELIHOOD_DIR)
                        if file.endswith(".py") and not file.startswith("_")))
