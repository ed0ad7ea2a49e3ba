"""The training loop and the encoder on a CUDA GPU (skipped without one, see conftest)."""

from __future__ import annotations

import pytest
import torch

from medae.training.encode import Encoder
from medae.training.loop import CHECKPOINT, TrainingDiverged, fit
from tests.training.test_loop import DATA, OPTIM, Interrupt, train, vae

pytestmark = pytest.mark.gpu
CUDA = OPTIM.model_copy(update={"device": "cuda"})


def close_weights(a, b, atol: float) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.allclose(sa[k].float().cpu(), sb[k].float().cpu(), rtol=0, atol=atol) for k in sa)


def test_rows_resident_on_the_gpu_train_like_rows_copied_from_the_host():
    fp32 = CUDA.model_copy(update={"bf16": False})
    resident = train(optim=fp32.model_copy(update={"data_on_device": "always"}))
    host = train(optim=fp32.model_copy(update={"data_on_device": "never"}))
    # the same batches in the same order: only the gather's location differs
    assert close_weights(resident.model, host.model, atol=1e-6)
    assert [round(h["train_loss"], 5) for h in resident.state.history] == \
        [round(h["train_loss"], 5) for h in host.state.history]


def test_interrupted_then_resumed_run_on_cuda_matches_the_uninterrupted_one(tmp_path):
    straight = train(optim=CUDA)
    with pytest.raises(Interrupt):
        train(tmp_path, stop_after=2, optim=CUDA)
    resumed = train(tmp_path, optim=CUDA)
    assert resumed.resumed_from == 2
    assert close_weights(straight.model, resumed.model, atol=1e-5)


def test_non_finite_loss_on_cuda_names_the_step_and_saves_nothing(tmp_path):
    bad = DATA.copy()
    bad[40, 0] = 3e38  # row 40 is in the second batch of 32 when unshuffled; any step will do
    with pytest.raises(TrainingDiverged, match=r"epoch 1 step \d+: loss is (nan|inf) .*no model"):
        fit(vae(), bad[:128], bad[128:], CUDA, checkpoint_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT).exists()


def test_encoder_on_cuda_gives_the_cpu_latents():
    model = vae().eval()
    cpu = Encoder(model=model, device="cpu").encode(DATA)
    gpu = Encoder(model=vae().eval().to("cuda"), device="cuda").encode(DATA)
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape == (len(DATA), 4)
    assert abs(gpu - cpu).max() < 1e-4
