"""params.yaml sections of export, the nightly refresh and DVC."""

from medae.config_base import Section


class ExportLatents(Section):
    out: str = "data/latents"


class Refresh(Section):
    training: str = "if_needed"


class DvcConfig(Section):
    remote: str = "../medae-dvc-remote"
