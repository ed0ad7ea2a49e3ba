"""Typed configs of the autoencoder family (torch-free, so params loading stays instant).

A model is chosen in ``params.yaml`` by ``kind``; the remaining keys are that model's config::

    train_ehr:
      model: {kind: denoising, hidden: [256, 128], latent_dim: 32, corruption: masking}

The data-dependent sizes (input width, which columns are the reconstruction target and mask)
are not user settings: training derives them from the data as a :class:`Shape`.

>>> cfg = ModelChoice.validate_python({"kind": "vae", "latent_dim": 8})
>>> type(cfg).__name__, cfg.beta
('VaeConfig', 1.0)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, model_validator

from medae.config_base import Section


class Shape(Section):
    """What the data look like to a model (derived by training, saved inside the model).

    An input row is ``[target (target_dim) | anything else]``: the reconstruction target is
    always the first ``target_dim`` columns. ``mask_offset`` is where a 0/1 observation mask of
    the target starts (EHR windows); without it, non-finite target entries are the unobserved
    ones. ``bins`` splits an EHR target into ``bins x (target_dim / bins)`` time bins.
    """

    input_dim: int = Field(ge=1)
    target_dim: int = Field(ge=1)
    mask_offset: int | None = None
    bins: int = Field(default=1, ge=1)
    input_kind: Literal["ehr", "waveform", "multimodal"] = "ehr"
    wave_dim: int = Field(default=0, ge=0)  # multimodal only: width of the waveform part
    channel: str | None = None  # waveform models: the canonical channel they were trained on


class _Base(Section):
    hidden: tuple[int, ...] = (256, 128)
    latent_dim: int = Field(default=32, ge=1)
    activation: Literal["relu", "gelu", "tanh"] = "gelu"
    recon_loss: Literal["mse", "bce"] = "mse"  # bce: targets in [0, 1], decoder emits logits


class MlpConfig(_Base):
    """Plain MLP autoencoder: input -> hidden... -> latent -> reversed hidden -> target."""

    kind: Literal["mlp"] = "mlp"


class DenoisingConfig(_Base):
    """Trained to reconstruct the clean input from a corrupted copy (only while training).

    ``gaussian`` adds N(0, noise_std) noise; ``masking`` hides ``mask_prob`` of the observed
    entries (EHR: mask set to 0 and the value re-imputed by forward fill, as at inference).
    """

    kind: Literal["denoising"] = "denoising"
    corruption: Literal["gaussian", "masking"] = "masking"
    noise_std: float = Field(default=0.1, ge=0)
    mask_prob: float = Field(default=0.2, ge=0, lt=1)


class SparseConfig(_Base):
    """Sparse code: L1 on the code, or a KL penalty pulling mean sigmoid activations to rho."""

    kind: Literal["sparse"] = "sparse"
    penalty: Literal["l1", "kl"] = "l1"
    weight: float = Field(default=1e-3, ge=0)
    rho: float = Field(default=0.05, gt=0, lt=1)


class ContractiveConfig(_Base):
    """Penalises the Frobenius norm of the encoder Jacobian (random-projection estimate)."""

    kind: Literal["contractive"] = "contractive"
    weight: float = Field(default=1e-3, ge=0)
    projections: int = Field(default=1, ge=1)


class VaeConfig(_Base):
    """VAE / beta-VAE; beta ramps linearly from 0 over ``kl_anneal_steps`` optimiser steps."""

    kind: Literal["vae"] = "vae"
    beta: float = Field(default=1.0, ge=0)
    kl_anneal_steps: int = Field(default=0, ge=0)


class Conv1dConfig(Section):
    """1-D convolutional AE for single-channel waveform windows and beats."""

    kind: Literal["conv1d"] = "conv1d"
    channels: tuple[int, ...] = (16, 32, 64)
    kernel_size: int = Field(default=7, ge=3)
    latent_dim: int = Field(default=16, ge=1)
    activation: Literal["relu", "gelu", "tanh"] = "gelu"
    recon_loss: Literal["mse", "bce"] = "mse"
    linear_skip: bool = True  # a linear path next to the convolutions
    pca_init: bool = True  # start the linear path at the train data's PCA (needs linear_skip)
    # The convolutional path sees each row at unit RMS and scales its output back, so the model
    # is gain-equivariant like PCA (beats of a patient taller than every train patient's).
    scale_equivariant: bool = False
    # Training-only augmentation (input and target alike): random gain in [1-g, 1+g] and a
    # random circular shift of up to ``augment_shift`` samples, for records never seen.
    augment_gain: float = Field(default=0.0, ge=0, lt=1)
    augment_shift: int = Field(default=0, ge=0)
    # Encoder-side refinement (medae.models.refine): ``refine_steps`` Adam steps of size
    # ``refine_lr`` on each row's reconstruction error from the encoder's code, decoder frozen
    # (encode, forward and export alike; training's loss is unchanged). 0 = plain encoder.
    refine_steps: int = Field(default=0, ge=0)
    refine_lr: float = Field(default=0.05, gt=0)
    # AdamW decay of the convolutional path alone (None: optim.weight_decay, like the linear
    # path): restrains the non-linear correction on top of the PCA-initialised linear path.
    conv_weight_decay: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _refine_needs_mse(self) -> Conv1dConfig:
        if self.refine_steps and self.recon_loss != "mse":  # bce decodes to logits, not values
            raise ValueError("refine_steps > 0 needs recon_loss: mse")
        return self


class MultimodalVaeConfig(_Base):
    """EHR window + waveform window of the same stay and time; a missing modality is skipped.

    ``fusion``: ``poe`` (product of Gaussian experts with a unit prior) or ``moe`` (mixture:
    each present expert sampled with equal weight; its mean is the average of expert means).
    """

    kind: Literal["multimodal_vae"] = "multimodal_vae"
    fusion: Literal["poe", "moe"] = "poe"
    beta: float = Field(default=1.0, ge=0)
    kl_anneal_steps: int = Field(default=0, ge=0)


ModelConfig = Annotated[
    MlpConfig | DenoisingConfig | SparseConfig | ContractiveConfig | VaeConfig | Conv1dConfig
    | MultimodalVaeConfig,
    Field(discriminator="kind"),
]
ModelChoice: TypeAdapter = TypeAdapter(ModelConfig)
