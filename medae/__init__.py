"""medae: MIMIC-style EHR tables and PhysioNet waveforms to autoencoder latent features.

The package is pure library code: it never imports prefect or dvc, and heavy libraries
(torch, mlflow) are imported inside the functions that need them.
"""

__version__ = "0.1.0"
