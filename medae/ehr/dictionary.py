"""The variable dictionary: which itemids make which variable, in which unit and range.

Shipped as ``medae/resources/variables.yaml`` (see the header of that file for the fields).
:func:`load_dictionary` validates it strictly: every variable has a canonical unit, a unit table
that maps the canonical unit to itself, a four-bound range in order and a known aggregation;
no itemid belongs to two variables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from medae.errors import ConfigError

AGGREGATIONS = ("mean", "sum", "last", "min", "max")
ITEMID_SOURCES = ("mimic4", "carevue", "metavision")


@dataclass(frozen=True)
class Variable:
    """One clinical variable of the dictionary."""

    name: str
    code: str
    description: str
    unit: str
    units: dict[str, tuple[float, float]]
    itemids: dict[str, tuple[int, ...]]
    range: tuple[float, float, float, float]
    agg: str = "mean"
    comparison: bool = False
    item_units: dict[int, str] = field(default_factory=dict)
    value_rules: tuple[dict[str, float], ...] = ()

    @property
    def all_itemids(self) -> list[int]:
        return sorted({i for ids in self.itemids.values() for i in ids})


@dataclass(frozen=True)
class Dictionary:
    variables: tuple[Variable, ...]
    version: int
    digest: str
    path: str

    @property
    def codes(self) -> list[str]:
        return [v.code for v in self.variables]

    def by_code(self) -> dict[str, Variable]:
        return {v.code: v for v in self.variables}


def normalize_unit(unit: str | None) -> str | None:
    """The form unit strings are matched in: lower case, no spaces, no degree markers.

    >>> [normalize_unit(u) for u in ["mm Hg", "°F", "Deg. F", "  ", None, "mEq/L"]]
    ['mmhg', 'f', 'f', None, None, 'meq/l']
    """
    if unit is None:
        return None
    text = "".join(unit.split()).lower().replace("°", "")
    for prefix in ("deg.", "deg"):
        if text.startswith(prefix) and len(text) > len(prefix):
            text = text[len(prefix):]
    return text or None


def normalize_unit_expr(expr: pl.Expr) -> pl.Expr:
    """Polars twin of :func:`normalize_unit` for a column of unit strings.

    >>> s = pl.Series(["mm Hg", "°F", "Deg. F", "  ", None, "mEq/L"])
    >>> pl.select(normalize_unit_expr(pl.lit(s))).to_series().to_list()
    ['mmhg', 'f', 'f', None, None, 'meq/l']
    """
    text = expr.str.replace_all(r"\s+", "").str.to_lowercase().str.replace_all("°", "")
    text = text.str.replace(r"^deg\.?(.)", "$1")
    return pl.when(text.str.len_chars() > 0).then(text).otherwise(None)


def _fail(path: str, name: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: variable '{name}': {problem}")


def _parse_variable(raw: dict[str, Any], path: str) -> Variable:
    name = str(raw.get("name", "?"))
    for key in ("code", "unit", "units", "itemids", "range"):
        if not raw.get(key):
            raise _fail(path, name, f"missing '{key}'")
    units = {normalize_unit(str(k)): (float(v[0]), float(v[1])) for k, v in raw["units"].items()}
    if units.get(normalize_unit(raw["unit"]) or "") != (1.0, 0.0):
        raise _fail(path, name, f"units must map the canonical unit '{raw['unit']}' to [1, 0]")
    bounds = tuple(float(b) for b in raw["range"])
    if len(bounds) != 4 or list(bounds) != sorted(bounds):
        raise _fail(path, name, "range must be [outlier_low, valid_low, valid_high, "
                    "outlier_high] in increasing order")
    agg = raw.get("agg", "mean")
    if agg not in AGGREGATIONS:
        raise _fail(path, name, f"agg '{agg}' is not one of {', '.join(AGGREGATIONS)}")
    itemids = {src: tuple(int(i) for i in raw["itemids"].get(src) or ()) for src in ITEMID_SOURCES}
    item_units = {int(k): normalize_unit(str(v)) for k, v in (raw.get("item_units") or {}).items()}
    for item, unit in item_units.items():
        if unit not in units:
            raise _fail(path, name, f"item_units {item}: unit '{unit}' has no conversion")
    return Variable(
        name=name, code=str(raw["code"]), description=str(raw.get("description", name)),
        unit=str(raw["unit"]), units=units, itemids=itemids, range=bounds,  # type: ignore[arg-type]
        agg=agg, comparison=bool(raw.get("comparison", False)), item_units=item_units,
        value_rules=tuple(dict(r) for r in raw.get("value_rules") or ()),
    )


def _check_unique(variables: list[Variable], path: str) -> None:
    owner: dict[int, str] = {}
    codes: set[str] = set()
    for var in variables:
        if var.code in codes:
            raise _fail(path, var.name, f"code '{var.code}' used twice")
        codes.add(var.code)
        for item in var.all_itemids:
            if owner.setdefault(item, var.name) != var.name:
                raise _fail(path, var.name, f"itemid {item} also belongs to '{owner[item]}'")


# libyaml's parser when PyYAML was built with it: about 10x faster than the pure-Python one
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LOADED: dict[tuple[str, str], Dictionary] = {}  # (where, content digest) -> parsed


def load_dictionary(path: str | Path | None = None) -> Dictionary:
    """Load and validate the dictionary (the packaged one when ``path`` is None).

    >>> d = load_dictionary()
    >>> len(d.variables) >= 40, d.by_code()["VITAL//HEART_RATE"].unit
    (True, 'bpm')
    """
    if path is None:
        ref = resources.files("medae") / "resources" / "variables.yaml"
        text, where = ref.read_text(encoding="utf-8"), "medae/resources/variables.yaml"
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    cached = _LOADED.get((where, digest))
    if cached is not None:  # every shard of a stage loads it; the result is immutable
        return cached
    data = yaml.load(text, Loader=_YAML_LOADER) or {}
    variables = [_parse_variable(raw, where) for raw in data.get("variables") or []]
    if not variables:
        raise ConfigError(f"{where}: no variables")
    _check_unique(variables, where)
    loaded = Dictionary(tuple(variables), int(data.get("version", 0)), digest, where)
    _LOADED[(where, digest)] = loaded
    return loaded


def itemid_frame(dictionary: Dictionary) -> pl.DataFrame:
    """One row per mapped itemid: the variable code, its implied unit, whether comparisons
    like ``<0.1`` may be parsed."""
    rows = [
        {"itemid": item, "code": var.code, "implied_unit": var.item_units.get(item),
         "comparison": var.comparison}
        for var in dictionary.variables for item in var.all_itemids
    ]
    return pl.DataFrame(rows, schema={"itemid": pl.Int64, "code": pl.String,
                                      "implied_unit": pl.String, "comparison": pl.Boolean})


def unit_frame(dictionary: Dictionary) -> pl.DataFrame:
    """One row per (code, accepted unit): the linear conversion to the canonical unit."""
    rows = [
        {"code": var.code, "unit_norm": unit, "scale": scale, "offset": offset}
        for var in dictionary.variables for unit, (scale, offset) in var.units.items()
    ]
    return pl.DataFrame(rows, schema={"code": pl.String, "unit_norm": pl.String,
                                      "scale": pl.Float64, "offset": pl.Float64})


def rule_frame(dictionary: Dictionary) -> pl.DataFrame:
    """One row per code: range bounds and the value-decided conversion, if any."""
    rows = []
    for var in dictionary.variables:
        rule = var.value_rules[0] if var.value_rules else {}
        rows.append({
            "code": var.code, "outlier_low": var.range[0], "valid_low": var.range[1],
            "valid_high": var.range[2], "outlier_high": var.range[3],
            "rule_above": rule.get("above"), "rule_at_most": rule.get("at_most"),
            "rule_scale": rule.get("scale"),
        })
    return pl.DataFrame(rows, schema={
        "code": pl.String, "outlier_low": pl.Float64, "valid_low": pl.Float64,
        "valid_high": pl.Float64, "outlier_high": pl.Float64, "rule_above": pl.Float64,
        "rule_at_most": pl.Float64, "rule_scale": pl.Float64,
    })
