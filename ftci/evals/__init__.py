"""Eval suites as test gates: metrics, statistics, model backends and the pytest plugin."""
