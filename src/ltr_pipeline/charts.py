"""Small inline SVG charts for the HTML reports: no JavaScript, no network, readable in any browser offline.

Every plotted value is an element with class `point` or `bar` and `data-*` attributes, so a test (or a curious
person with the inspector) can check that a chart really has data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 260, 52, 130, 28, 46


def _scale(lo: float, hi: float, a: float, b: float) -> Callable[[float], float]:
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _frame(title: str, y_lo: float, y_hi: float, y_of: Callable[[float], float]) -> list[str]:
    parts = [f'<text x="{LEFT}" y="16" class="title">{escape(title)}</text>']
    for i in range(5):
        v = y_lo + (y_hi - y_lo) * i / 4
        y = y_of(v)
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{v:.3g}</text>')
    return parts


def line_chart(
    title: str, x_labels: Sequence[str], series: Mapping[str, Sequence[float | None]],
    threshold: float | Sequence[float | None] | None = None, threshold_label: str = "threshold",
) -> str:
    """One line per series over shared x labels; None values leave a gap. `threshold`: one value for every x, or
    one per x (e.g. each run's own gate), drawn dashed."""
    values = [v for s in series.values() for v in s if v is not None]
    limits = [threshold] * len(x_labels) if isinstance(threshold, int | float) else list(threshold or [])
    values += [v for v in limits if v is not None]
    if not values or not x_labels:
        return f'<p class="empty">{escape(title)}: no data yet</p>'
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 0.1
    lo, hi = (lo - pad if lo - pad >= 0 or lo < 0 else 0.0), hi + pad
    x_of = _scale(0, max(1, len(x_labels) - 1), LEFT + 10, W - RIGHT - 10)
    y_of = _scale(lo, hi, H - BOTTOM, TOP)
    parts = _frame(title, lo, hi, y_of)
    step = max(1, len(x_labels) // 8)
    for i, label in enumerate(x_labels):
        if i % step == 0 or i == len(x_labels) - 1:
            parts.append(f'<text x="{x_of(i):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" class="tick">'
                         f"{escape(label[-5:])}</text>")
    steps = [(x_of(i), y_of(v)) for i, v in enumerate(limits) if v is not None]
    if steps:  # a step line: each x's threshold holds from half a step before it to half a step after
        half = (x_of(1) - x_of(0)) / 2 if len(x_labels) > 1 else (W - RIGHT - LEFT) / 2
        path = " ".join(f"{max(LEFT, x - half):.1f},{y:.1f} {min(W - RIGHT, x + half):.1f},{y:.1f}" for x, y in steps)
        parts.append(f'<polyline points="{path}" fill="none" class="threshold"/>')
        parts.append(f'<text x="{W - RIGHT + 4}" y="{steps[-1][1] + 4:.1f}" class="tick">{escape(threshold_label)}'
                     "</text>")
    for n, (name, points) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        coords = [(x_of(i), y_of(v), v, x_labels[i]) for i, v in enumerate(points) if v is not None]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, v, label in coords:
            parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}" '
                         f'data-series="{escape(name)}" data-x="{escape(label)}" data-y="{v:.6g}">'
                         f"<title>{escape(name)} {escape(label)}: {v:.4g}</title></circle>")
        parts.append(f'<rect x="{W - RIGHT + 8}" y="{TOP + n * 18}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{W - RIGHT + 22}" y="{TOP + n * 18 + 9}" class="tick">{escape(name)}</text>')
    return f'<svg class="chart" viewBox="0 0 {W} {H}" role="img">{"".join(parts)}</svg>'


def bar_chart(title: str, values: Mapping[str, float | None], fmt: str = "{:.3f}") -> str:
    """Horizontal bars, one per key."""
    items = [(k, v) for k, v in values.items() if v is not None]
    if not items:
        return f'<p class="empty">{escape(title)}: no data</p>'
    height = TOP + 22 * len(items) + 10
    hi = max(max(v for _, v in items), 1e-12)
    x_of = _scale(0, hi, 120, W - 90)
    parts = [f'<text x="10" y="16" class="title">{escape(title)}</text>']
    for i, (name, v) in enumerate(items):
        y = TOP + i * 22
        parts.append(f'<text x="112" y="{y + 13}" text-anchor="end" class="tick">{escape(name)}</text>')
        parts.append(f'<rect class="bar" x="120" y="{y}" width="{max(1.0, x_of(v) - 120):.1f}" height="16" '
                     f'fill="{PALETTE[0]}" data-label="{escape(name)}" data-value="{v:.6g}"/>')
        parts.append(f'<text x="{x_of(v) + 6:.1f}" y="{y + 13}" class="tick">{escape(fmt.format(v))}</text>')
    return f'<svg class="chart" viewBox="0 0 {W} {height}" role="img">{"".join(parts)}</svg>'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
.pass,.met{color:#1a7f37;font-weight:600}.fail,.notmet{color:#cf222e;font-weight:600}.insufficient,.unknown{color:#9a6700}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.published{background:#1a7f37}.rejected{background:#9a6700}.publish_failed{background:#cf222e}
svg.chart{width:100%;max-width:760px;height:auto;display:block;margin:8px 0}
svg .title{font-weight:600;font-size:13px}svg .tick{font-size:11px;fill:#555}
svg .grid{stroke:#eee}svg .threshold{stroke:#cf222e;stroke-dasharray:4 3}
.muted{color:#666}.empty{color:#999;font-style:italic}code{background:#f5f5f5;padding:1px 4px}
"""


def page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
            f"<body>{body}</body></html>")
