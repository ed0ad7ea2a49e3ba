"""The training loop, readable top to bottom: data -> optimiser -> epochs -> best weights.

Whole batches are indexed out of one in-memory (or memory-mapped) array; there is no
per-sample Python. A checkpoint is written after every epoch with everything that decides the
future of the run (weights, optimiser, schedule, every RNG state, early-stopping state), so a run
interrupted after epoch k and resumed ends with bit-identical weights on CPU.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medae.errors import DataError, MedaeError
from medae.io import atomic_path
from medae.training.config import Optim
from medae.training.encode import best_device

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"


class TrainingDiverged(MedaeError):
    """The loss became NaN or infinite; nothing was saved for this run."""


@dataclass
class TrainState:
    """Where the run is: survives in the checkpoint."""

    epoch: int = 0  # epochs completed
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class FitResult:
    model: Any
    state: TrainState
    device: str
    resumed_from: int  # epochs already done when this call started (0 = fresh)

    @property
    def best(self) -> dict[str, float]:
        return self.state.history[self.state.best_epoch]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def as_tensor(rows: np.ndarray) -> torch.Tensor:
    """Zero-copy view of a float32 array (Arrow-backed and memory-mapped ones are read-only;
    training only ever reads them, so torch's warning about that does not apply)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.asarray(rows, dtype=np.float32))


def resolve_device(choice: str) -> str:
    return best_device() if choice == "auto" else choice


def batches(data: torch.Tensor, batch_size: int, device: str,
            generator: torch.Generator | None = None):
    """Yield whole batches (shuffled when a generator is given) already on ``device``.

    The order is drawn on the CPU generator wherever the data live, so a run sees the same
    batches whether its rows sit in host memory or on the accelerator.
    """
    n = data.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    if data.device.type != "cpu":  # resident on the accelerator: gather there, nothing to copy
        order = order.to(data.device)
        for start in range(0, n, batch_size):
            yield data[order[start : start + batch_size]]
        return
    pin = device == "cuda"
    for start in range(0, n, batch_size):
        batch = data[order[start : start + batch_size]]
        if pin:  # page-locked memory lets the copy overlap the previous step's compute
            batch = batch.pin_memory()
        yield batch.to(device, non_blocking=pin)


def place_data(rows: torch.Tensor, device: str, choice: str, share: float = 0.25) -> torch.Tensor:
    """The training rows where batches are gathered from: on a CUDA device when ``choice`` is
    ``always``, or ``auto`` and they take at most ``share`` of its free memory; else host.

    Resident rows remove the per-step gather, pin and copy on the host, which is what a small
    model on a fast GPU otherwise waits on.

    >>> place_data(torch.zeros(2, 3), "cpu", "auto").device.type
    'cpu'
    """
    if device != "cuda" or choice == "never":
        return rows
    if choice == "auto":
        free, _ = torch.cuda.mem_get_info()
        if rows.numel() * rows.element_size() > share * free:
            return rows
    return rows.to(device)


def lr_lambda(warmup_steps: int, total_steps: int, schedule: str) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 0 (or constant) as a multiplier of ``lr``.

    >>> f = lr_lambda(10, 110, "cosine"); [round(f(s), 2) for s in (0, 5, 10, 60, 110)]
    [0.1, 0.6, 1.0, 0.5, 0.0]
    """
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def fingerprint(model: torch.nn.Module, optim: Optim, data_version: str) -> str:
    """What a checkpoint must match to be resumed: model config + shape, optimiser, data."""
    blob = repr((model.config.model_dump(), model.shape.model_dump(), optim.model_dump(),
                 data_version)).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def check_finite(loss: torch.Tensor, where: str) -> None:
    if not bool(torch.isfinite(loss)):
        raise diverged(where, loss)


def diverged(where: str, loss: torch.Tensor) -> TrainingDiverged:
    return TrainingDiverged(
        f"{where}: loss is {float(loss.detach())} (not finite); training stopped and no "
        "model was saved. Lower optim.lr or check the inputs for extreme values")


class LossSums:
    """Row-weighted sums of the objective and its parts over an epoch, and the first step
    whose loss was not finite.

    On the CPU every step is checked at once (a sync there is free). On an accelerator the
    sums and the check stay on the device and are read once, in :meth:`means`: a host read
    per step would stall the GPU queue every step. The error still names the first bad step,
    and nothing is saved before :meth:`means` has run.
    """

    def __init__(self, device: str, epoch: int):
        self.on_host = device == "cpu"
        self.dtype = torch.float32 if device == "mps" else torch.float64  # MPS has no float64
        self.epoch = epoch
        self.sums: dict[str, Any] = {}
        self.rows = 0
        self.first_bad: Any = None  # on an accelerator: (step, loss) tensors of the first
        self.bad_loss: Any = None   # non-finite step, step -1 while there is none

    def add(self, step: int, loss: torch.Tensor, parts: dict[str, Any], rows: int, *,
            check: bool = True) -> None:
        if check and self.on_host:
            check_finite(loss, f"epoch {self.epoch} step {step + 1}")
        elif check:
            self._mark_if_bad(step, loss.detach().float())
        for name, value in {"loss": loss, **parts}.items():
            # float64 (but on MPS): the host sums are bit for bit what they always were
            value = value.detach() if isinstance(value, torch.Tensor) else value
            term = float(value) * rows if self.on_host else value.to(self.dtype) * rows
            self.sums[name] = self.sums.get(name, 0.0) + term
        self.rows += rows

    def _mark_if_bad(self, step: int, loss: torch.Tensor) -> None:
        if self.first_bad is None:
            self.first_bad, self.bad_loss = torch.full_like(loss, -1), torch.zeros_like(loss)
        fresh = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(fresh, float(step), self.first_bad)
        self.bad_loss = torch.where(fresh, loss, self.bad_loss)

    def means(self) -> dict[str, float]:
        """The per-row means (one host read on an accelerator); raises on a non-finite step."""
        if self.first_bad is not None and (step := int(self.first_bad)) >= 0:
            raise diverged(f"epoch {self.epoch} step {step + 1}", self.bad_loss)
        return {k: float(v) / max(1, self.rows) for k, v in self.sums.items()}


def tuning_metrics(model, data: torch.Tensor, optim: Optim, device: str) -> dict[str, float]:
    """Row-weighted mean of the objective and each of its parts on the tuning split."""
    model.eval()
    sums = LossSums(device, epoch=0)
    with torch.no_grad(), autocast(device, optim.bf16):
        for batch in batches(data, optim.batch_size, device):
            loss, parts = model.loss(batch)
            sums.add(0, loss, parts, len(batch), check=False)  # checked by the caller
    model.train()
    return sums.means()


def autocast(device: str, bf16: bool):
    # bf16 keeps fp32's range (no loss scaling needed); only CUDA gets it: CPU bf16 is slow.
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                          enabled=bf16 and device == "cuda")


def save_checkpoint(path: Path, **payload: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def fit(model, train: np.ndarray, tuning: np.ndarray, optim: Optim, *,
        checkpoint_dir: Path | None = None, resume: bool = True, data_version: str = "",
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> FitResult:
    """Train ``model`` on ``train`` rows, early-stopping on ``tuning`` rows; best weights kept."""
    if len(train) == 0 or len(tuning) == 0:
        raise DataError(f"training needs train and tuning rows (got {len(train)} and "
                        f"{len(tuning)})")
    device = resolve_device(optim.device)
    seed_everything(optim.seed)
    model.to(device).train()
    train_t = place_data(as_tensor(train), device, optim.data_on_device)
    tuning_t = place_data(as_tensor(tuning), device, optim.data_on_device)
    shuffle = torch.Generator().manual_seed(optim.seed)

    steps_per_epoch = math.ceil(len(train) / optim.batch_size)
    total = optim.epochs * steps_per_epoch
    # fused: one kernel per step for the whole update on CUDA (launches dominate small models)
    opt = torch.optim.AdamW(model.param_groups(optim.weight_decay), lr=optim.lr,
                            fused=device == "cuda" or None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(
        int(optim.warmup_epochs * steps_per_epoch), total, optim.schedule))
    state, best_weights = TrainState(), copy.deepcopy(model.state_dict())

    stamp = fingerprint(model, optim, data_version)
    ckpt = checkpoint_dir / CHECKPOINT if checkpoint_dir is not None else None
    if ckpt is not None and resume and ckpt.exists():
        saved = torch.load(ckpt, map_location=device, weights_only=False)
        if saved["fingerprint"] == stamp:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            # RNG states are CPU byte tensors wherever map_location put the rest
            shuffle.set_state(saved["shuffle_rng"].cpu())
            torch.set_rng_state(saved["torch_rng"].cpu())
            if device == "cuda" and saved.get("cuda_rng") is not None:
                torch.cuda.set_rng_state_all([s.cpu() for s in saved["cuda_rng"]])
            np.random.set_state(saved["numpy_rng"])
            random.setstate(saved["python_rng"])
            state, best_weights = TrainState(**saved["state"]), saved["best_model"]
            log.info("resuming from %s after epoch %d", ckpt, state.epoch)
        else:
            log.info("checkpoint %s is for another config or data; starting fresh", ckpt)
    resumed_from = state.epoch

    while state.epoch < optim.epochs and not state.stopped_early:
        epoch, t0, waiting = state.epoch, time.perf_counter(), 0.0
        sums = LossSums(device, epoch + 1)
        it = batches(train_t, optim.batch_size, device, shuffle)
        for step in range(steps_per_epoch):
            t_wait = time.perf_counter()
            batch = next(it)
            waiting += time.perf_counter() - t_wait
            with autocast(device, optim.bf16):
                loss, parts = model.loss(batch)
            sums.add(step, loss, parts, len(batch))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
            opt.step()
            sched.step()
            model.steps += 1
        metrics = {f"train_{k}": v for k, v in sums.means().items()}  # waits for the device
        seconds, seen = time.perf_counter() - t0, sums.rows
        tune = tuning_metrics(model, tuning_t, optim, device)
        check_finite(torch.tensor(tune["loss"]), f"epoch {epoch + 1} tuning")
        metrics.update({f"tuning_{k}": v for k, v in tune.items()})
        metrics.update(lr=sched.get_last_lr()[0], samples_per_s=seen / seconds,
                       data_wait_share=waiting / seconds, epoch_seconds=seconds)

        if tune["loss"] < state.best_loss - optim.min_delta:
            state.best_loss, state.best_epoch, state.bad_epochs = tune["loss"], epoch, 0
            best_weights = copy.deepcopy(model.state_dict())
        else:
            state.bad_epochs += 1
            state.stopped_early = state.bad_epochs >= optim.patience
        state.history.append(metrics)
        state.epoch += 1
        log.info("epoch %d/%d train %.4f tuning %.4f (%.0f samples/s)", state.epoch,
                 optim.epochs, metrics["train_loss"], tune["loss"], metrics["samples_per_s"])
        if ckpt is not None:
            save_checkpoint(
                ckpt, fingerprint=stamp, model=model.state_dict(), optimizer=opt.state_dict(),
                scheduler=sched.state_dict(), shuffle_rng=shuffle.get_state(),
                torch_rng=torch.get_rng_state(),
                cuda_rng=torch.cuda.get_rng_state_all() if device == "cuda" else None,
                numpy_rng=np.random.get_state(), python_rng=random.getstate(),
                state=asdict(state), best_model=best_weights)
        if on_epoch_end is not None:
            on_epoch_end(state.epoch, metrics)

    if state.stopped_early:
        log.info("early stop after epoch %d; best epoch %d", state.epoch, state.best_epoch + 1)
    model.load_state_dict(best_weights)
    model.eval()
    return FitResult(model=model, state=state, device=device, resumed_from=resumed_from)
