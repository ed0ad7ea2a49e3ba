"""The classic MLP autoencoder (784-256-128-64 generalised: input -> hidden... -> latent)."""

from __future__ import annotations

from medae.models.base import MlpBase


class MlpAutoencoder(MlpBase):
    """Plain reconstruction objective; see :class:`medae.models.config.MlpConfig`.

    >>> import torch
    >>> from medae.models.config import MlpConfig, Shape
    >>> m = MlpAutoencoder(MlpConfig(hidden=(8,), latent_dim=2), Shape(input_dim=4, target_dim=4))
    >>> tuple(m.encode(torch.zeros(3, 4)).shape), tuple(m(torch.zeros(3, 4)).shape)
    ((3, 2), (3, 4))
    """
