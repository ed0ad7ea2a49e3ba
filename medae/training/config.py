"""params.yaml sections of the training and evaluation stages."""

from medae.config_base import Section


class TrainEhr(Section):
    pointer: str = "models/ehr.json"


class TrainWaveforms(Section):
    pointer: str = "models/waveforms.json"


class Evaluate(Section):
    out: str = "reports/evaluation.json"
