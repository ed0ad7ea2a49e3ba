"""Sparse autoencoder: L1 on the code, or KL divergence to a target mean activation rho."""

from __future__ import annotations

import torch
from torch import Tensor

from medae.models.base import MlpBase


def kl_sparsity(code: Tensor, rho: float) -> Tensor:
    """Sum over units of KL(rho || mean activation), activations in (0, 1).

    >>> float(kl_sparsity(torch.full((4, 3), 0.05), 0.05))
    0.0
    """
    rho_hat = code.mean(dim=0).clamp(1e-6, 1 - 1e-6)
    return (rho * torch.log(rho / rho_hat)
            + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


class SparseAutoencoder(MlpBase):
    """With ``penalty='kl'`` the code goes through a sigmoid so activations are rates.

    >>> from medae.models.config import Shape, SparseConfig
    >>> m = SparseAutoencoder(SparseConfig(hidden=(8,), latent_dim=2, penalty="kl"),
    ...                       Shape(input_dim=4, target_dim=4))
    >>> sorted(m.loss(torch.zeros(5, 4))[1])
    ['recon', 'sparsity']
    """

    def code(self, xn: Tensor) -> Tensor:
        z = self.encoder(xn)
        return torch.sigmoid(z) if self.config.penalty == "kl" else z

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        xn, target, weight = self.prepare(x)
        z = self.code(xn)
        rec = self.recon_loss(self.decode(z), target, weight)
        if self.config.penalty == "kl":
            penalty = kl_sparsity(z, self.config.rho)
        else:
            penalty = z.abs().sum(dim=1).mean()
        return rec + self.config.weight * penalty, {"recon": rec.detach(),
                                                    "sparsity": penalty.detach()}
