"""Encoder-side latent refinement (semi-amortised inference, Kim et al. 2018).

The encoder's code ``z0`` is a one-shot guess; for a morphology the encoder never saw it can be
far from the code the decoder would need. :func:`refine_codes` takes a fixed number of Adam
steps on each row's own reconstruction error with the decoder frozen, and returns, per row, the
best code it visited, so no row ever reconstructs worse than from ``z0``. It uses only the input
row and no randomness, so it is still a deterministic encoder; the rows are independent (the
objective is a sum of per-row errors and Adam's state is per coordinate), so the result does not
depend on how rows are batched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def row_errors(recon: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """Mean squared error of each row over its observed entries (``weight`` 1 where observed).

    >>> row_errors(torch.tensor([[1.0, 3.0], [0.0, 2.0]]), torch.zeros(2, 2), None).tolist()
    [5.0, 2.0]
    >>> row_errors(torch.tensor([[1.0, 3.0]]), torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    tensor([1.])
    """
    err = (recon - target) ** 2
    if weight is None:
        return err.mean(dim=1)
    return (err * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)


def refine_codes(decode: Callable[[Tensor], Tensor], z0: Tensor, target: Tensor,
                 weight: Tensor | None, steps: int, lr: float) -> Tensor:
    """``steps`` Adam steps on each row's ``row_errors(decode(z), target)`` from ``z0``.

    Returns the best code seen per row (detached). Works under ``torch.inference_mode()``:
    the tensors are cloned into normal tensors and gradients switched on locally. Only the code
    is differentiated (``torch.autograd.grad``), so the decoder's ``.grad`` is never touched and
    concurrent callers do not interfere.

    >>> decode = torch.nn.Linear(2, 3, bias=False).requires_grad_(False)
    >>> _ = decode.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    >>> with torch.inference_mode():
    ...     z = refine_codes(decode, torch.zeros(1, 2), torch.tensor([[1.0, -1.0, 0.0]]),
    ...                      None, steps=200, lr=0.05)
    >>> [round(v, 2) for v in z.flatten().tolist()]
    [1.0, -1.0]
    """
    if steps <= 0:
        return z0
    with torch.inference_mode(False), torch.enable_grad():
        target = target.detach().clone()
        weight = None if weight is None else weight.detach().clone()
        z = z0.detach().clone().requires_grad_(True)
        best, best_err = z.detach().clone(), None
        adam = AdamState(z)
        for step in range(steps + 1):
            err = row_errors(decode(z), target, weight)
            current = err.detach()
            better = torch.ones_like(current, dtype=torch.bool) if best_err is None \
                else current < best_err
            best = torch.where(better.unsqueeze(1), z.detach(), best)
            best_err = current if best_err is None else torch.where(better, current, best_err)
            if step == steps:  # the last evaluation only scores the final step
                break
            (grad,) = torch.autograd.grad(err.sum(), z)
            with torch.no_grad():
                z -= adam.update(grad, lr)
    return best


class AdamState:
    """Adam's per-coordinate moments (the formulas of ``torch.optim.Adam``, no weight decay).

    Written out because the first ``torch.optim`` step costs seconds of lazy imports, which
    every fresh encoding process would pay.

    >>> state = AdamState(torch.zeros(1, 2))
    >>> step = state.update(torch.tensor([[4.0, -0.5]]), lr=0.1)  # first step: lr * sign
    >>> [round(v, 6) for v in step.flatten().tolist()]
    [0.1, -0.1]
    """

    def __init__(self, like: Tensor, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.m, self.v = torch.zeros_like(like), torch.zeros_like(like)
        self.betas, self.eps, self.t = betas, eps, 0

    def update(self, grad: Tensor, lr: float) -> Tensor:
        """The step to subtract from the parameters for this gradient."""
        b1, b2 = self.betas
        self.t += 1
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v.sqrt() / (1 - b2**self.t) ** 0.5).add_(self.eps)
        return self.m / denom * (lr / (1 - b1**self.t))
