"""Load ``params.yaml`` (the single source of configuration) into frozen, validated objects.

Every section is a :class:`~medae.config_base.Section`; unknown or mistyped keys fail with a
:class:`~medae.errors.ConfigError` naming the key and the file. ``--set section.key=value``
overrides are applied before validation, values parsed as YAML (``--set ehr.shards=4``).

>>> p = load_params(None, ["ingest_ehr.shards=3"])
>>> p.ingest_ehr.shards
3
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import PrivateAttr, ValidationError

from medae.config_base import Section
from medae.ehr.config import CleanEhr, EhrSource, FeaturizeEhr, IngestEhr
from medae.errors import ConfigError
from medae.export.config import DvcConfig, ExportLatents, Refresh
from medae.training.config import (
    Evaluate,
    PairWindows,
    TrainEhr,
    TrainMultimodal,
    TrainWaveforms,
)
from medae.waveforms.config import CatalogWaveforms, WaveformSource, WindowWaveforms

DEFAULT_PARAMS = "params.yaml"


class ExecutorConfig(Section):
    """How ``medae.executor.map_items`` fans out work.

    ``workers``: local process count (``null`` = all cores). ``address``: a Dask scheduler
    (``tcp://host:8786``); when set, work goes to that cluster instead of local processes.
    """

    workers: int | None = None
    address: str | None = None
    progress: bool = True


class MlflowConfig(Section):
    """MLflow tracking; a relative sqlite path is resolved against the params file's folder."""

    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_root: str = "mlartifacts"
    experiment_prefix: str = "medae"


class Params(Section):
    """All of ``params.yaml``: one section per stage plus the shared input/executor sections."""

    executor: ExecutorConfig = ExecutorConfig()
    mlflow: MlflowConfig = MlflowConfig()
    ehr: EhrSource = EhrSource()
    ingest_ehr: IngestEhr = IngestEhr()
    clean_ehr: CleanEhr = CleanEhr()
    featurize_ehr: FeaturizeEhr = FeaturizeEhr()
    waveforms: WaveformSource = WaveformSource()
    catalog_waveforms: CatalogWaveforms = CatalogWaveforms()
    window_waveforms: WindowWaveforms = WindowWaveforms()
    train_ehr: TrainEhr = TrainEhr()
    train_waveforms: TrainWaveforms = TrainWaveforms()
    pair_windows: PairWindows = PairWindows()
    train_multimodal: TrainMultimodal = TrainMultimodal()
    evaluate: Evaluate = Evaluate()
    export_latents: ExportLatents = ExportLatents()
    refresh: Refresh = Refresh()
    dvc: DvcConfig = DvcConfig()

    _root: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str = PrivateAttr(default="<defaults>")

    @property
    def root(self) -> Path:
        """The folder relative paths are resolved against (the params file's folder)."""
        return self._root

    def path(self, value: str | os.PathLike[str]) -> Path:
        """Resolve a configured path against :attr:`root` (absolute paths pass through)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self._root / p

    def mlflow_uri(self) -> str:
        """The tracking URI with a relative sqlite path made absolute (MLflow needs that)."""
        uri = self.mlflow.tracking_uri
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
            return prefix + str(self.path(uri[len(prefix):]))
        return uri

    def section_hash(self, *names: str) -> str:
        """A stable hash of the named sections (for fingerprints and MLflow params)."""
        payload = {n: getattr(self, n).model_dump(mode="json") for n in names}
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into a key path and a YAML-typed value.

    >>> parse_override("featurize_ehr.window_hours=12")
    (['featurize_ehr', 'window_hours'], 12)
    """
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. ingest_ehr.shards=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.problem})") from None
    return parts, value


def _apply(data: dict[str, Any], parts: list[str], value: Any, item: str) -> None:
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"--set {item!r}: {where} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _describe(err: dict[str, Any], source: str, overrides: list[str]) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc)
    # Blame the --set item that introduced the key, else the file. Pydantic puts the chosen
    # variant of a tagged union in the location (train_ehr.model.denoising.hidden for
    # --set train_ehr.model.hidden=...), and fails a whole section for a bad tag
    # (train_ehr.model for --set train_ehr.model.kind=foo): both are the --set's.
    set_keys = {o: o.partition("=")[0].strip() for o in overrides}
    blamed = [o for o, k in set_keys.items() if _names_the_same_key(k.split("."), loc)]
    where = f"--set {blamed[-1]!r} (params {source})" if blamed else source
    key = set_keys[blamed[-1]] if blamed else key
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key '{key}'"
    if err["type"] == "missing":
        return f"{where}: missing key '{key}'"
    return f"{where}: key '{key}': {err['msg']} (got {err.get('input')!r})"


def _names_the_same_key(key: list[str], loc: list[str]) -> bool:
    """Whether an override's ``key`` is the error's location ``loc``, a key inside it, or it
    with one union-variant part left out.

    >>> _names_the_same_key(["m", "hidden"], ["m", "denoising", "hidden"])
    True
    >>> _names_the_same_key(["m", "kind"], ["m"]), _names_the_same_key(["m", "x"], ["m", "y"])
    (True, False)
    """
    if key[: len(loc)] == loc:
        return True
    return any(loc[:i] + loc[i + 1:] == key for i in range(len(loc)))


def _unshared(tree: Any) -> Any:
    """A copy of a YAML tree in which no two places share one object.

    YAML anchors (``optim: *optim``) load as one shared dict, so a ``--set`` of one section
    would change the other too (``copy.deepcopy`` keeps that sharing).

    >>> shared = {"lr": 1}
    >>> tree = _unshared({"a": shared, "b": shared})
    >>> tree["a"]["lr"] = 2
    >>> tree["b"]["lr"]
    1
    """
    if isinstance(tree, dict):
        return {key: _unshared(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_unshared(value) for value in tree]
    return tree


def load_params(
    path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None
) -> Params:
    """Load and validate a params file (default ``./params.yaml`` if it exists, else defaults).

    Raises :class:`ConfigError` naming the file and key on any unknown key or bad value.
    """
    if path is None:
        candidate = Path.cwd() / DEFAULT_PARAMS
        file = candidate if candidate.exists() else None
    else:
        file = Path(path)
        if not file.exists():
            raise ConfigError(f"{file}: params file not found")
    data: dict[str, Any] = {}
    source = "<defaults>"
    if file is not None:
        source = str(file)
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of sections at the top level")
        data = _unshared(loaded or {})
    for item in overrides or []:
        parts, value = parse_override(item)
        _apply(data, parts, value, item)
    try:
        params = Params.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0], source, overrides or [])) from None
    params._root = (file.parent if file is not None else Path.cwd()).resolve()
    params._source = source
    return params
