"""Which parameters a refresh may take from ``--set`` / ``--params``, and refusing the rest.

The stages run as ``dvc repro`` subprocesses that read the workspace's ``params.yaml``, and DVC
records those values in ``dvc.lock`` to decide what to skip next time. An override of a stage
section would therefore never reach the stage: the refresh would report success with the
old value. Only the sections the flow itself reads (``FLOW_SECTIONS``) may differ; anything
else is a usage error that says to edit ``params.yaml``. No Prefect import here, so the CLI
can refuse before starting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medae.config import DEFAULT_PARAMS, load_params
from medae.errors import UsageError

# Read by the flow only (policy, push, lock commit); no stage command reads them.
FLOW_SECTIONS = ("refresh", "dvc")
SHOWN_KEYS = 5  # keys named in the error; the rest are counted


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts flattened to dotted keys.

    >>> leaves({"a": {"b": 1, "c": {"d": [2]}}, "e": None})
    {'a.b': 1, 'a.c.d': [2], 'e': None}
    """
    if not isinstance(value, dict):
        return {prefix.rstrip("."): value}
    flat: dict[str, Any] = {}
    for key, child in value.items():
        flat.update(leaves(child, f"{prefix}{key}."))
    return flat


def stage_differences(params: Any, reference: Any) -> list[str]:
    """Dotted keys outside ``FLOW_SECTIONS`` whose values differ between two ``Params``.

    >>> from medae.config import load_params
    >>> stage_differences(load_params(None, ["ingest_ehr.shards=3", "dvc.remote=/r"]),
    ...                   load_params(None))
    ['ingest_ehr.shards']
    """
    mine = leaves({k: v for k, v in params.model_dump(mode="json").items()
                   if k not in FLOW_SECTIONS})
    theirs = leaves({k: v for k, v in reference.model_dump(mode="json").items()
                     if k not in FLOW_SECTIONS})
    return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


def refuse_stage_overrides(params: Any) -> None:
    """Raise :class:`UsageError` when ``params`` (after ``--set`` / ``--params``) differs from
    the workspace's ``params.yaml`` anywhere but the flow's own sections."""
    workspace = Path(params.root) / DEFAULT_PARAMS
    differing = stage_differences(params, load_params(workspace))
    if not differing:
        return
    named = ", ".join(differing[:SHOWN_KEYS])
    more = f" and {len(differing) - SHOWN_KEYS} more" if len(differing) > SHOWN_KEYS else ""
    verb = "differs" if len(differing) == 1 else "differ"
    raise UsageError(
        f"refresh: {named}{more} {verb} from {workspace} (--set / --params), but the stages "
        f"run through `dvc repro`, which reads {DEFAULT_PARAMS} and records its values in "
        f"dvc.lock, so the override would be silently ignored; edit {DEFAULT_PARAMS} instead "
        f"(DVC then re-runs exactly the stages it affects). A refresh takes --set only for "
        f"{', '.join(s + '.*' for s in FLOW_SECTIONS)}")
