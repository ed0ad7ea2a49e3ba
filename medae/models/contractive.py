"""Contractive autoencoder: penalise how much the code moves when the input moves."""

from __future__ import annotations

import torch
from torch import Tensor

from medae.models.base import MlpBase


def jacobian_frobenius(z: Tensor, x: Tensor, projections: int = 1) -> Tensor:
    """Unbiased estimate of mean ||dz/dx||_F^2: E_v ||J^T v||^2 with v ~ N(0, I).

    One extra backward pass per projection instead of one per latent unit (exact for a
    Jacobian of any depth in expectation; ``create_graph`` lets the penalty be trained).

    >>> x = torch.randn(64, 3, requires_grad=True)
    >>> _ = torch.manual_seed(0)
    >>> est = jacobian_frobenius(2 * x[:, :2], x, projections=200)  # exact: 4 + 4 = 8
    >>> 7.0 < float(est) < 9.0
    True
    """
    total = z.new_zeros(())
    for _ in range(projections):
        v = torch.randn_like(z)
        (g,) = torch.autograd.grad(z, x, v, create_graph=True)
        total = total + (g**2).sum(dim=1).mean()
    return total / projections


class ContractiveAutoencoder(MlpBase):
    """Reconstruction + ``weight`` x Jacobian penalty (computed only while training).

    >>> from medae.models.config import ContractiveConfig, Shape
    >>> m = ContractiveAutoencoder(ContractiveConfig(hidden=(8,), latent_dim=2),
    ...                            Shape(input_dim=4, target_dim=4))
    >>> sorted(m.loss(torch.randn(5, 4))[1])
    ['contractive', 'recon']
    """

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        xn, target, weight = self.prepare(x)
        if self.training:
            xn = xn.detach().requires_grad_(True)
        z = self.code(xn)
        rec = self.recon_loss(self.decode(z), target, weight)
        penalty = jacobian_frobenius(z, xn, self.config.projections) if self.training \
            else z.new_zeros(())
        return rec + self.config.weight * penalty, {"recon": rec.detach(),
                                                    "contractive": penalty.detach()}
