"""How the statistics print numbers: three decimals, signed deltas, p-values, percentages."""

from __future__ import annotations


def _number(value: float) -> str:
    return f"{value:.3f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"


def _signed(value: float) -> str:
    text = _number(value + 0.0)  # + 0.0 turns -0.0 into 0.0
    return text if text.startswith("-") else "+" + text


def _percent(level: float) -> str:
    return f"{level * 100:.4g}%"


def _p(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.2g}"
