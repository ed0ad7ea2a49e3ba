"""1-D convolutional autoencoder for single-channel waveform windows and heart beats."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medae.models.base import ACTIVATIONS, Autoencoder
from medae.models.refine import refine_codes


class ConvAutoencoder(Autoencoder):
    """Strided convolutions down to a dense code and transposed convolutions back up.

    The input is zero-padded to a multiple of 2^depth and the output cropped back, so any
    window or beat length works. ``linear_skip`` adds a linear encoder/decoder path beside the
    convolutions: on its own that path can learn PCA, so the non-linear part only has to add to
    it. With ``pca_init`` training starts from exactly PCA (:meth:`init_from_data`: linear path
    = principal subspace of the train rows, convolutional outputs zeroed), so what the
    convolutions learn is a correction on top of PCA rather than a replacement for it.
    With ``scale_equivariant`` the convolutional path sees each row at unit RMS and its output
    is scaled back (:meth:`conv_code`, :meth:`conv_decode`), so the whole model, like PCA,
    treats a beat twice as tall as twice the beat: a patient whose beats are taller or smaller
    than every train patient's is no longer outside the range the convolutions were fitted on.
    With ``refine_steps`` > 0, :meth:`encode` refines the code of each row by a few gradient
    steps on its own reconstruction error (:func:`medae.models.refine.refine_codes`).

    >>> import torch
    >>> from medae.models.config import Conv1dConfig, Shape
    >>> m = ConvAutoencoder(Conv1dConfig(channels=(4, 8), latent_dim=3),
    ...                     Shape(input_dim=50, target_dim=50, input_kind="waveform"))
    >>> tuple(m.encode(torch.zeros(2, 50)).shape), tuple(m(torch.zeros(2, 50)).shape)
    ((2, 3), (2, 50))
    """

    def __init__(self, config, shape):
        super().__init__(config, shape)
        k, act = config.kernel_size, ACTIVATIONS[config.activation]
        chans = [1, *config.channels]
        factor = 2 ** len(config.channels)
        self.length = shape.target_dim
        self.padded = -(-self.length // factor) * factor
        self.flat = chans[-1] * self.padded // factor
        down: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            down += [nn.Conv1d(a, b, k, stride=2, padding=k // 2), act()]
        self.down = nn.Sequential(*down, nn.Flatten())
        self.to_code = nn.Linear(self.flat, config.latent_dim)
        self.from_code = nn.Linear(config.latent_dim, self.flat)
        up: list[nn.Module] = []
        rev = chans[::-1]
        for i, (a, b) in enumerate(zip(rev[:-1], rev[1:], strict=True)):
            up.append(nn.ConvTranspose1d(a, b, k, stride=2, padding=k // 2, output_padding=1))
            if i < len(rev) - 2:
                up.append(act())
        self.up = nn.Sequential(*up)
        self.skip_in = nn.Linear(self.length, config.latent_dim) if config.linear_skip else None
        self.skip_out = nn.Linear(config.latent_dim, self.length) if config.linear_skip else None

    def param_groups(self, weight_decay: float) -> list[dict]:
        """With ``conv_weight_decay`` set, the convolutional path decays at that rate and the
        linear path at ``weight_decay``: a strong pull on the non-linear correction alone
        keeps it from fitting the train patients' morphology while PCA's path stays free."""
        decay = self.config.conv_weight_decay
        if decay is None:
            return super().param_groups(weight_decay)
        conv = {id(p) for m in (self.down, self.to_code, self.from_code, self.up)
                for p in m.parameters()}
        params = list(self.parameters())
        return [{"params": [p for p in params if id(p) in conv], "weight_decay": decay},
                {"params": [p for p in params if id(p) not in conv],
                 "weight_decay": weight_decay}]

    @torch.no_grad()
    def init_from_data(self, rows: Tensor, max_rows: int = 20000) -> None:
        """PCA of the (normalised) train rows into the linear path; conv outputs start at 0."""
        if not (self.config.pca_init and self.config.linear_skip):
            return
        xn = self.prepare(rows[:max_rows].to(self.shift.device))[0].double()
        mean = xn.mean(dim=0)
        _, _, vt = torch.linalg.svd(xn - mean, full_matrices=False)
        k = min(self.config.latent_dim, vt.shape[0])
        comps = vt[:k]
        self.skip_in.weight.zero_()
        self.skip_in.bias.zero_()
        self.skip_out.weight.zero_()
        self.skip_in.weight[:k] = comps.float()
        self.skip_in.bias[:k] = -(comps @ mean).float()
        self.skip_out.weight[:, :k] = comps.T.float()
        self.skip_out.bias.copy_(mean.float())
        for layer in (self.to_code, self.up[-1]):  # the non-linear path adds nothing at first
            layer.weight.zero_()
            layer.bias.zero_()

    def augment(self, xn: Tensor) -> Tensor:
        """Random gain and circular shift per row (training only; identity when both are 0)."""
        cfg = self.config
        if cfg.augment_gain > 0:
            gain = 1 + cfg.augment_gain * (2 * torch.rand(xn.shape[0], 1, device=xn.device) - 1)
            xn = xn * gain
        if cfg.augment_shift > 0:
            shift = torch.randint(-cfg.augment_shift, cfg.augment_shift + 1, (xn.shape[0], 1),
                                  device=xn.device)
            idx = (torch.arange(xn.shape[1], device=xn.device) - shift) % xn.shape[1]
            xn = torch.gather(xn, 1, idx)
        return xn

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        xn, _, weight = self.prepare(x)
        if self.training and weight is None:  # rows with gaps are left as they are
            xn = self.augment(xn)
        rec = self.recon_loss(self.decode(self.code(xn)), xn, weight)
        return rec, {"recon": rec.detach()}

    def encode(self, x: Tensor) -> Tensor:
        """The encoder's code, refined per row when ``refine_steps`` > 0 (then detached)."""
        xn, target, weight = self.prepare(x)
        z = self.code(xn)
        # getattr: models pickled before the option existed have no such config field
        steps = getattr(self.config, "refine_steps", 0)
        if steps == 0:
            return z
        return refine_codes(self.decode, z, target, weight, steps, self.config.refine_lr)

    def code(self, xn: Tensor) -> Tensor:
        z = self.conv_code(xn)
        return z if self.skip_in is None else z + self.skip_in(xn)

    def decode(self, z: Tensor) -> Tensor:
        out = self.conv_decode(z)
        return out if self.skip_out is None else out + self.skip_out(z)

    def conv_code(self, xn: Tensor) -> Tensor:
        """The convolutional path's share of the code (scaled per row if scale-equivariant)."""
        size = rms(xn) if self.config.scale_equivariant else None
        h = F.pad(xn if size is None else xn / size, (0, self.padded - self.length))
        z = self.to_code(self.down(h.unsqueeze(1)))
        return z if size is None else z * size

    def conv_decode(self, z: Tensor) -> Tensor:
        """The convolutional path's share of the reconstruction, from the whole code."""
        size = rms(z) if self.config.scale_equivariant else None
        h = self.from_code(z if size is None else z / size)
        out = self.up(h.view(z.shape[0], -1, self.padded // 2 ** len(self.config.channels)))
        out = out.squeeze(1)[:, : self.length]
        return out if size is None else out * size


def rms(rows: Tensor, floor: float = 1e-6) -> Tensor:
    """Root mean square of each row, as a column, floored so an all-zero row stays finite.

    >>> [round(v, 4) for v in rms(torch.tensor([[3.0, -3.0], [0.0, 0.0]])).flatten().tolist()]
    [3.0, 0.0]
    """
    return rows.pow(2).mean(dim=1, keepdim=True).sqrt() + floor
