"""Corruptions for denoising training and for the imputation evaluation (one implementation).

Hiding an observed EHR entry must look exactly like an entry that was never measured: its mask
goes to 0 and its value (and every later value that was forward-filled from it) is re-imputed
from the previous remaining observation in the window, or the train mean (0) when there is none.
"""

from __future__ import annotations

import torch
from torch import Tensor

from medae.models.config import Shape


def last_observed(mask: Tensor) -> Tensor:
    """Index of the last bin at or before each bin with ``mask`` 1 (-1 if none); (n, T, V).

    >>> last_observed(torch.tensor([[[0.], [1.], [0.]]])).flatten().tolist()
    [-1, 1, 1]
    """
    bins = torch.arange(mask.shape[1], device=mask.device).view(1, -1, 1)
    return torch.where(mask > 0, bins, -1).cummax(dim=1).values


def hide_observed(x: Tensor, shape: Shape, prob: float) -> tuple[Tensor, Tensor]:
    """Hide a ``prob`` share of observed target entries of EHR rows; returns (x', hidden).

    >>> s = Shape(input_dim=6, target_dim=3, mask_offset=3, bins=3)
    >>> x = torch.tensor([[1.0, 2.0, 2.0, 1.0, 1.0, 0.0]])  # bin 2 forward-filled from bin 1
    >>> _ = torch.manual_seed(0)
    >>> x2, hidden = hide_observed(x, s, 0.99)
    >>> x2.tolist(), hidden.int().tolist()
    ([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], [[1, 1, 0]])
    """
    d, start = shape.target_dim, shape.mask_offset
    assert start is not None, "hide_observed needs an EHR layout with a mask"
    bins, nvar = shape.bins, d // shape.bins
    values = x[:, :d].reshape(-1, bins, nvar)
    mask = x[:, start : start + d].reshape(-1, bins, nvar)
    hidden = (torch.rand(mask.shape, device=x.device) < prob) & (mask > 0)
    kept = mask * ~hidden
    before, after = last_observed(mask), last_observed(kept)
    refill = torch.gather(values, 1, after.clamp_min(0))
    refill = torch.where(after >= 0, refill, torch.zeros_like(refill))
    # Only entries whose forward-fill source changed are re-imputed; the rest keep the value
    # featurisation gave them (which may carry an observation from before the window).
    new_values = torch.where(before != after, refill, values)
    out = x.clone()
    out[:, :d] = new_values.reshape(-1, d)
    out[:, start : start + d] = kept.reshape(-1, d)
    return out, hidden.reshape(-1, d)


def gaussian_noise(x: Tensor, shape: Shape, std: float) -> Tensor:
    """Add N(0, std) noise to the target columns (masks and static columns stay clean)."""
    out = x.clone()
    out[:, : shape.target_dim] += std * torch.randn_like(out[:, : shape.target_dim])
    return out


def zero_entries(x: Tensor, shape: Shape, prob: float) -> Tensor:
    """Classic masking noise: set a ``prob`` share of target entries to 0 (the mean)."""
    out = x.clone()
    keep = torch.rand_like(out[:, : shape.target_dim]) >= prob
    out[:, : shape.target_dim] *= keep
    return out
