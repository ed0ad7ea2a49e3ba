"""Waveform params mistakes are refused when params are loaded, naming the key: they would
otherwise fail every record one by one, or window nothing and replace good outputs."""

from __future__ import annotations

import pytest

from medae.config import load_params
from medae.errors import ConfigError


@pytest.mark.parametrize(("override", "problem"), [
    ("window_waveforms.bands={ecg: [40, 0.5]}",
     "ecg: low edge 40.0 Hz is not below high edge 0.5 Hz"),
    ("window_waveforms.bands={ppg: [-1, 8]}", "ppg: band edge -1.0 Hz is not a positive"),
    ("window_waveforms.channels=[ecg2]", "'ecg2' is not a known channel name"),
    ("window_waveforms.channels=[]", "an empty list keeps no channel"),
    ("window_waveforms.rates={ekg: 125}", "unknown signal kind 'ekg'"),
    ("window_waveforms.rates={ecg: 0}", "ecg: 0.0 is not a positive number"),
    ("window_waveforms.physical_range={ecg: [20, -20]}",
     "ecg: lower limit 20.0 is not below upper limit -20.0"),
    ("window_waveforms.beat_channel=ecg_v9", "'ecg_v9' is not an ECG channel name"),
    ("window_waveforms.beat_channel=abp", "'abp' is not an ECG channel name"),
])
def test_bad_waveform_params_are_refused_naming_the_key(override, problem):
    with pytest.raises(ConfigError) as err:
        load_params(None, [override])
    key = override.partition("=")[0]
    assert f"key '{key}'" in str(err.value) and problem in str(err.value)


def test_beat_channel_must_be_among_the_channels_kept():
    with pytest.raises(ConfigError, match="beat_channel 'ecg_v5' is not in channels"):
        load_params(None, ["window_waveforms.channels=[ecg_ii]",
                           "window_waveforms.beat_channel=ecg_v5"])


def test_channel_aliases_become_canonical_names():
    params = load_params(None, ["window_waveforms.channels=[MLII, ecg_v5, II, Pleth]",
                                "window_waveforms.beat_channel=MLII"])
    assert params.window_waveforms.channels == ["ecg_ii", "ecg_v5", "ppg"]
    assert load_params(None, []).window_waveforms.channels is None  # the default: all
