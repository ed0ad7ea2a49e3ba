"""Build a model from its config (the ``kind`` chooses the class)."""

from __future__ import annotations

from medae.models.base import Autoencoder
from medae.models.config import Shape
from medae.models.contractive import ContractiveAutoencoder
from medae.models.conv1d import ConvAutoencoder
from medae.models.denoising import DenoisingAutoencoder
from medae.models.mlp import MlpAutoencoder
from medae.models.multimodal import MultimodalVae
from medae.models.sparse import SparseAutoencoder
from medae.models.vae import Vae

MODELS: dict[str, type[Autoencoder]] = {
    "mlp": MlpAutoencoder,
    "denoising": DenoisingAutoencoder,
    "sparse": SparseAutoencoder,
    "contractive": ContractiveAutoencoder,
    "vae": Vae,
    "conv1d": ConvAutoencoder,
    "multimodal_vae": MultimodalVae,
}


def build_model(config, shape: Shape) -> Autoencoder:
    """Instantiate the model ``config.kind`` for data of ``shape``.

    >>> from medae.models.config import VaeConfig
    >>> type(build_model(VaeConfig(), Shape(input_dim=4, target_dim=4))).__name__
    'Vae'
    """
    return MODELS[config.kind](config, shape)
