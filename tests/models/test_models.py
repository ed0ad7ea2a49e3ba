"""Every model of the family learns on tiny data, encodes deterministically, and honours masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medae.models.base import masked_mse
from medae.models.build import MODELS, build_model
from medae.models.config import ModelChoice, Shape
from medae.models.corruption import hide_observed
from medae.training.config import Optim
from medae.training.loop import fit

BINS, VARS, STATIC = 4, 3, 2
D = BINS * VARS


def ehr_rows(n: int = 192, seed: int = 0) -> np.ndarray:
    """[values | mask | static] rows with a per-row level to learn, 70% observed."""
    rng = np.random.default_rng(seed)
    values = (rng.normal(size=(n, 1, VARS)) + 0.1 * rng.normal(size=(n, BINS, VARS)))
    mask = (rng.random((n, D)) < 0.7).astype(np.float32)
    static = rng.normal(size=(n, STATIC))
    return np.concatenate([values.reshape(n, D), mask, static], axis=1).astype(np.float32)


def wave_rows(n: int = 192, length: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 6, length)[None]
    return np.sin(t * rng.uniform(0.5, 1.5, (n, 1)) + rng.uniform(0, 3, (n, 1))).astype(
        np.float32)


EHR_SHAPE = Shape(input_dim=2 * D + STATIC, target_dim=D, mask_offset=D, bins=BINS)
WAVE_SHAPE = Shape(input_dim=48, target_dim=48, input_kind="waveform")
MM_SHAPE = Shape(input_dim=2 * D + STATIC + 48 + 2, target_dim=D, mask_offset=D, bins=BINS,
                 wave_dim=48, input_kind="multimodal")


def multimodal_rows() -> np.ndarray:
    ehr, wave = ehr_rows(), wave_rows()
    present = np.ones((len(ehr), 2), np.float32)
    present[::3, 1] = 0  # a third of the rows have no waveform...
    wave[::3] = np.nan  # ...and garbage where it would be
    present[1::3, 0] = 0  # another third no EHR window
    return np.concatenate([ehr, wave, present], axis=1)


CASES = {
    "mlp": ({"kind": "mlp"}, EHR_SHAPE, ehr_rows),
    "denoising-masking": ({"kind": "denoising", "corruption": "masking"}, EHR_SHAPE, ehr_rows),
    "denoising-gaussian": ({"kind": "denoising", "corruption": "gaussian"}, EHR_SHAPE, ehr_rows),
    "sparse-l1": ({"kind": "sparse", "penalty": "l1"}, EHR_SHAPE, ehr_rows),
    "sparse-kl": ({"kind": "sparse", "penalty": "kl"}, EHR_SHAPE, ehr_rows),
    "contractive": ({"kind": "contractive"}, EHR_SHAPE, ehr_rows),
    "vae": ({"kind": "vae", "kl_anneal_steps": 10}, EHR_SHAPE, ehr_rows),
    "beta-vae": ({"kind": "vae", "beta": 4.0}, EHR_SHAPE, ehr_rows),
    "mlp-bce": ({"kind": "mlp", "recon_loss": "bce"}, WAVE_SHAPE,
                lambda: (wave_rows() + 1) / 2),
    "conv1d": ({"kind": "conv1d", "channels": [4, 8]}, WAVE_SHAPE, wave_rows),
    "conv1d-augment": ({"kind": "conv1d", "channels": [4, 8], "augment_gain": 0.2,
                        "augment_shift": 3}, WAVE_SHAPE, wave_rows),
    "conv1d-scale-equivariant": ({"kind": "conv1d", "channels": [4, 8],
                                  "scale_equivariant": True}, WAVE_SHAPE, wave_rows),
    "multimodal-poe": ({"kind": "multimodal_vae", "fusion": "poe"}, MM_SHAPE, multimodal_rows),
    "multimodal-moe": ({"kind": "multimodal_vae", "fusion": "moe"}, MM_SHAPE, multimodal_rows),
}


def make(config: dict, shape: Shape, seed: int = 0):
    torch.manual_seed(seed)
    sizes = {} if config["kind"] == "conv1d" else {"hidden": [32]}
    return build_model(ModelChoice.validate_python({**sizes, "latent_dim": 4, **config}), shape)


def test_every_kind_is_covered():
    assert {c[0]["kind"] for c in CASES.values()} == set(MODELS)


@pytest.mark.parametrize("case", CASES)
def test_model_trains_and_its_loss_decreases(case):
    config, shape, rows = CASES[case]
    data = rows()
    model = make(config, shape)
    result = fit(model, data[:160], data[160:], Optim(epochs=15, batch_size=32, lr=5e-3,
                                                      patience=10, device="cpu"))
    history = result.state.history
    assert history[-1]["train_recon"] < 0.9 * history[0]["train_recon"], history
    assert np.isfinite(history[-1]["tuning_loss"])
    z = model.encode(torch.from_numpy(data[:5]))
    assert z.shape == (5, 4)
    assert torch.equal(z, model.encode(torch.from_numpy(data[:5])))  # deterministic code
    assert model(torch.from_numpy(data[:5])).shape == (5, shape.target_dim + shape.wave_dim)


def test_masked_mse_ignores_unobserved_entries():
    recon = torch.tensor([[1.0, 100.0], [3.0, -50.0]])
    target = torch.zeros(2, 2)
    weight = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert float(masked_mse(recon, target, weight)) == pytest.approx((1 + 9) / 2)


def test_unobserved_inputs_do_not_change_the_loss():
    model = make({"kind": "mlp"}, WAVE_SHAPE).eval()
    x = torch.from_numpy(wave_rows(4))
    x[:, 10:20] = float("nan")  # unobserved samples are skipped by the loss, not propagated
    loss, _ = model.loss(x)
    assert torch.isfinite(loss)


def test_hide_observed_refills_from_the_previous_remaining_observation():
    # one variable over 4 bins: observed at bins 0 and 2; bins 1 and 3 forward-filled
    shape = Shape(input_dim=8, target_dim=4, mask_offset=4, bins=4)
    x = torch.tensor([[5.0, 5.0, 7.0, 7.0, 1.0, 0.0, 1.0, 0.0]]).repeat(2000, 1)
    torch.manual_seed(1)
    out, hidden = hide_observed(x, shape, 0.5)
    both = hidden[:, 0] & hidden[:, 2]
    only_second = ~hidden[:, 0] & hidden[:, 2]
    assert out[both].tolist()[0] == [0.0, 0.0, 0.0, 0.0, 0, 0, 0, 0]
    assert out[only_second].tolist()[0] == [5.0, 5.0, 5.0, 5.0, 1, 0, 0, 0]
    assert not hidden[:, [1, 3]].any()  # never hides what was not observed
    assert 0.45 < hidden[:, [0, 2]].float().mean() < 0.55


@pytest.mark.parametrize("fusion", ["poe", "moe"])
def test_multimodal_encodes_when_a_modality_is_missing(fusion):
    model = make({"kind": "multimodal_vae", "fusion": fusion}, MM_SHAPE).eval()
    rows = torch.from_numpy(multimodal_rows()[:6])
    ehr_only = rows.clone()
    ehr_only[:, -1] = 0
    scrambled = ehr_only.clone()
    scrambled[:, 2 * D + STATIC : -2] = torch.randn(6, 48)  # whatever sits in the missing part
    z = model.encode(ehr_only)
    assert torch.isfinite(z).all()
    assert torch.equal(z, model.encode(scrambled))
    assert not torch.equal(z, model.encode(rows[:, :].clone()))  # the waveform does count


def test_vae_kl_annealing_follows_the_step_counter():
    from medae.models.vae import annealed_beta

    model = make({"kind": "vae", "beta": 2.0, "kl_anneal_steps": 100}, EHR_SHAPE)
    model.steps.fill_(25)
    assert annealed_beta(model) == pytest.approx(0.5)
    model.steps.fill_(1000)
    assert annealed_beta(model) == pytest.approx(2.0)


@pytest.mark.parametrize("equivariant", [True, False])
def test_scale_equivariant_conv_treats_a_taller_beat_as_the_same_beat_taller(equivariant):
    # without the linear path (and with the identity normalisation) nothing else adds a bias
    model = make({"kind": "conv1d", "channels": [4, 8], "linear_skip": False,
                  "scale_equivariant": equivariant}, WAVE_SHAPE).eval()
    rows = torch.from_numpy(wave_rows(8))
    with torch.no_grad():
        same = [torch.allclose(f(3 * rows), 3 * f(rows), atol=1e-4)
                for f in (model.encode, model)]
    assert same == [equivariant, equivariant]


def test_conv_pca_init_reconstructs_exactly_like_pca():
    from sklearn.decomposition import PCA

    rows = wave_rows(300)
    model = make({"kind": "conv1d", "channels": [4, 8], "pca_init": True}, WAVE_SHAPE)
    model.init_from_data(torch.from_numpy(rows))
    recon = model.eval()(torch.from_numpy(rows)).detach().numpy()
    pca = PCA(4).fit(rows)
    np.testing.assert_allclose(recon, pca.inverse_transform(pca.transform(rows)), atol=1e-4)
