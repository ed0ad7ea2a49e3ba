"""The base class every params section derives from: frozen, typed, unknown keys rejected."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A validated, immutable section of ``params.yaml``; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
