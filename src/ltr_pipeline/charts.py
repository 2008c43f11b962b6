"""Charts for the HTML reports, drawn by matplotlib as inline SVG: no JavaScript, no network, readable offline.

Only matplotlib's object API is used (a `Figure` per chart, never pyplot's global state), so the service can render
its dashboard in a worker thread. Text stays text (`svg.fonttype: none`), so the page's font draws it and it can be
searched. Each series is an SVG group with id `series-<chart>-<name>`, one `<use>` per plotted point, and each bar a
group with id `bar-<chart>-<name>`: a test (or a curious person with the inspector) can check that a chart really has
data.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # matplotlib (0.8 s to import) comes with the first chart, not with every import of the pages
    from matplotlib.axes import Axes
    from matplotlib.typing import RcKeyType

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text as <text>, drawn by the page's font
    "text.parse_math": False,  # names come from events: "$" is a dollar sign, never TeX to parse (or fail on)
    "svg.hashsalt": "ltr-pipeline",  # the same chart gives the same SVG
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
}
_charts = itertools.count()  # ids stay unique on a page that holds several charts


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _draw(height: float, draw: Callable[[Axes, int], None]) -> str:
    """One chart `height` inches tall as inline SVG: `draw(axes, chart number)` plots it, in the page style."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):  # read when artists are made and when the SVG is written
        fig = Figure(figsize=(7.2, height))
        draw(fig.add_subplot(), next(_charts))
        out = io.StringIO()
        fig.savefig(out, format="svg", bbox_inches="tight",
                    metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    svg = out.getvalue()
    return '<svg class="chart"' + svg[svg.index("<svg") + 4:]  # inline: no XML declaration or doctype


def _empty(title: str, why: str) -> str:
    return f'<p class="empty">{escape(title)}: {why}</p>'


def line_chart(
    title: str, x_labels: Sequence[str], series: Mapping[str, Sequence[float | None]],
    threshold: float | Sequence[float | None] | None = None, threshold_label: str = "threshold",
    y_label: str = "", x_label: str = "run date",
) -> str:
    """One line per series over shared x labels; None values leave a gap. `threshold`: one value for every x, or
    one per x (e.g. each run's own gate), drawn as a dashed step line."""
    limits = [threshold] * len(x_labels) if isinstance(threshold, int | float) else list(threshold or [])
    if not x_labels or all(v is None for s in series.values() for v in s):
        return _empty(title, "no data yet")

    def draw(ax: Axes, chart: int) -> None:
        xs = range(len(x_labels))
        for (name, values), color in zip(series.items(), itertools.cycle(PALETTE)):
            ys = [math.nan if v is None else v for v in values]
            (line,) = ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.8, color=color, label=name)
            line.set_gid(f"series-{chart}-{_slug(name)}")
        if any(v is not None for v in limits):
            ys = [math.nan if v is None else v for v in limits]
            (line,) = ax.step(xs, ys, where="mid", linestyle="--", linewidth=1.2, color="#cf222e",
                              label=threshold_label)
            line.set_gid(f"threshold-{chart}")
        step = max(1, math.ceil(len(x_labels) / 10))
        ticks = [i for i in xs if i % step == 0 or i == len(x_labels) - 1]
        ax.set_xticks(ticks, [x_labels[i][-5:] if len(x_labels[i]) == 10 else x_labels[i] for i in ticks])
        ax.set_title(title)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)

    return _draw(2.9, draw)


def bar_chart(title: str, values: Mapping[str, float | None], fmt: str = "{:.3f}", x_label: str = "",
              limit: float | None = None) -> str:
    """Horizontal bars, one per key, each labelled with its value; `limit` is drawn as a dashed line."""
    items = [(k, v) for k, v in values.items() if v is not None]
    if not items:
        return _empty(title, "no data")

    def draw(ax: Axes, chart: int) -> None:
        names = [k for k, _ in items][::-1]  # the first key on top
        bars = ax.barh(names, [v for _, v in items][::-1], color=PALETTE[0], height=0.7)
        for bar, name in zip(bars, names, strict=True):
            bar.set_gid(f"bar-{chart}-{_slug(name)}")
        ax.bar_label(bars, labels=[fmt.format(v) for _, v in items][::-1], padding=3, fontsize=8)
        if limit is not None:
            ax.axvline(limit, linestyle="--", linewidth=1.2, color="#cf222e", label=f"limit {limit:g}")
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.15)
        ax.set_title(title)
        ax.set_xlabel(x_label)

    return _draw(0.6 + 0.28 * len(items), draw)
