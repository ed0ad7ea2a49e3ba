"""What every autoencoder shares: input normalisation, the target/mask layout, the losses.

Each model is one small ``nn.Module`` with the same four methods:

- ``encode(x) -> z``: deterministic code (a VAE returns its mean), ``x`` in original units;
- ``decode(z) -> recon``: the target part, in the normalised space the loss works in;
- ``forward(x) -> recon``: reconstruction in original units (what a user compares with ``x``);
- ``loss(x) -> (loss, parts)``: the training objective and its named parts (``recon`` always).

The normalisation (``shift``/``scale`` buffers, fitted on the train split) lives inside the
module, so a logged model encodes raw inputs and carries its own statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medae.models.config import Shape

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def mlp(sizes: list[int], activation: str, last_activation: bool = False) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with ``activation`` between them.

    >>> mlp([4, 3, 2], "relu")
    Sequential(
      (0): Linear(in_features=4, out_features=3, bias=True)
      (1): ReLU()
      (2): Linear(in_features=3, out_features=2, bias=True)
    )
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def masked_mse(recon: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """Mean squared error over observed entries only (``weight`` 1 where observed).

    >>> r, t = torch.tensor([[1.0, 5.0]]), torch.tensor([[0.0, 0.0]])
    >>> float(masked_mse(r, t, torch.tensor([[1.0, 0.0]])))
    1.0
    """
    err = (recon - target) ** 2
    if weight is None:
        return err.mean()
    return (err * weight).sum() / weight.sum().clamp_min(1.0)


def masked_bce(logits: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """Binary cross-entropy (targets in [0, 1]) over observed entries, from logits.

    >>> round(float(masked_bce(torch.zeros(1, 2), torch.ones(1, 2), None)), 4)
    0.6931
    """
    err = F.binary_cross_entropy_with_logits(logits, target.clamp(0, 1), reduction="none")
    if weight is None:
        return err.mean()
    return (err * weight).sum() / weight.sum().clamp_min(1.0)


class Autoencoder(nn.Module):
    """Base class: subclasses build ``self.encoder`` / ``self.decoder`` (or override them)."""

    def __init__(self, config, shape: Shape):
        super().__init__()
        self.config, self.shape = config, shape
        self.input_kind = shape.input_kind
        # Normalisation fitted on the train split (see set_normalisation); identity by default.
        self.register_buffer("shift", torch.zeros(shape.input_dim))
        self.register_buffer("scale", torch.ones(shape.input_dim))
        # Optimiser steps taken: schedules inside the objective (KL annealing) read it, and
        # as a buffer it is checkpointed, so a resumed run continues the same schedule.
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def set_normalisation(self, shift: Tensor, scale: Tensor) -> None:
        self.shift.copy_(torch.as_tensor(shift).expand_as(self.shift))
        self.scale.copy_(torch.as_tensor(scale).expand_as(self.scale).clamp_min(1e-6))

    def init_from_data(self, rows: Tensor) -> None:
        """Data-dependent initialisation from train rows (none by default)."""

    def param_groups(self, weight_decay: float) -> list[dict]:
        """The optimiser's parameter groups: every parameter decays at ``weight_decay``
        (a model whose parts need different decay overrides this)."""
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]

    # -- data layout -----------------------------------------------------------------------
    def prepare(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Normalised input (non-finite -> 0), the target, and the observation weight."""
        xn = (x - self.shift) / self.scale
        target = xn[:, : self.shape.target_dim]
        finite = torch.isfinite(target)
        if self.shape.mask_offset is not None:
            start = self.shape.mask_offset
            weight = x[:, start : start + self.shape.target_dim] * finite
        else:
            weight = None if bool(finite.all()) else finite.to(x.dtype)
        xn = torch.nan_to_num(xn, nan=0.0, posinf=0.0, neginf=0.0)
        return xn, xn[:, : self.shape.target_dim], weight

    def recon_loss(self, out: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        if self.config.recon_loss == "bce":
            return masked_bce(out, target, weight)
        return masked_mse(out, target, weight)

    def denormalise(self, out: Tensor) -> Tensor:
        if self.config.recon_loss == "bce":
            out = torch.sigmoid(out)
        d = self.shape.target_dim
        return out * self.scale[:d] + self.shift[:d]

    # -- the interface ---------------------------------------------------------------------
    def code(self, xn: Tensor) -> Tensor:
        """Code of a normalised input (subclasses with a stochastic code override this)."""
        return self.encoder(xn)

    def encode(self, x: Tensor) -> Tensor:
        return self.code(self.prepare(x)[0])

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.denormalise(self.decode(self.encode(x)))

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        xn, target, weight = self.prepare(x)
        rec = self.recon_loss(self.decode(self.code(xn)), target, weight)
        return rec, {"recon": rec.detach()}


class MlpBase(Autoencoder):
    """Symmetric MLP encoder/decoder: input -> hidden... -> latent -> ...hidden -> target."""

    def __init__(self, config, shape: Shape, code_dim: int | None = None):
        super().__init__(config, shape)
        hidden = list(config.hidden)
        self.encoder = mlp([shape.input_dim, *hidden, code_dim or config.latent_dim],
                           config.activation)
        self.decoder = mlp([config.latent_dim, *reversed(hidden), shape.target_dim],
                           config.activation)
