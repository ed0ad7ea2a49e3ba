"""Prefect flows of the nightly refresh. Wiring only: every computation is in ``medae``.

Importing this package sets the Prefect environment defaults DESIGN.md asks for, before
Prefect itself is imported: a project-local ``PREFECT_HOME``, no server analytics, and the
``medae`` library logs forwarded to Prefect. Values already in the environment win.
"""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("PREFECT_HOME", str(PROJECT_ROOT / ".prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "medae")
# The temporary local server starts in ~7-15 s on an idle machine; leave room on a busy one.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# medae logs outside a flow run (library calls in the same process) stay local, silently.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
