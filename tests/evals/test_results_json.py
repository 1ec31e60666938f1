"""results.json is strict JSON: no Infinity or NaN (a sign-flip comparison on four items has
no finite bound, and an undetectable effect no finite MDE)."""

from __future__ import annotations

import json
import math

from ftci.evals.results import _finite


def test_non_finite_numbers_are_written_as_null() -> None:
    value = {"mde": math.inf, "interval": [-math.inf, 0.2], "nested": {"p": math.nan},
             "ok": 0.5, "name": "x", "n": 3}
    cleaned = _finite(value)
    assert cleaned == {"mde": None, "interval": [None, 0.2], "nested": {"p": None},
                       "ok": 0.5, "name": "x", "n": 3}
    json.loads(json.dumps(cleaned, allow_nan=False))  # strict JSON now
