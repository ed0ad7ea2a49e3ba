"""Realistic MIMIC-IV-layout demo data and MIMIC-style WFDB waveform records."""
