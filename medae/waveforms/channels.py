"""Channel harmonisation: map the many names bedside monitors and databases use for one signal
to a single canonical channel name, and each canonical channel to a signal kind (which decides
its target rate, filter band and quality limits).

>>> canonical_channel("MLII"), canonical_channel(" ECG II "), canonical_channel("Pleth")
('ecg_ii', 'ecg_ii', 'ppg')
>>> channel_kind("ecg_v5"), channel_kind("abp"), canonical_channel("HR") is None
('ecg', 'abp', True)
"""

from __future__ import annotations

# Canonical name -> the spellings seen in MIMIC-II/III/IV waveform databases, MIT-BIH and
# Philips/GE exports. Matching is case-insensitive and ignores spaces, dashes and underscores.
HARMONISATION: dict[str, tuple[str, ...]] = {
    "ecg_i": ("I", "ECG I", "ECGI", "LEAD I"),
    "ecg_ii": ("II", "ECG II", "ECGII", "MLII", "ML II", "LEAD II", "ECG"),
    "ecg_iii": ("III", "ECG III", "ECGIII", "MLIII", "LEAD III"),
    "ecg_avr": ("AVR", "aVR"),
    "ecg_avl": ("AVL", "aVL"),
    "ecg_avf": ("AVF", "aVF"),
    "ecg_v": ("V", "ECG V", "MV"),
    "ecg_v1": ("V1", "MV1"),
    "ecg_v2": ("V2", "MV2"),
    "ecg_v3": ("V3", "MV3"),
    "ecg_v4": ("V4", "MV4"),
    "ecg_v5": ("V5", "MV5"),
    "ecg_v6": ("V6", "MV6"),
    "ecg_mcl1": ("MCL1", "MCL"),
    "ppg": ("PLETH", "Pleth", "PPG", "SPO2 WAVE", "PLETH WAVE"),
    "abp": ("ABP", "ART", "ART1", "IBP", "IBP1", "AOBP"),
    "cvp": ("CVP",),
    "pap": ("PAP",),
    "resp": ("RESP", "Resp", "RESP WAVE", "IMPEDANCE"),
    "co2": ("CO2", "ETCO2 WAVE", "CAPNO"),
}

# Canonical name -> kind; names not listed here take the part before the first underscore.
KIND_OF = {"ppg": "ppg", "abp": "abp", "cvp": "pressure", "pap": "pressure", "resp": "resp",
           "co2": "co2"}


# The signal kinds per-kind params (rates, bands, limits) may name.
KINDS = frozenset(KIND_OF.get(c, c.split("_", 1)[0]) for c in HARMONISATION)


def _key(name: str) -> str:
    return "".join(ch for ch in name.upper() if ch not in " -_")


_LOOKUP: dict[str, str] = {
    _key(alias): canonical for canonical, aliases in HARMONISATION.items() for alias in aliases
}


def canonical_channel(name: str) -> str | None:
    """The canonical channel for a raw signal name, or ``None`` when it is not a waveform we
    know (numerics such as HR or SpO2 trends, unknown labels)."""
    return _LOOKUP.get(_key(name))


def channel_kind(canonical: str) -> str:
    """The signal kind of a canonical channel: ``ecg``, ``ppg``, ``abp``, ``resp``, ..."""
    return KIND_OF.get(canonical, canonical.split("_", 1)[0])


def is_ecg(canonical: str) -> bool:
    return channel_kind(canonical) == "ecg"
