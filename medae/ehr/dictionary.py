"""The variable dictionary: which itemids make which variable, in which unit and range.

Shipped as ``medae/resources/variables.yaml`` (see the header of that file for the fields).
:func:`load_dictionary` validates it strictly: every variable has a canonical unit, a unit table
that maps the canonical unit to itself, a four-bound range in order and a known aggregation;
no itemid belongs to two variables. Any mistake in the file (not found, not YAML, a value of the
wrong type, an unknown or repeated key, more than one value rule) is a
:class:`~medae.errors.ConfigError` naming the file, the variable and the key, never a traceback
and never a silently different dictionary.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medae.errors import ConfigError, error_reason

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


# Characters folded when unit strings are matched: degree signs dropped; the micro sign (U+00B5)
# and the Greek mu (U+03BC; also what a capital mu, U+039C, lowers to) read as "u", the way
# MIMIC writes micro ("umol/L"). One table for both twins below, so they cannot drift.
_UNIT_FOLD = {"°": "", "\u00b5": "u", "\u03bc": "u"}
# Part of every dictionary's digest, which clean_ehr's shard fingerprints carry: bump it when
# the same file comes to mean something else (how unit strings match), so shards cleaned under
# the old reading are recomputed. 2: micro signs fold to "u".
_READING_VERSION = 2


def normalize_unit(unit: str | None) -> str | None:
    """The form unit strings are matched in: lower case, no spaces, no degree markers, micro as
    ``u``.

    >>> [normalize_unit(u) for u in ["mm Hg", "°F", "Deg. F", "  ", None, "mEq/L"]]
    ['mmhg', 'f', 'f', None, None, 'meq/l']
    >>> [normalize_unit(u) for u in ["\u00b5mol/L", "\u03bcmol/L", "\u039cMOL/L", "umol/L"]]
    ['umol/l', 'umol/l', 'umol/l', 'umol/l']
    """
    if unit is None:
        return None
    text = "".join(unit.split()).lower()
    for sign, replacement in _UNIT_FOLD.items():
        text = text.replace(sign, replacement)
    for prefix in ("deg.", "deg"):
        if text.startswith(prefix) and len(text) > len(prefix):
            text = text[len(prefix):]
    return text or None


def normalize_unit_expr(expr: pl.Expr) -> pl.Expr:
    """Polars twin of :func:`normalize_unit` for a column of unit strings.

    >>> s = pl.Series(["mm Hg", "°F", "Deg. F", "  ", None, "mEq/L", "\u00b5mol/L", "\u03bcmol/L"])
    >>> pl.select(normalize_unit_expr(pl.lit(s))).to_series().to_list()
    ['mmhg', 'f', 'f', None, None, 'meq/l', 'umol/l', 'umol/l']
    """
    text = expr.str.replace_all(r"\s+", "").str.to_lowercase()
    text = text.str.replace_many(list(_UNIT_FOLD), list(_UNIT_FOLD.values()))
    text = text.str.replace(r"^deg\.?(.)", "$1")
    return pl.when(text.str.len_chars() > 0).then(text).otherwise(None)


def _fail(path: str, name: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: variable '{name}': {problem}")


class _Schema(BaseModel):
    """Types of one part of the dictionary file, unknown keys refused (like params.yaml's);
    numbers may be written where text is."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class _ItemIds(_Schema):
    mimic4: list[int] | None = None
    carevue: list[int] | None = None
    metavision: list[int] | None = None


class _ValueRule(_Schema):
    above: float | None = None
    at_most: float | None = None
    scale: float = Field(gt=0)

    @model_validator(mode="after")
    def _one_threshold(self) -> _ValueRule:
        if (self.above is None) == (self.at_most is None):
            raise ValueError("a rule has exactly one of 'above' or 'at_most', and a 'scale'")
        return self


class _Entry(_Schema):
    name: str
    code: str
    description: str | None = None
    unit: str
    units: dict[str, tuple[float, float]]
    itemids: _ItemIds
    range: list[float]
    agg: Literal[AGGREGATIONS] = "mean"  # type: ignore[valid-type]
    comparison: bool = False
    item_units: dict[int, str] | None = None
    # One rule: clean_ehr applies one threshold and one scale per variable; two rules would
    # also overlap or chain (which first?), so more than one is refused, not half applied.
    value_rules: list[_ValueRule] | None = Field(default=None, max_length=1)


class _File(_Schema):
    version: int = 0
    variables: list[Any] | None = None


def _key(loc: tuple[str | int, ...]) -> str:
    """A pydantic error location as the key path a user reads in the file.

    >>> _key(("units", "bpm", 0)), _key(("item_units", "2x", "[key]"))
    ('units.bpm[0]', 'item_units.2x')
    """
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


# What a key's parent holds, for "did you mean": the part of the file each model reads.
_PARTS: dict[str, type[BaseModel]] = {"itemids": _ItemIds, "value_rules": _ValueRule}
# Names people write for a key (featurize_ehr calls it "aggregations").
_SYNONYMS = {"aggregation": "agg", "aggregations": "agg"}


def _unknown_key(loc: tuple[str | int, ...], schema: type[BaseModel]) -> str:
    """``unknown key 'x'`` with the closest known key of the same mapping.

    >>> _unknown_key(("agregation",), _Entry)
    "unknown key 'agregation' (did you mean 'agg'?)"
    >>> _unknown_key(("itemids", "mimic"), _Entry)
    "unknown key 'itemids.mimic' (did you mean 'mimic4'?)"
    >>> _unknown_key(("colour",), _File)
    "unknown key 'colour' (known: version, variables)"
    """
    parents = [p for p in loc[:-1] if isinstance(p, str)]
    known = list((_PARTS[parents[-1]] if parents else schema).model_fields)
    candidates = known + [s for s, k in _SYNONYMS.items() if k in known]
    close = difflib.get_close_matches(str(loc[-1]), candidates, n=1, cutoff=0.6)
    hint = (f"did you mean '{_SYNONYMS.get(close[0], close[0])}'?" if close
            else f"known: {', '.join(known)}")
    return f"unknown key '{_key(loc)}' ({hint})"


def _problem(exc: ValidationError, schema: type[BaseModel]) -> str:
    """The first validation error as ``key 'units.bpm[0]': <why>``, without the input value
    (``Input should be a valid number``: pydantic's messages do not quote it)."""
    err = exc.errors()[0]
    if err["type"] == "missing":
        return f"missing '{_key(err['loc'])}'"
    if err["type"] == "extra_forbidden":
        return _unknown_key(err["loc"], schema)
    why = {"model_type": "expected a mapping (key: value)", "dict_type": "expected a mapping "
           "(key: value)", "list_type": "expected a list",
           "value_error": str(err.get("ctx", {}).get("error")),
           "too_long": "one rule per variable (a threshold and a scale), not "
                       f"{err.get('ctx', {}).get('actual_length')}"}.get(err["type"], err["msg"])
    return f"key '{_key(err['loc'])}': {why}"


def _parse_variable(raw: Any, index: int, path: str) -> Variable:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: variables[{index}]: expected a mapping (name: ..., code: ...)")
    name = str(raw.get("name") or f"#{index + 1}")
    for key in ("name", "code", "unit", "units", "itemids", "range"):
        if raw.get(key) in (None, "", [], {}):
            raise _fail(path, name, f"missing '{key}'")
    try:
        entry = _Entry.model_validate(raw)
    except ValidationError as exc:
        raise _fail(path, name, _problem(exc, _Entry)) from None
    units: dict[str | None, tuple[float, float]] = {}
    for spelling, conversion in entry.units.items():
        unit = normalize_unit(spelling)
        if unit is None or unit in units:
            raise _fail(path, name, f"units '{spelling}': " + (
                "an empty unit" if unit is None else f"the same unit as another key once "
                f"normalised ('{unit}'): write each unit once"))
        units[unit] = conversion
    if units.get(normalize_unit(entry.unit) or "") != (1.0, 0.0):
        raise _fail(path, name, f"units must map the canonical unit '{entry.unit}' to [1, 0]")
    bounds = tuple(entry.range)
    if len(bounds) != 4 or list(bounds) != sorted(bounds):
        raise _fail(path, name, "range must be [outlier_low, valid_low, valid_high, "
                    "outlier_high] in increasing order")
    itemids = {src: tuple(getattr(entry.itemids, src) or ()) for src in ITEMID_SOURCES}
    item_units = {k: normalize_unit(v) for k, v in (entry.item_units or {}).items()}
    mapped = {i for ids in itemids.values() for i in ids}
    for item, unit in item_units.items():
        if unit not in units:
            raise _fail(path, name, f"item_units {item}: unit '{unit}' has no conversion")
        if item not in mapped:
            raise _fail(path, name, f"item_units {item}: not one of the variable's itemids")
    return Variable(
        name=entry.name, code=entry.code, description=entry.description or entry.name,
        unit=entry.unit, units=units, itemids=itemids, range=bounds,  # type: ignore[arg-type]
        agg=entry.agg, comparison=entry.comparison, item_units=item_units,
        value_rules=tuple(r.model_dump(exclude_none=True) for r in entry.value_rules or ()),
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
_YAML_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_YAML_BASE):  # type: ignore[misc,valid-type]
    """The safe loader, refusing a key written twice in one mapping (YAML keeps the last one
    silently: a second ``agg:`` or ``value_rules:`` of an entry would replace the first)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: list[Any] = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key '{key}' twice", key_node.start_mark)
            seen.append(key)
        return super().construct_mapping(node, deep)


_YAML_LOADER = _UniqueKeyLoader
_LOADED: dict[tuple[str, str], Dictionary] = {}  # (where, content digest) -> parsed


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What the YAML parser found and where (1-based), without the text it quotes.

    >>> try:
    ...     yaml.load("a: {b: 1\\nc: 2\\n", Loader=_YAML_LOADER)
    ... except yaml.YAMLError as exc:
    ...     print("why:", _yaml_problem(exc))  # doctest: +ELLIPSIS
    why: ...expected ',' or '}'... (while parsing a flow mapping started at line 1, column 4)
    """
    why = getattr(exc, "problem", None) or type(exc).__name__
    mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context", None)
    text = f"{why} at {_at(mark)}" if mark else why
    start = getattr(exc, "context_mark", None)
    if context and start:
        text += f" ({context} started at {_at(start)})"
    return text


def _read_top(text: str, where: str) -> _File:
    """The YAML document's top level: ``version`` and the list of ``variables``."""
    try:
        data = yaml.load(text, Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with 'version' and 'variables' "
                          "at the top level")
    try:
        return _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_problem(exc, _File)}") from None


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
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{where}: variable dictionary not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read the variable dictionary "
                              f"({error_reason(exc, typed=True)})") from None
    digest = hashlib.sha256(f"{_READING_VERSION}\n{text}".encode()).hexdigest()[:16]
    cached = _LOADED.get((where, digest))
    if cached is not None:  # every shard of a stage loads it; the result is immutable
        return cached
    top = _read_top(text, where)
    variables = [_parse_variable(raw, i, where) for i, raw in enumerate(top.variables or [])]
    if not variables:
        raise ConfigError(f"{where}: no variables")
    _check_unique(variables, where)
    loaded = Dictionary(tuple(variables), top.version, digest, where)
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
