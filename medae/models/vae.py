"""Variational autoencoder and beta-VAE, with linear KL annealing."""

from __future__ import annotations

import torch
from torch import Tensor

from medae.models.base import Autoencoder, MlpBase


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent units, averaged over rows.

    >>> float(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)))
    0.0
    """
    return (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean()


def annealed_beta(model: Autoencoder) -> float:
    """beta ramps from 0 to ``config.beta`` over ``kl_anneal_steps`` optimiser steps."""
    cfg = model.config
    if cfg.kl_anneal_steps == 0:
        return cfg.beta
    return cfg.beta * min(1.0, int(model.steps) / cfg.kl_anneal_steps)


class Vae(MlpBase):
    """The encoder emits mean and log-variance; ``encode`` returns the mean (deterministic).

    >>> from medae.models.config import Shape, VaeConfig
    >>> m = Vae(VaeConfig(hidden=(8,), latent_dim=2), Shape(input_dim=4, target_dim=4))
    >>> _ = m.eval()
    >>> bool((m.encode(torch.ones(1, 4)) == m.encode(torch.ones(1, 4))).all())
    True
    """

    def __init__(self, config, shape):
        super().__init__(config, shape, code_dim=2 * config.latent_dim)

    def posterior(self, xn: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(xn).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)  # keeps exp(logvar) finite early in training

    def code(self, xn: Tensor) -> Tensor:
        return self.posterior(xn)[0]

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        xn, target, weight = self.prepare(x)
        mu, logvar = self.posterior(xn)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        rec = self.recon_loss(self.decode(z), target, weight)
        # Per target entry, like the mean reconstruction error, so beta means the same thing
        # for a 48-entry window and a 3000-sample one (beta=1 is then a true ELBO up to scale).
        kl = gaussian_kl(mu, logvar) / self.shape.target_dim
        return rec + annealed_beta(self) * kl, {"recon": rec.detach(), "kl": kl.detach()}
