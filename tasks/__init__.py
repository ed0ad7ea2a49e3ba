"""Thin Prefect tasks around DVC and medae calls (a few lines each; the logic lives elsewhere)."""
