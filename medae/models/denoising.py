"""Denoising autoencoder: reconstruct the clean input from a corrupted copy."""

from __future__ import annotations

from torch import Tensor

from medae.models.base import MlpBase
from medae.models.corruption import gaussian_noise, hide_observed, zero_entries


class DenoisingAutoencoder(MlpBase):
    """Corrupts only while training; encoding is the plain deterministic encoder.

    >>> import torch
    >>> from medae.models.config import DenoisingConfig, Shape
    >>> cfg = DenoisingConfig(hidden=(8,), latent_dim=2, corruption="gaussian")
    >>> m = DenoisingAutoencoder(cfg, Shape(input_dim=4, target_dim=4))
    >>> loss, parts = m.loss(torch.zeros(5, 4))
    >>> sorted(parts)
    ['recon']
    """

    def corrupt(self, xn: Tensor) -> Tensor:
        cfg, shape = self.config, self.shape
        if cfg.corruption == "gaussian":
            return gaussian_noise(xn, shape, cfg.noise_std)
        if shape.mask_offset is not None:
            return hide_observed(xn, shape, cfg.mask_prob)[0]
        return zero_entries(xn, shape, cfg.mask_prob)

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        xn, target, weight = self.prepare(x)
        noisy = self.corrupt(xn) if self.training else xn
        rec = self.recon_loss(self.decode(self.code(noisy)), target, weight)
        return rec, {"recon": rec.detach()}
