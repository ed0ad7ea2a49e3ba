"""Encoder-side refinement: never worse per row, deterministic, batch-free, inference-safe."""

from __future__ import annotations

import pytest
import torch

from medae.models.build import build_model
from medae.models.config import ModelChoice
from medae.models.refine import AdamState, row_errors
from tests.models.test_models import WAVE_SHAPE, wave_rows


def conv(steps: int):
    """A small conv AE with random (non-linear) weights; the seed makes it the same each time."""
    torch.manual_seed(0)
    config = ModelChoice.validate_python({"kind": "conv1d", "channels": [4, 8], "latent_dim": 4,
                                          "pca_init": False, "scale_equivariant": True,
                                          "refine_steps": steps, "refine_lr": 0.05})
    return build_model(config, WAVE_SHAPE).eval()


@pytest.fixture(scope="module")
def rows():
    return torch.from_numpy(wave_rows(64, seed=3))


def errors(model, rows, z):
    with torch.inference_mode():
        return row_errors(model.decode(z), model.prepare(rows)[1], None)


def test_refinement_never_increases_a_rows_error_and_lowers_the_total(rows):
    plain, refined = conv(0), conv(20)
    with torch.inference_mode():  # as evaluation and export call it
        z0, z = plain.encode(rows), refined.encode(rows)
    before, after = errors(plain, rows, z0), errors(refined, rows, z)
    assert bool((after <= before).all())
    assert float(after.sum()) < 0.9 * float(before.sum())
    assert not z.requires_grad and not any(p.grad is not None for p in refined.parameters())


def test_refinement_is_deterministic_and_independent_of_batching(rows):
    model = conv(10)
    with torch.inference_mode():
        whole = model.encode(rows)
        again = model.encode(rows)
        halves = torch.cat([model.encode(rows[:20]), model.encode(rows[20:])])
    assert torch.equal(whole, again)
    assert float((halves - whole).abs().max()) < 1e-5


def test_refinement_works_outside_inference_mode_and_forward_uses_it(rows):
    model = conv(10)
    z = model.encode(rows)  # grad mode on: still a plain, detached tensor
    assert not z.requires_grad
    with torch.no_grad():
        assert torch.allclose(model(rows), model.denormalise(model.decode(z)), atol=1e-6)


def test_refinement_needs_a_mean_squared_error_objective():
    with pytest.raises(ValueError, match="refine_steps > 0 needs recon_loss: mse"):
        ModelChoice.validate_python({"kind": "conv1d", "recon_loss": "bce", "refine_steps": 5})


def test_refinement_is_thread_safe(rows):
    """Export encodes files on several threads at once with one shared model."""
    from concurrent.futures import ThreadPoolExecutor

    model = conv(10)

    def encode(part):
        with torch.inference_mode():
            return model.encode(part)

    parts = [rows[i : i + 16] for i in range(0, len(rows), 16)]
    with ThreadPoolExecutor(4) as pool:
        together = torch.cat(list(pool.map(encode, parts)))
    alone = torch.cat([encode(p) for p in parts])
    assert torch.equal(together, alone)


def test_adam_state_takes_the_steps_torch_optim_adam_takes():

    torch.manual_seed(1)
    target = torch.randn(3, 5)
    mine, theirs = torch.zeros(3, 5), torch.zeros(3, 5, requires_grad=True)
    state, adam = AdamState(mine), torch.optim.Adam([theirs], lr=0.05)
    for _ in range(20):  # the same objective, so the same gradient sequence from equal points
        adam.zero_grad()
        ((theirs - target) ** 3).abs().sum().backward()
        mine -= state.update(3 * (mine - target) ** 2 * torch.sign(mine - target), 0.05)
        adam.step()
    assert torch.allclose(mine, theirs.detach(), atol=1e-6)
    assert not torch.allclose(mine, torch.zeros(3, 5))
