"""Line charts as inline SVG, drawn on the server: no script, no library, a few KB each.

Series are styled by class (``hot``, ``warm``, ``cold``: the stylesheet's colours), so the page's
Content-Security-Policy needs no inline styles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 10, 22
MAX_POINTS = 240  # a series is thinned to this many points: the chart has ~600 px


def _thin(points: Sequence[tuple[float, float]]) -> Sequence[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    picked = [points[int(i * step)] for i in range(MAX_POINTS)]
    return [*picked[:-1], points[-1]]


def _nice_top(value: float) -> float:
    """A round number at or above ``value`` for the top of the axis."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if magnitude * factor >= value:
            return magnitude * factor
    return value


def _time_label(at: float, span: float) -> str:
    return time.strftime("%b %d" if span > 2 * 86400 else "%H:%M", time.gmtime(at))


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    label: Callable[[float], str],
    title: str,
) -> Markup:
    """An SVG chart of ``{class: [(time, value), ...]}``; ``label`` writes the y axis."""
    points = {name: _thin(values) for name, values in series.items() if values}
    if not points:
        return Markup(f'<p class="muted">{escape(title)}: no samples yet.</p>')
    times = [t for values in points.values() for t, _ in values]
    start, end = min(times), max(times)
    span = max(end - start, 1.0)
    top = _nice_top(max(v for values in points.values() for _, v in values))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - start) / span * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - v / top * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i in range(5):
        value = top * i / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"/><text x="{LEFT - 4}" y="{y(value) + 3:.1f}" '
            f'text-anchor="end">{escape(label(value))}</text>'
        )
    for at, anchor in ((start, "start"), (end, "end")):
        parts.append(
            f'<text x="{x(at):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
            f"{escape(_time_label(at, span))}</text>"
        )
    for name, values in points.items():
        if len(values) == 1:
            t, v = values[0]
            parts.append(f'<circle class="{escape(name)}" cx="{x(t):.1f}" cy="{y(v):.1f}" r="3"/>')
            continue
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in values)
        parts.append(f'<polyline class="{escape(name)}" points="{path}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
