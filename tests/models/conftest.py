"""Model tests share the training tests' one-torch-thread fixture (autouse)."""

from tests.training.conftest import one_torch_thread  # noqa: F401  (autouse fixture)
