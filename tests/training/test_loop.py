"""The training loop: exact resume, determinism, early stopping, non-finite loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medae.models.build import build_model
from medae.models.config import ModelChoice
from medae.training.config import Optim
from medae.training.loop import CHECKPOINT, TrainingDiverged, fit
from tests.models.test_models import EHR_SHAPE, ehr_rows

DATA = ehr_rows(160)
OPTIM = Optim(epochs=6, batch_size=32, lr=3e-3, patience=10, device="cpu")


class Interrupt(Exception):
    pass


def vae(seed: int = 0):
    torch.manual_seed(seed)
    # a VAE with KL annealing and a denoising-free objective that still draws noise every
    # step: resume must restore the RNG, the schedule and the annealing step counter
    return build_model(ModelChoice.validate_python(
        {"kind": "vae", "hidden": [32], "latent_dim": 4, "kl_anneal_steps": 12}), EHR_SHAPE)


def train(checkpoint_dir=None, stop_after: int | None = None, optim: Optim = OPTIM):
    def interrupt(epoch, _metrics):
        if epoch == stop_after:
            raise Interrupt
    return fit(vae(), DATA[:128], DATA[128:], optim, checkpoint_dir=checkpoint_dir,
               on_epoch_end=interrupt)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_interrupted_then_resumed_run_equals_uninterrupted_run_bitwise(tmp_path):
    straight = train()
    with pytest.raises(Interrupt):
        train(tmp_path, stop_after=2)
    assert (tmp_path / CHECKPOINT).exists()
    resumed = train(tmp_path)
    assert resumed.resumed_from == 2
    assert same_weights(straight.model, resumed.model)
    assert [h["train_loss"] for h in straight.state.history] == \
        [h["train_loss"] for h in resumed.state.history]
    assert int(resumed.model.steps) == int(straight.model.steps) == 6 * 4


def test_checkpoint_of_another_config_is_not_resumed(tmp_path):
    with pytest.raises(Interrupt):
        train(tmp_path, stop_after=2)
    other = train(tmp_path, optim=OPTIM.model_copy(update={"lr": 1e-3}))
    assert other.resumed_from == 0


def test_training_is_deterministic_on_cpu():
    a, b = train(), train()
    assert same_weights(a.model, b.model)


def test_early_stopping_keeps_the_best_epoch():
    result = fit(vae(), DATA[:128], DATA[128:], OPTIM.model_copy(
        update={"epochs": 40, "lr": 0.05, "patience": 2, "schedule": "constant"}))
    state = result.state
    losses = [h["tuning_loss"] for h in state.history]
    assert state.stopped_early and state.epoch < 40
    assert state.best_epoch == int(np.argmin(losses))
    assert state.epoch - 1 - state.best_epoch == 2


def test_non_finite_loss_stops_with_a_clear_error_and_no_checkpoint(tmp_path):
    bad = DATA.copy()
    bad[5, 0] = 3e38  # squared error overflows float32 -> inf loss in the first epoch
    with pytest.raises(TrainingDiverged, match=r"epoch 1 step \d+: loss is (nan|inf) .*no model"):
        fit(vae(), bad[:128], bad[128:], OPTIM, checkpoint_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT).exists()


@pytest.mark.gpu
def test_trains_on_cuda_with_bf16_and_matches_cpu_loosely():
    gpu = fit(vae(), DATA[:128], DATA[128:], OPTIM.model_copy(update={"device": "cuda"}))
    cpu = train()
    assert gpu.device == "cuda"
    assert next(gpu.model.parameters()).device.type == "cuda"
    # bf16 autocast changes rounding, not the outcome
    assert gpu.best["tuning_recon"] == pytest.approx(cpu.best["tuning_recon"], rel=0.2)
