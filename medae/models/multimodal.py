"""Multimodal VAE: an EHR window and a waveform window of the same stay and time.

Input row: ``[ehr row | waveform row | has_ehr | has_waveform]`` (a missing modality's part
may hold anything, NaN included). Each modality has its own Gaussian expert; they are fused by
a product of experts (with a unit-Gaussian prior expert, so a row with nothing present encodes
to the prior) or a mixture of experts. Only present modalities are reconstructed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from medae.models.base import Autoencoder, masked_mse, mlp
from medae.models.vae import annealed_beta, gaussian_kl


def product_of_experts(mus: Tensor, logvars: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """Fuse experts (E, n, L) present per row (E, n) with a N(0, 1) prior expert.

    >>> mu, lv = product_of_experts(torch.ones(1, 1, 2), torch.zeros(1, 1, 2), torch.ones(1, 1))
    >>> mu.tolist(), lv.exp().tolist()
    ([[0.5, 0.5]], [[0.5, 0.5]])
    """
    precision = torch.exp(-logvars) * present.unsqueeze(-1)
    total = 1.0 + precision.sum(dim=0)  # the prior contributes precision 1 and mean 0
    mu = (mus * precision).sum(dim=0) / total
    return mu, -torch.log(total)


class MultimodalVae(Autoencoder):
    """See the module docstring; ``shape.wave_dim`` is the waveform part's width.

    >>> from medae.models.config import MultimodalVaeConfig, Shape
    >>> shape = Shape(input_dim=6 + 5 + 2, target_dim=3, mask_offset=3, bins=1, wave_dim=5,
    ...               input_kind="multimodal")
    >>> m = MultimodalVae(MultimodalVaeConfig(hidden=(8,), latent_dim=2), shape).eval()
    >>> x = torch.zeros(2, 13); x[0, -2] = 1.0          # row 0: EHR only; row 1: nothing
    >>> tuple(m.encode(x).shape), m.encode(x)[1].tolist()
    ((2, 2), [0.0, 0.0])
    """

    def __init__(self, config, shape):
        super().__init__(config, shape)
        self.ehr_dim = shape.input_dim - shape.wave_dim - 2
        hidden, act, lat = list(config.hidden), config.activation, config.latent_dim
        self.ehr_encoder = mlp([self.ehr_dim, *hidden, 2 * lat], act)
        self.wave_encoder = mlp([shape.wave_dim, *hidden, 2 * lat], act)
        self.ehr_decoder = mlp([lat, *reversed(hidden), shape.target_dim], act)
        self.wave_decoder = mlp([lat, *reversed(hidden), shape.wave_dim], act)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(normalised ehr part, normalised wave part, wave finite mask, presence (2, n))."""
        xn = (x - self.shift) / self.scale
        ehr, wave = xn[:, : self.ehr_dim], xn[:, self.ehr_dim : self.ehr_dim + self.shape.wave_dim]
        present = x[:, -2:].T.clamp(0, 1)
        wave_seen = torch.isfinite(wave).to(x.dtype)
        clean = torch.nan_to_num
        return clean(ehr, nan=0.0), clean(wave, nan=0.0), wave_seen, present, x

    def posterior(self, ehr: Tensor, wave: Tensor, present: Tensor):
        mus, logvars = zip(*(enc(part).chunk(2, dim=1) for enc, part in
                             ((self.ehr_encoder, ehr), (self.wave_encoder, wave))), strict=True)
        mus, logvars = torch.stack(mus), torch.stack(logvars).clamp(-10, 10)
        return mus, logvars

    def fuse_mean(self, mus: Tensor, logvars: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        if self.config.fusion == "poe":
            return product_of_experts(mus, logvars, present)
        weights = present / present.sum(dim=0).clamp_min(1.0)
        mu = (mus * weights.unsqueeze(-1)).sum(dim=0)
        return mu, torch.log((logvars.exp() * weights.unsqueeze(-1)).sum(dim=0).clamp_min(1e-6))

    def code(self, xn: Tensor) -> Tensor:
        raise NotImplementedError("MultimodalVae encodes raw rows: use encode(x)")

    def encode(self, x: Tensor) -> Tensor:
        ehr, wave, _, present, _ = self.split(x)
        mus, logvars = self.posterior(ehr, wave, present)
        return self.fuse_mean(mus, logvars, present)[0]

    def decode(self, z: Tensor) -> Tensor:
        return torch.cat([self.ehr_decoder(z), self.wave_decoder(z)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.decode(self.encode(x))
        d, w = self.shape.target_dim, self.shape.wave_dim
        shift = torch.cat([self.shift[:d], self.shift[self.ehr_dim : self.ehr_dim + w]])
        scale = torch.cat([self.scale[:d], self.scale[self.ehr_dim : self.ehr_dim + w]])
        return out * scale + shift

    def sample(self, mus, logvars, present) -> tuple[Tensor, Tensor]:
        """A latent sample and the KL term for the configured fusion."""
        if self.config.fusion == "poe":
            mu, logvar = product_of_experts(mus, logvars, present)
            return mu + torch.randn_like(mu) * (0.5 * logvar).exp(), gaussian_kl(mu, logvar)
        # Mixture: each row samples one of its present experts uniformly (prior if none).
        weights = present + (present.sum(dim=0, keepdim=True) == 0).float() * 1e-6
        pick = torch.multinomial(weights.T, 1).squeeze(1)
        rows = torch.arange(mus.shape[1], device=mus.device)
        mu, logvar = mus[pick, rows], logvars[pick, rows]
        kl = torch.stack([gaussian_kl(mus[e], logvars[e]) for e in range(mus.shape[0])])
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp(), kl.mean()

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        ehr, wave, wave_seen, present, raw = self.split(x)
        mus, logvars = self.posterior(ehr, wave, present)
        if self.training:
            z, kl = self.sample(mus, logvars, present)
        else:
            z, kl = self.fuse_mean(mus, logvars, present)[0], x.new_zeros(())
        d, start = self.shape.target_dim, self.shape.mask_offset
        ehr_weight = present[0:1].T * (raw[:, start : start + d] if start is not None else 1.0)
        rec_ehr = masked_mse(self.ehr_decoder(z), ehr[:, :d], ehr_weight.expand(-1, d))
        rec_wave = masked_mse(self.wave_decoder(z), wave, present[1:2].T * wave_seen)
        rec = rec_ehr + rec_wave
        kl = kl / (d + self.shape.wave_dim)  # per entry, as in Vae
        return rec + annealed_beta(self) * kl, {"recon": rec.detach(), "kl": kl.detach(),
                                                "recon_ehr": rec_ehr.detach(),
                                                "recon_wave": rec_wave.detach()}
