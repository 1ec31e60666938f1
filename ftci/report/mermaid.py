"""The loss curve as a mermaid `xychart-beta` block: GitHub renders it, no image hosting needed.

What the xychart grammar allows shapes this file (mermaid's `xychart.jison`): every `line` is
drawn over the same categorical x-axis, one value per category and no gaps; numbers match
`[+-]?(\\d+(\\.\\d+)?|\\.\\d+)`, so no exponents, NaN or infinity; a quoted string may not
contain `"`. Train loss is logged every few steps but val loss only at evaluations, so the x-axis
is the union of (downsampled) train steps and evaluation steps; val loss is linearly
interpolated between evaluations and held flat before the first and after the last, which the
caption under the chart says.
"""

from __future__ import annotations

from bisect import bisect_left

MAX_POINTS = 50


def loss_curve(train: list[tuple[int, float]], val: list[tuple[int, float]],
               max_points: int = MAX_POINTS) -> tuple[list[int], list[float], list[float]] | None:
    """(steps, train loss, val loss) on one shared x-axis of at most `max_points` steps; either
    series may be empty. None when there is nothing worth drawing (under 2 points)."""
    train = sorted(train)
    val = sorted(val)
    val_steps = _evenly([step for step, _ in val], max_points if not train else max_points // 3)
    budget = max(2, max_points - len(val_steps))
    train_steps = _evenly([step for step, _ in train], budget)
    steps = sorted(set(train_steps) | set(val_steps))
    while len(steps) > max_points and budget > 2:  # evaluation steps between train steps
        budget -= len(steps) - max_points
        train_steps = _evenly([step for step, _ in train], max(2, budget))
        steps = sorted(set(train_steps) | set(val_steps))
    if len(steps) < 2:
        return None
    return steps, _bucket_means(train, steps), [_interpolate(val, step) for step in steps] if val \
        else []


def render_mermaid(train: list[tuple[int, float]], val: list[tuple[int, float]],
                   max_points: int = MAX_POINTS) -> str | None:
    """A fenced ```mermaid block (train loss first, val loss second), or None."""
    curve = loss_curve(train, val, max_points)
    if curve is None:
        return None
    steps, train_values, val_values = curve
    lines = ["```mermaid", "xychart-beta", '    title "Training loss"',
             '    x-axis "step" [' + ", ".join(f'"{step}"' for step in steps) + "]",
             '    y-axis "loss"']
    if train_values:
        lines.append('    line "train loss" [' + _numbers(train_values) + "]")
    if val_values:
        lines.append('    line "val loss" [' + _numbers(val_values) + "]")
    lines.append("```")
    return "\n".join(lines)


def caption(train: list[tuple[int, float]], val: list[tuple[int, float]]) -> str:
    """What the two lines are (xychart draws no legend)."""
    parts = []
    if train:
        parts.append(f"first line: train loss ({len(train)} logged steps, averaged per x-step)")
    if val:
        shown = ", ".join(str(step) for step, _ in sorted(val)[:12])
        more = "…" if len(val) > 12 else ""
        parts.append(f"{'second' if train else 'first'} line: val loss, evaluated at step "
                     f"{shown}{more}, interpolated between evaluations and held flat outside them")
    return "; ".join(parts)


def _numbers(values: list[float]) -> str:
    # Fixed-point only: the grammar has no exponent notation.
    return ", ".join(f"{value:.4f}" for value in values)


def _evenly(steps: list[int], count: int) -> list[int]:
    """`count` steps spread evenly over `steps`, always keeping the first and the last."""
    if len(steps) <= count:
        return list(steps)
    if count <= 1:
        return [steps[-1]]
    last = len(steps) - 1
    return sorted({steps[round(index * last / (count - 1))] for index in range(count)})


def _bucket_means(points: list[tuple[int, float]], steps: list[int]) -> list[float]:
    """For each x-step, the mean of the points logged since the previous x-step (so a
    downsampled noisy loss keeps its level); an x-step without any point is interpolated."""
    if not points:
        return []
    values: list[float] = []
    previous = None
    for step in steps:
        bucket = [value for at, value in points
                  if at <= step and (previous is None or at > previous)]
        values.append(sum(bucket) / len(bucket) if bucket else _interpolate(points, step))
        previous = step
    return values


def _interpolate(points: list[tuple[int, float]], step: int) -> float:
    """Linear between neighbours; held flat outside the first and last point."""
    steps = [at for at, _ in points]
    index = bisect_left(steps, step)
    if index < len(points) and points[index][0] == step:
        return points[index][1]
    if index == 0:
        return points[0][1]
    if index == len(points):
        return points[-1][1]
    (x0, y0), (x1, y1) = points[index - 1], points[index]
    return y0 + (y1 - y0) * (step - x0) / (x1 - x0)
