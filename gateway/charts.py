"""Server-side SVG bar charts: no JavaScript, no build step, no charting library.

Values are Decimals (money stays exact up to the drawing); every text is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 240, 60, 60, 20


def bar_chart(
    labels: Sequence[str], values: Sequence[Decimal], *, title: str, unit: str = ""
) -> str:
    """An accessible SVG bar chart (``role="img"`` with the title as its label)."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}"><title>{escape(title)}</title>',
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - 10}" y2="{HEIGHT - BOTTOM}" '
        'stroke="#555"/>',
    ]
    if not values:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">-</text></svg>')
        return "".join(parts)
    top = max(max(values), Decimal(0)) or Decimal(1)
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT - 10) / len(values)
    bar_w = max(2.0, slot * 0.7)
    parts.append(
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" font-size="11">'
        f"{escape(_short(top))} {escape(unit)}</text>"
    )
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = float(max(value, Decimal(0)) / top) * plot_h
        x = LEFT + index * slot + (slot - bar_w) / 2
        y = HEIGHT - BOTTOM - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="#3b6ea5">'
            f"<title>{escape(label)}: {escape(str(value))} {escape(unit)}</title></rect>"
        )
        cx = x + bar_w / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="10" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {HEIGHT - BOTTOM + 14})">{escape(label[:18])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _short(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else f"{value:.2f}"
