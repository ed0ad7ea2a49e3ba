"""Fixtures of the refresh tests: one Prefect test server for the whole session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """A real, temporary Prefect API (SQLite) shared by every flow test of the session;
    starting one costs 7-15 s, so it is started once and only when a test needs it."""
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect_home")))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    import flows  # noqa: F401 - sets the remaining Prefect environment defaults

    with prefect_test_harness(server_startup_timeout=120):
        yield
