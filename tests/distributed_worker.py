"""Run `fit` in WORLD processes (gloo, loopback) or in one; save each rank's weights.

Used by tests/test_distributed.py:
``python distributed_worker.py OUT WORLD PORT EPOCHS [--resume] [--actnorm]``.
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from flowvae.data import load_dataset
from flowvae.models import VAE
from flowvae.train import fit

SETTINGS = dict(batch_size=16, progress=False, seed=0, lr=1e-2)


def model_and_data(actnorm=False):
    torch.manual_seed(0)
    # binary data and a deterministic guide: no sampling noise, so one process and many
    # must agree to rounding
    data = (load_dataset("digits", "train").images[:64] > 127).to(torch.uint8)
    if actnorm:  # a flow prior whose ActNorms are initialised on the first batch
        return VAE((1, 8, 8), latent_dim=2, hidden=16, guide="delta", likelihood="bernoulli",
                   likelihood_kwargs=dict(data_levels=2),
                   prior="flow", prior_kwargs=dict(actnorm=True, num_couplings=2,
                                                   hidden_features=8)), data
    return VAE((1, 8, 8), latent_dim=2, hidden=16, guide="delta", likelihood="bernoulli",
               likelihood_kwargs=dict(data_levels=2)), data


def run(rank, world, port, out, epochs, resume, actnorm):
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    model, data = model_and_data(actnorm)
    history = fit(model, data, epochs=epochs, out_dir=os.path.join(out, "run"), resume=resume,
                  **SETTINGS)
    torch.save({"state_dict": model.state_dict(), "history": history},
               os.path.join(out, f"world{world}-rank{rank}.pt"))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    out, world, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    epochs, resume, actnorm = int(sys.argv[4]), "--resume" in sys.argv, "--actnorm" in sys.argv
    if world == 1:
        run(0, 1, port, out, epochs, resume, actnorm)
    else:
        mp.spawn(run, args=(world, port, out, epochs, resume, actnorm), nprocs=world)
